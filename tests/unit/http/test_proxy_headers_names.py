"""The client fields a backend receives, decided once per name and rule path.

:func:`~clbproxy.http.proxy_headers.backend_request_fields` keeps, per rule and
path, the name each client field name is sent under; these tests pin that a
request's own ``Connection`` names, the listener's underscore setting and the
kind of ``Headers`` never change what another request sends.
"""

from __future__ import annotations

from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.config import RuleConfig
from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.proxy_headers import backend_request_fields
from tests.unit.http.test_proxy_headers_http2 import Request

UNTRUSTED = TrustedProxies()


def sent(pairs, rule=None, underscores=False, kind=FieldHeaders) -> dict:
    headers = FieldHeaders.from_pairs(pairs) if kind is FieldHeaders else Headers()
    if kind is not FieldHeaders:
        for name, value in pairs:
            headers.addRawHeader(name, value)
    request = Request(clientproto=b"HTTP/1.1", requestHeaders=headers)
    return backend_request_fields(
        request, scheme="http", trusted=UNTRUSTED, rule=rule, underscores=underscores
    )


class NameVerdictTests(unittest.TestCase):
    def setUp(self):
        # A rule of this test's own: its verdicts start empty.
        self.rule = RuleConfig(path="/", target_group="g")

    def test_a_field_named_by_connection_is_dropped_for_that_request_only(self):
        named = sent([(b"Host", b"h"), (b"X-Hop", b"1"), (b"Connection", b"X-Hop")], self.rule)
        plain = sent([(b"Host", b"h"), (b"X-Hop", b"1")], self.rule)
        self.assertEqual([b"X-Hop" in named, b"X-Hop" in plain], [False, True])

    def test_a_field_sent_before_is_dropped_when_connection_names_it(self):
        plain = sent([(b"Host", b"h"), (b"X-Hop", b"1")], self.rule)
        named = sent([(b"Host", b"h"), (b"X-Hop", b"1"), (b"Connection", b"x-hop")], self.rule)
        again = sent([(b"Host", b"h"), (b"X-Hop", b"1")], self.rule)
        self.assertEqual(
            [b"X-Hop" in plain, b"X-Hop" in named, b"X-Hop" in again], [True, False, True]
        )

    def test_connection_keep_alive_changes_nothing_sent(self):
        kept = sent(
            [(b"Host", b"h"), (b"Accept", b"*/*"), (b"Connection", b"keep-alive")], self.rule
        )
        self.assertEqual(kept[b"Accept"], [b"*/*"])
        self.assertNotIn(b"Connection", kept)

    def test_underscores_follow_each_listeners_setting_on_one_rule(self):
        pairs = [(b"Host", b"h"), (b"X_Custom", b"1")]
        self.assertEqual(
            [
                b"X_custom" in sent(pairs, self.rule, underscores=False),
                b"X_custom" in sent(pairs, self.rule, underscores=True),
                b"X_custom" in sent(pairs, self.rule, underscores=False),
            ],
            [False, True, False],
        )

    def test_field_headers_and_twisted_headers_send_the_same_fields(self):
        pairs = [
            (b"Host", b"h"),
            (b"accept", b"a"),
            (b"X-Forwarded-For", b"10.0.0.1"),
            (b"Te", b"trailers"),
            (b"Proxy-Authorization", b"x"),
            (b"Forwarded", b"for=1.2.3.4"),
            (b"Cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ]
        mine = sent(pairs, self.rule)
        self.assertEqual(mine, sent(pairs, self.rule, kind=Headers))
        self.assertEqual(mine[b"Cookie"], [b"a=1", b"b=2"])
        self.assertEqual(mine[b"TE"], [b"trailers"])
        self.assertEqual(mine[b"X-Forwarded-For"], [b"10.0.0.1, 192.0.2.7"])

    def test_many_distinct_names_are_all_sent(self):
        pairs = [(b"Host", b"h")] + [(b"X-N%d" % (i,), b"v") for i in range(3000)]
        fields = sent(pairs, self.rule)
        self.assertEqual(sum(name.startswith(b"X-N") for name in fields), 3000)


class RulePathTests(unittest.TestCase):
    def test_a_rule_made_where_a_dropped_one_was_sends_its_own_changes(self):
        sent_by = []
        for value in ("one", "two", "three"):
            rule = RuleConfig(path="/", target_group="g", set_headers=(("X-Env", value),))
            sent_by.append(sent([(b"Host", b"h")], rule)[b"X-Env"])
            del rule  # its id may be the next rule's
        self.assertEqual(sent_by, [[b"one"], [b"two"], [b"three"]])

    def test_one_rule_with_ids_on_and_off_sends_each_its_own(self):
        rule = RuleConfig(path="/", target_group="g")
        request = Request(clientproto=b"HTTP/1.1", requestHeaders=FieldHeaders.from_pairs([]))
        with_id = backend_request_fields(
            request, scheme="http", trusted=UNTRUSTED, rule=rule, request_id=(b"x-request-id", "a")
        )
        without = backend_request_fields(request, scheme="http", trusted=UNTRUSTED, rule=rule)
        self.assertEqual([b"X-Request-Id" in with_id, b"X-Request-Id" in without], [True, False])
