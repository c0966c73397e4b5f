"""The fields a backend receives: a rule's header changes, the forwarding headers, in bytes."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.config import RuleConfig
from clbproxy.http.forwarded import TrustedProxies, forwarded_headers
from clbproxy.http.proxy_headers import backend_request_fields, canonical_name
from tests.unit.http.test_proxy_headers_http2 import Request

UNTRUSTED = TrustedProxies()
TRUSTED = TrustedProxies.from_cidrs(["192.0.2.0/24"])


def fields_for(headers, trusted=UNTRUSTED, rule=None) -> dict:
    request = Request(clientproto=b"HTTP/1.1", requestHeaders=Headers(headers))
    return backend_request_fields(request, scheme="http", trusted=trusted, rule=rule)


def forwarding(fields: dict) -> list:
    names = [
        canonical_name(n)
        for n in (
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "X-Forwarded-Port",
            "X-Real-IP",
        )
    ]
    return [(name, fields[name]) for name in names if name in fields]


def expected(headers, trusted) -> list:
    def last(name):
        values = headers.get(name)
        return values[-1].decode("latin-1") if values else None

    return [
        (canonical_name(name), [value.encode("latin-1")])
        for name, value in forwarded_headers(
            peer_ip="192.0.2.7",
            scheme="http",
            host=last(b"Host"),
            forwarded_for=[v.decode("latin-1") for v in headers.get(b"X-Forwarded-For", [])],
            forwarded_proto=last(b"X-Forwarded-Proto"),
            forwarded_host=last(b"X-Forwarded-Host"),
            trusted=trusted,
            port=443,
        )
    ]


class ForwardingFieldsTests(unittest.TestCase):
    def test_every_peer_and_claim_gets_what_forwarded_headers_says(self):
        cases = [
            {b"Host": [b"a.test"]},
            {b"Host": [b""]},
            {},
            {b"Host": [b"a.test"], b"X-Forwarded-For": [b"10.0.0.1, 10.0.0.2"]},
            {b"Host": [b"a.test"], b"X-Forwarded-Proto": [b"https"]},
            {b"Host": [b"a.test"], b"X-Forwarded-Host": [b"b.test"]},
        ]
        for trusted in (UNTRUSTED, TRUSTED):
            for headers in cases:
                self.assertEqual(
                    forwarding(fields_for(headers, trusted)),
                    expected(headers, trusted),
                    (headers, trusted),
                )


class RuleChangesTests(unittest.TestCase):
    def test_each_rule_object_sends_its_own_header_changes(self):
        first = RuleConfig(path="/", target_group="g", set_headers=(("X-Env", "one"),))
        second = RuleConfig(path="/", target_group="g", set_headers=(("X-Env", "two"),))
        headers = {b"Host": [b"a.test"], b"X-Env": [b"client"]}
        self.assertEqual(
            [
                fields_for(headers, rule=first)[b"X-Env"],
                fields_for(headers, rule=second)[b"X-Env"],
                fields_for(headers, rule=first)[b"X-Env"],
            ],
            [[b"one"], [b"two"], [b"one"]],
        )

    def test_a_removed_header_never_reaches_the_backend_for_a_trusted_peer_either(self):
        rule = RuleConfig(path="/", target_group="g", remove_headers=("x-secret",))
        headers = {b"Host": [b"a.test"], b"X-Secret": [b"s"], b"Forwarded": [b"for=1.2.3.4"]}
        self.assertEqual(
            [
                sorted(fields_for(headers, UNTRUSTED, rule)),
                sorted(fields_for(headers, TRUSTED, rule)),
            ],
            [
                sorted(
                    [
                        b"Host",
                        b"X-Forwarded-For",
                        b"X-Forwarded-Proto",
                        b"X-Forwarded-Host",
                        b"X-Forwarded-Port",
                        b"X-Real-Ip",
                    ]
                ),
                sorted(
                    [
                        b"Host",
                        b"Forwarded",
                        b"X-Forwarded-For",
                        b"X-Forwarded-Proto",
                        b"X-Forwarded-Host",
                        b"X-Forwarded-Port",
                        b"X-Real-Ip",
                    ]
                ),
            ],
        )
