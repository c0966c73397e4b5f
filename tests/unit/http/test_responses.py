"""The answer to a refused request: one page, in the form the client asked for, closing."""

from __future__ import annotations

import json

from twisted.trial import unittest

from clbproxy.http.responses import error_page, refusal


def split(response: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


class RefusalTests(unittest.TestCase):
    def test_a_refusal_is_the_html_error_page_and_closes(self):
        lines, body = split(refusal(431, "the request headers are too large", None, None, "X-Id"))
        self.assertEqual(
            lines,
            [
                b"HTTP/1.1 431 Request Header Fields Too Large",
                b"Content-Type: text/html; charset=utf-8",
                b"Content-Length: %d" % (len(body),),
                b"Connection: close",
            ],
        )
        self.assertEqual(body, error_page(431, "the request headers are too large"))

    def test_a_client_preferring_json_gets_json_naming_the_request_id(self):
        lines, body = split(refusal(400, "bad", "application/json", "abc123", "X-Request-Id"))
        self.assertIn(b"Content-Type: application/json", lines)
        self.assertIn(b"X-Request-Id: abc123", lines)
        self.assertEqual(
            json.loads(body),
            {"status": 400, "error": "Bad Request", "detail": "bad", "request_id": "abc123"},
        )

    def test_the_request_id_header_is_sent_only_with_an_id(self):
        lines, _ = split(refusal(400, "bad", None, None, "X-Request-Id"))
        self.assertFalse([line for line in lines if line.startswith(b"X-Request-Id")])
