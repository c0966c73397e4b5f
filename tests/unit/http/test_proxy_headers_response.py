"""copy_response_headers: which backend fields reach the client, read in one pass."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.parsing import ResponseHead
from clbproxy.http.proxy_headers import copy_response_headers


class _Request:
    """What copy_response_headers uses of a request."""

    def __init__(self) -> None:
        self.method = b"GET"
        self.clientproto = b"HTTP/1.1"
        self.responseHeaders = FieldHeaders()
        self.defaultContentType = b"text/html"
        self.code = 200
        self.code_message = b"OK"

    def setResponseCode(self, code: int, message: bytes) -> None:
        self.code, self.code_message = code, message


def copied(*fields: tuple[bytes, bytes]) -> list:
    head = ResponseHead(200, b"OK", b"1.1", list(fields), 2, False, False, True, False)
    request = _Request()
    copy_response_headers(head, request)
    return list(request.responseHeaders.getAllRawHeaders())


class CopyResponseHeadersTests(unittest.TestCase):
    def test_a_field_named_by_a_later_connection_field_is_dropped(self) -> None:
        fields = copied(
            (b"X-Internal", b"secret"),
            (b"X-Kept", b"yes"),
            (b"Connection", b"keep-alive, X-Internal"),
        )
        self.assertEqual(fields, [(b"X-Kept", [b"yes"]), (b"Content-Length", [b"2"])])

    def test_without_connection_only_the_default_hop_by_hop_fields_are_dropped(self) -> None:
        fields = copied(
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Status", b"x"),
            (b"Proxy", b"http://p"),
            (b"Trailers", b"x"),
            (b"X-A", b"1"),
            (b"X-A", b"2"),
            (b"Content-Length", b"2"),
        )
        self.assertEqual(fields, [(b"X-A", [b"1", b"2"]), (b"Content-Length", [b"2"])])

    def test_connection_keep_alive_drops_nothing_more(self) -> None:
        fields = copied((b"Connection", b"keep-alive"), (b"X-Kept", b"yes"))
        self.assertEqual(fields, [(b"X-Kept", [b"yes"]), (b"Content-Length", [b"2"])])
