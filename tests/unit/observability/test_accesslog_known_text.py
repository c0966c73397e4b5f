"""A record's method and protocol: common ones as they are, others escaped as ever."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.observability.accesslog import request_record


class _Request:
    uri = b"/"
    body = None

    def __init__(self, method: bytes, clientproto: bytes) -> None:
        self.method = method
        self.clientproto = clientproto
        self.requestHeaders = FieldHeaders()

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", "10.0.0.7", 50000)

    def on_finish(self, callback) -> None:
        pass


def record(method: bytes, clientproto: bytes = b"HTTP/1.1"):
    return request_record(_Request(method, clientproto), "web", None, Clock(), TrustedProxies())


class KnownTextTests(unittest.TestCase):
    def test_common_methods_and_versions_are_their_text(self) -> None:
        for method in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"):
            for version in (b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0"):
                made = record(method, version)
                self.assertEqual((made.method, made.protocol), (method.decode(), version.decode()))

    def test_an_extension_method_is_its_text(self) -> None:
        self.assertEqual(record(b"PROPFIND").method, "PROPFIND")

    def test_control_characters_are_still_escaped(self) -> None:
        made = record(b"G\x1bT", b"HTTP/1.1\x07")
        self.assertEqual((made.method, made.protocol), ("G\\x1bT", "HTTP/1.1\\x07"))
