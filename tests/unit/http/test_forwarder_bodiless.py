"""A listener request with no body to stream: framed for the backend as the client framed it.

A ``Content-Length: 0`` the client sent is forwarded; a request that said
nothing of a body is sent without a length or chunking.
"""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import BackendConfig
from tests.support.listener import forwarding_listener


class BodilessRequestTests(unittest.TestCase):
    def sent(self, request: bytes) -> bytes:
        harness = forwarding_listener(self, [BackendConfig("10.0.0.1", 80)])
        harness.client(request)
        return harness.accept().value()

    def test_a_get_with_content_length_0_is_sent_with_content_length_0(self):
        head = self.sent(b"GET /a HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 0\r\n\r\n")
        self.assertIn(b"\r\nContent-Length: 0\r\n", head)
        self.assertTrue(head.endswith(b"\r\n\r\n"), head)

    def test_a_get_without_a_body_is_sent_without_length_or_chunking(self):
        head = self.sent(b"GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        self.assertNotIn(b"Content-Length", head)
        self.assertNotIn(b"Transfer-Encoding", head)
