"""An upgrade request's headers are read once: pairs, joined values and checked fields agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.ws.passthrough import joined_headers
from clbproxy.ws.upgrade import (
    UpgradeRefused,
    _elements,
    _fields,
    check_client_upgrade,
    check_upgrade_fields,
    read_request_headers,
)

NAMES = st.sampled_from(
    [b"Host", b"Upgrade", b"connection", b"Sec-WebSocket-Key", b"X-Forwarded-For", b"User-Agent"]
)
VALUES = st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v)


def headers_of(pairs) -> Headers:
    headers = Headers()
    for name, value in pairs:
        headers.addRawHeader(name, value)
    return headers


def text_pairs(headers: Headers) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in headers.getAllRawHeaders()
        for value in values
    ]


class ReadRequestHeadersTests(unittest.TestCase):
    @given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
    def test_one_reading_gives_the_pairs_joined_values_and_fields_of_three(self, raw):
        headers = headers_of(raw)
        pairs = text_pairs(headers)
        self.assertEqual(
            read_request_headers(headers.getAllRawHeaders()),
            (pairs, joined_headers(pairs), _fields(pairs)),
        )

    def test_repeated_values_are_joined_and_kept_apart(self):
        headers = headers_of([(b"X-Forwarded-For", b"1.2.3.4"), (b"x-forwarded-for", b" 5.6.7.8")])
        pairs, joined, fields = read_request_headers(headers.getAllRawHeaders())
        self.assertEqual(joined["x-forwarded-for"], "1.2.3.4,  5.6.7.8")
        self.assertEqual(fields["x-forwarded-for"], ["1.2.3.4", "5.6.7.8"])
        self.assertEqual(len(pairs), 2)

    def test_checked_fields_refuse_as_the_pairs_do(self):
        headers = headers_of(
            [
                (b"Host", b"example.com"),
                (b"Upgrade", b"websocket"),
                (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"Sec-WebSocket-Version", b"8"),
            ]
        )
        _, _, fields = read_request_headers(headers.getAllRawHeaders())
        with self.assertRaises(UpgradeRefused) as from_fields:
            check_upgrade_fields(b"GET", b"HTTP/1.1", fields)
        with self.assertRaises(UpgradeRefused) as from_pairs:
            check_client_upgrade(b"GET", b"HTTP/1.1", text_pairs(headers))
        self.assertEqual(from_fields.exception.status, 426)
        self.assertEqual(from_pairs.exception.status, 426)


class ElementsTests(unittest.TestCase):
    @given(st.lists(st.text(alphabet=" \t,abc", max_size=8), max_size=3))
    def test_a_lists_elements_are_those_of_every_line_split_at_commas(self, values):
        expected = [
            part.strip(" \t") for value in values for part in value.split(",") if part.strip(" \t")
        ]
        self.assertEqual(_elements(values), expected)
