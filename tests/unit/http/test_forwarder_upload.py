"""The upload timeout of a streamed request body: ``response_timeout`` between writes."""

from __future__ import annotations

from tests.unit.http.test_forwarder_exchange import ExchangeTestCase

HEAD = b"POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\n"


class UploadTimeoutTests(ExchangeTestCase):
    def test_an_upload_that_keeps_moving_is_never_cut(self):
        harness = self.listener(response_timeout=5.0)
        client = harness.client(HEAD + b"x")
        backend = harness.accept()
        for _ in range(10):  # 40 s in all, 4 s between writes
            harness.clock.advance(4)
            client.receive(b"x")
        self.assertEqual(client.value(), b"")
        self.assertTrue(backend.value().endswith(b"\r\n\r\n" + b"x" * 11), backend.value())
        self.assertFalse(backend.disconnecting)

    def test_a_stalled_upload_is_cut_response_timeout_after_its_last_write(self):
        harness = self.listener(response_timeout=5.0)
        client = harness.client(HEAD + b"x")
        backend = harness.accept()
        harness.clock.advance(3)
        client.receive(b"x")
        harness.clock.advance(3)
        client.receive(b"x")  # the last write, at 6 s
        harness.clock.advance(4.9)
        self.assertEqual(client.value(), b"")
        harness.clock.advance(0.2)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())
        self.assertTrue(backend.disconnecting)

    def test_an_upload_with_no_write_after_the_head_is_cut_after_response_timeout(self):
        harness = self.listener(response_timeout=5.0)
        client = harness.client(HEAD)
        harness.accept()
        harness.clock.advance(4.9)
        self.assertEqual(client.value(), b"")
        harness.clock.advance(0.2)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())
