"""copy_response_headers gives the response new headers: those it had are left as they were."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.parsing import ResponseHead
from clbproxy.http.proxy_headers import copy_response_headers, never_copied


class _Request:
    """What copy_response_headers uses of a request."""

    def __init__(self, headers: Headers, method: bytes = b"GET") -> None:
        self.method = method
        self.clientproto = b"HTTP/1.1"
        self.responseHeaders = headers
        self.defaultContentType = b"text/html"
        self.code = 200
        self.code_message = b"OK"

    def setResponseCode(self, code: int, message: bytes) -> None:
        self.code, self.code_message = code, message


def own(cls: type) -> Headers:
    headers = cls()
    headers.setRawHeaders(b"Server", [b"clbproxy"])
    headers.setRawHeaders(b"Date", [b"ours"])
    headers.setRawHeaders(b"X-Request-Id", [b"abc"])
    headers.setRawHeaders(b"Set-Cookie", [b"own=1"])
    return headers


def head(*fields: tuple[bytes, bytes], length=2) -> ResponseHead:
    return ResponseHead(201, b"Made", b"1.1", list(fields), length, False, False, True, False)


class CopyTests(unittest.TestCase):
    def test_the_response_s_headers_before_the_copy_are_unchanged(self) -> None:
        for cls in (FieldHeaders, Headers):
            before = own(cls)
            request = _Request(before)
            copy_response_headers(
                head((b"Date", b"theirs"), (b"Server", b"nginx"), (b"X-Request-Id", b"no")),
                request,
                never_copied(b"X-Request-Id"),
                [("Set-Cookie", "clb=x"), (b"Via", b"1.1 clbproxy")],
            )
            self.assertIsNot(request.responseHeaders, before)
            self.assertEqual(
                list(before.getAllRawHeaders()),
                [
                    (b"Server", [b"clbproxy"]),
                    (b"Date", [b"ours"]),
                    (b"X-Request-Id", [b"abc"]),
                    (b"Set-Cookie", [b"own=1"]),
                ],
            )

    def test_added_fields_come_last_or_after_the_values_of_their_name(self) -> None:
        for cls in (FieldHeaders, Headers):
            request = _Request(own(cls))
            copy_response_headers(
                head((b"set-cookie", b"b=1"), (b"Date", b"theirs"), (b"X-App", b"1")),
                request,
                never_copied(b"X-Request-Id"),
                [("Set-Cookie", "clb=x"), (b"Via", b"1.1 clbproxy")],
            )
            self.assertEqual(
                list(request.responseHeaders.getAllRawHeaders()),
                [
                    (b"Date", [b"theirs"]),
                    (b"X-Request-Id", [b"abc"]),
                    (b"Set-Cookie", [b"b=1", b"clb=x"]),
                    (b"X-App", [b"1"]),
                    (b"Content-Length", [b"2"]),
                    (b"Via", [b"1.1 clbproxy"]),
                ],
            )
            self.assertEqual((request.code, request.code_message), (201, b"Made"))

    def test_a_name_read_again_in_another_spelling_is_copied_the_same(self) -> None:
        for fields in ([(b"x-app", b"1")], [(b"X-APP", b"1")], [(b"x-app", b"1")]):
            request = _Request(FieldHeaders())
            copy_response_headers(head(*fields), request)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"X-App"), [b"1"])

    def test_a_head_response_keeps_the_backends_last_content_length(self) -> None:
        request = _Request(FieldHeaders(), method=b"HEAD")
        copy_response_headers(
            head((b"Content-Length", b"7"), (b"content-length", b"9"), length=None), request
        )
        self.assertEqual(
            list(request.responseHeaders.getAllRawHeaders()), [(b"Content-Length", [b"9"])]
        )
