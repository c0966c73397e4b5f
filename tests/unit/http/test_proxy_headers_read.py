"""The client fields backend_request_fields reads are read alone as with others."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.proxy_headers import backend_request_fields
from tests.unit.http.test_proxy_headers_http2 import Request


def fields_for(*pairs: tuple[bytes, bytes]) -> dict:
    request = Request(clientproto=b"HTTP/1.1", requestHeaders=FieldHeaders.from_pairs(pairs))
    return backend_request_fields(request, scheme="http", trusted=TrustedProxies())


class ReadFieldsTests(unittest.TestCase):
    def test_a_request_with_none_of_them_gets_the_peer_as_its_chain(self) -> None:
        fields = fields_for((b"X-App", b"1"))
        self.assertEqual(fields[b"X-App"], [b"1"])
        self.assertEqual(fields[b"X-Forwarded-For"], [b"192.0.2.7"])
        self.assertNotIn(b"TE", fields)

    def test_a_connection_field_alone_drops_what_it_names(self) -> None:
        fields = fields_for((b"X-App", b"1"), (b"connection", b"X-App"))
        self.assertNotIn(b"X-App", fields)

    def test_a_te_field_alone_is_passed_on_as_trailers(self) -> None:
        self.assertEqual(fields_for((b"te", b"trailers"))[b"TE"], [b"trailers"])

    def test_a_claimed_chain_alone_is_appended_to(self) -> None:
        fields = fields_for((b"x-forwarded-for", b"203.0.113.9"))
        self.assertEqual(fields[b"X-Forwarded-For"], [b"203.0.113.9, 192.0.2.7"])


class NamesSeenAgainTests(unittest.TestCase):
    def test_a_request_seen_again_is_sent_the_same_fields_in_order(self) -> None:
        pairs = [
            (b"x-first", b"1"),
            (b"Proxy-Thing", b"no"),
            (b"X-Second", b"2"),
            (b"x-first", b"3"),
        ]
        first, again = fields_for(*pairs), fields_for(*pairs)
        self.assertEqual(list(again.items()), list(first.items()))
        self.assertEqual(list(first)[:2], [b"X-First", b"X-Second"])
        self.assertEqual(first[b"X-First"], [b"1", b"3"])
        self.assertNotIn(b"Proxy-Thing", first)

    def test_a_name_new_among_names_seen_is_sent_too(self) -> None:
        fields_for((b"X-Seen", b"1"))
        fields = fields_for((b"X-Seen", b"1"), (b"X-Unseen-Yet", b"2"))
        self.assertEqual(fields[b"X-Unseen-Yet"], [b"2"])
