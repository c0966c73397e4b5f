"""never_copied: the request-ID header a backend answers with never replaces the response's own."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.parsing import ResponseHead
from clbproxy.http.proxy_headers import copy_response_headers, never_copied


class _Request:
    """What copy_response_headers uses of a request, its response named by the listener."""

    def __init__(self, headers: Headers) -> None:
        self.method = b"GET"
        self.clientproto = b"HTTP/1.1"
        self.responseHeaders = headers
        self.defaultContentType = b"text/html"
        self.code = 200
        self.code_message = b"OK"

    def setResponseCode(self, code: int, message: bytes) -> None:
        self.code, self.code_message = code, message


def answered(headers: Headers, id_header: bytes, *fields: tuple[bytes, bytes]) -> list:
    """The response's fields once the backend's (``fields``) are copied onto ``headers``."""
    head = ResponseHead(200, b"OK", b"1.1", list(fields), 2, False, False, True, False)
    request = _Request(headers)
    copy_response_headers(head, request, never_copied(id_header))
    return list(request.responseHeaders.getAllRawHeaders())


def named(cls: type) -> Headers:
    headers = cls()
    headers.setRawHeaders(b"Date", [b"ours"])
    headers.setRawHeaders(b"X-Request-Id", [b"proxy-made"])
    return headers


class NeverCopiedTests(unittest.TestCase):
    def test_the_backends_id_header_in_any_spelling_is_not_copied(self) -> None:
        fields = answered(
            named(FieldHeaders),
            b"X-Request-Id",
            (b"x-request-id", b"backend-said"),
            (b"Date", b"theirs"),
            (b"X-REQUEST-ID", b"again"),
        )
        self.assertEqual(
            fields,
            [
                (b"Date", [b"theirs"]),
                (b"X-Request-Id", [b"proxy-made"]),
                (b"Content-Length", [b"2"]),
            ],
        )

    def test_twisteds_own_headers_keep_the_id_too(self) -> None:
        fields = answered(named(Headers), b"X-Request-Id", (b"X-Request-Id", b"backend-said"))
        self.assertIn((b"X-Request-Id", [b"proxy-made"]), fields)
        self.assertNotIn("backend-said", repr(fields))

    def test_with_ids_off_the_backends_id_header_is_passed_on(self) -> None:
        fields = answered(FieldHeaders(), b"", (b"X-Request-Id", b"backend-said"))
        self.assertEqual(
            fields, [(b"X-Request-Id", [b"backend-said"]), (b"Content-Length", [b"2"])]
        )

    def test_a_renamed_id_header_lets_the_default_name_through(self) -> None:
        fields = answered(
            FieldHeaders(),
            b"X-Correlation-Id",
            (b"X-Request-Id", b"b"),
            (b"X-Correlation-Id", b"c"),
        )
        self.assertEqual(fields, [(b"X-Request-Id", [b"b"]), (b"Content-Length", [b"2"])])

    def test_hop_by_hop_fields_are_still_dropped(self) -> None:
        fields = answered(
            FieldHeaders(), b"X-Request-Id", (b"Keep-Alive", b"timeout=5"), (b"X-Kept", b"yes")
        )
        self.assertEqual(fields, [(b"X-Kept", [b"yes"]), (b"Content-Length", [b"2"])])
