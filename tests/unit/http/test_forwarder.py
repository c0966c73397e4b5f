"""The HTTP forwarder at its seams: a request head in, the backend's bytes out, the answer back."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import BackendConfig
from tests.support.listener import ListenerHarness, forwarding_listener

A = BackendConfig("10.0.0.1", 8001)
B = BackendConfig("10.0.0.2", 8002)
GET = b"GET /app/page?x=1 HTTP/1.1\r\nHost: shop.test\r\n"


def _head(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")


class ForwarderTestCase(unittest.TestCase):
    def listener(self, backends=(A,), **group_options) -> ListenerHarness:
        return forwarding_listener(self, backends, **group_options)


class ForwardingTests(ForwarderTestCase):
    def test_the_backend_gets_the_request_with_forwarding_headers(self):
        harness = self.listener()
        harness.client(GET + b"X-Team: blue\r\n\r\n")
        self.assertEqual(harness.backend_attempts(), [("10.0.0.1", 8001)])
        head = _head(harness.accept().value())
        self.assertEqual(head[0], b"get /app/page?x=1 http/1.1")
        self.assertIn(b"host: shop.test", head)
        self.assertIn(b"x-team: blue", head)
        self.assertIn(b"x-forwarded-for: 192.0.2.7", head)
        self.assertIn(b"x-forwarded-proto: http", head)

    def test_hop_by_hop_headers_named_by_the_client_stay_behind(self):
        harness = self.listener()
        harness.client(GET + b"Connection: X-Secret\r\nX-Secret: 1\r\n\r\n")
        head = _head(harness.accept().value())
        self.assertFalse([line for line in head if line.startswith(b"x-secret")], head)

    def test_the_backends_response_reaches_the_client(self):
        harness = self.listener()
        client = harness.client(GET + b"\r\n")
        backend = harness.accept()
        backend.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Served-By: a\r\n\r\nhello")
        answer = client.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertIn(b"x-served-by: a", _head(answer))
        self.assertTrue(answer.endswith(b"\r\n\r\nhello"), answer)


class FailureTests(ForwarderTestCase):
    def test_a_refused_connect_is_retried_on_another_backend_then_502(self):
        harness = self.listener(backends=(A, B))
        client = harness.client(GET + b"\r\n")
        harness.refuse(0)
        self.assertEqual(len(harness.backend_attempts()), 2)
        harness.refuse(1)
        self.assertEqual(
            sorted(harness.backend_attempts()), [("10.0.0.1", 8001), ("10.0.0.2", 8002)]
        )
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "), client.value())

    def test_a_group_with_no_backend_in_service_answers_503(self):
        harness = self.listener()
        harness.service.relay.settings.groups["pool"].set_state(A.address, "maint")
        client = harness.client(GET + b"\r\n")
        self.assertEqual(harness.backend_attempts(), [])
        self.assertTrue(client.value().startswith(b"HTTP/1.1 503 "), client.value())

    def test_a_backend_that_does_not_answer_in_time_gives_504(self):
        harness = self.listener(response_timeout=5.0)
        client = harness.client(GET + b"\r\n")
        harness.accept()
        harness.clock.advance(4)
        self.assertEqual(client.value(), b"")
        harness.clock.advance(2)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())
