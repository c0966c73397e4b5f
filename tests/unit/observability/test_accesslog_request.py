"""Tests for :func:`clbproxy.observability.accesslog.request_record`: what a request's record reads.

A listener's request keeps its fields in :class:`~clbproxy.http.field_headers.FieldHeaders`
(read in one call), an HTTP/2 stream's in plain ``Headers``: the record is the same.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.observability.accesslog import request_record

FIELDS = [
    (b"Host", b"old.example"),
    (b"Host", b"shop.example"),
    (b"Referer", b"https://shop.example/cart"),
    (b"User-Agent", b"curl/8.5"),
    (b"X-Forwarded-For", b"203.0.113.9, 198.51.100.2"),
]


class _Request:
    """What ``request_record`` reads of a request."""

    method = b"GET"
    uri = b"/cart?id=3"
    clientproto = b"HTTP/1.1"
    body = None

    def __init__(self, headers) -> None:
        self.requestHeaders = headers
        self.finished: list = []

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", "10.0.0.7", 50000)

    def on_finish(self, callback) -> None:
        self.finished.append(callback)


def plain_headers(pairs) -> Headers:
    headers = Headers()
    for name, value in pairs:
        headers.addRawHeader(name, value)
    return headers


NOBODY = TrustedProxies()


class RequestRecordTests(unittest.TestCase):
    def record(self, headers, trusted: TrustedProxies = NOBODY):
        return request_record(_Request(headers), "web", None, Clock(), trusted)

    def test_a_listener_request_gives_the_last_host_the_referer_and_the_agent(self) -> None:
        record = self.record(FieldHeaders.from_pairs(FIELDS))
        self.assertEqual(
            (record.host, record.referer, record.user_agent),
            ("shop.example", "https://shop.example/cart", "curl/8.5"),
        )

    def test_fields_not_sent_are_none(self) -> None:
        record = self.record(FieldHeaders.from_pairs([]))
        self.assertEqual((record.host, record.referer, record.user_agent), (None, None, None))
        self.assertEqual(record.client, "10.0.0.7")

    def test_a_trusted_peer_names_the_client_from_x_forwarded_for(self) -> None:
        trusted = TrustedProxies.from_cidrs(["10.0.0.0/8"])
        record = self.record(FieldHeaders.from_pairs(FIELDS), trusted)
        self.assertEqual(record.client, "198.51.100.2")

    def test_plain_headers_give_the_same_record(self) -> None:
        trusted = TrustedProxies.from_cidrs(["10.0.0.0/8"])
        for pairs in (FIELDS, [], FIELDS[2:3]):
            self.assertEqual(
                self.record(plain_headers(pairs), trusted),
                self.record(FieldHeaders.from_pairs(pairs), trusted),
            )


class _Path(_Request):
    def __init__(self, uri: bytes, headers) -> None:
        super().__init__(headers)
        self.uri = uri


class RecordTextTests(unittest.TestCase):
    """The path and Host are escaped (``printable``) exactly when they hold a control character."""

    def record(self, uri: bytes, host: bytes):
        request = _Path(uri, FieldHeaders.from_pairs([(b"Host", host)]))
        return request_record(request, "web", None, Clock(), NOBODY)

    def test_control_characters_in_the_path_and_host_are_escaped(self) -> None:
        made = self.record(b"/a\x1b[2Jb", b"h\x9bost")
        self.assertEqual((made.path, made.host), ("/a\\x1b[2Jb", "h\\x9bost"))

    def test_text_that_is_not_printable_but_holds_no_control_is_kept(self) -> None:
        made = self.record(b"/a\xa0b", b"h\xadost")  # NBSP and soft hyphen: no controls
        self.assertEqual((made.path, made.host), ("/a\xa0b", "h\xadost"))

    def test_an_empty_host_is_empty_text(self) -> None:
        self.assertEqual(self.record(b"/", b"").host, "")
