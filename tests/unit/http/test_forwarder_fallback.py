"""The forwarder's response: the backend's head with the proxy's additions, or a 502 instead.

The response's own headers (``Server``, ``Date``, the request's ID) are kept
apart from the backend's until the body starts: a backend that fails before
any body byte reaches the client is answered with a 502 page that carries only
those, nothing of the backend's answer, its cookie or ``Via``.
"""

from __future__ import annotations

import re

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import (
    BackendConfig,
    ListenerConfig,
    PersistenceConfig,
    RuleConfig,
    TargetGroupConfig,
)
from clbproxy.upstream.balancer import TargetGroup
from tests.support.listener import ListenerHarness

A = BackendConfig("10.0.0.1", 8001)
GET = b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n"


def names(answer: bytes) -> list[bytes]:
    """The field names of a response head, in order."""
    head = answer.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0] for line in head.split(b"\r\n")[1:]]


class FallbackTests(unittest.TestCase):
    def listener(self) -> ListenerHarness:
        clock = MemoryReactorClock()
        persistence = PersistenceConfig(type="cookie", secret="a secret of sixteen+ characters")
        group = TargetGroup(TargetGroupConfig("pool", (A,), persistence=persistence), clock)
        listener = ListenerConfig(
            name="web", bind="tcp:0", via=True, rules=(RuleConfig(target_group="pool"),)
        )
        harness = ListenerHarness(listener, {"pool": group}, clock)
        self.addCleanup(harness.close)
        return harness

    def test_a_response_carries_the_backends_fields_then_the_cookie_and_via(self) -> None:
        harness = self.listener()
        client = harness.client(GET)
        harness.accept().receive(
            b"HTTP/1.1 200 OK\r\nX-Backend: a\r\nDate: theirs\r\nContent-Length: 2\r\n\r\nok"
        )
        answer = client.value()
        self.assertEqual(
            names(answer),
            [b"Date", b"X-Request-Id", b"X-Backend", b"Content-Length", b"Set-Cookie", b"Via"],
        )
        self.assertIn(b"\r\nDate: theirs\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nok"), answer)

    def test_a_backend_that_fails_before_the_body_gets_a_502_with_only_the_proxys_fields(
        self,
    ) -> None:
        harness = self.listener()
        client = harness.client(GET)
        harness.accept().receive(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: a\r\n"
            b"Date: theirs\r\n\r\nzz\r\n"
        )
        answer = client.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), answer)
        self.assertEqual(
            names(answer),
            [b"Server", b"Date", b"X-Request-Id", b"Content-Type", b"Content-Length"],
        )
        self.assertNotIn(b"theirs", answer)
        self.assertIsNotNone(re.search(rb"\r\nX-Request-Id: [0-9a-f]{32}\r\n", answer), answer)

    def test_the_next_response_on_the_connection_starts_from_the_proxys_fields_again(
        self,
    ) -> None:
        harness = self.listener()
        client = harness.client(GET)
        backend = harness.accept()
        backend.receive(b"HTTP/1.1 200 OK\r\nX-Backend: a\r\nContent-Length: 2\r\n\r\nok")
        client.clear()
        client.receive(GET)
        backend.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        answer = client.value()
        self.assertNotIn(b"X-Backend", answer)
        self.assertEqual(names(answer).count(b"Set-Cookie"), 1, answer)


class PacingTests(unittest.TestCase):
    def test_a_whole_response_is_relayed_and_its_connection_kept_with_the_client_full(
        self,
    ) -> None:
        clock = MemoryReactorClock()
        group = TargetGroup(TargetGroupConfig("pool", (A,)), clock)
        listener = ListenerConfig(
            name="web", bind="tcp:0", rules=(RuleConfig(target_group="pool"),)
        )
        harness = ListenerHarness(listener, {"pool": group}, clock)
        self.addCleanup(harness.close)
        client = harness.client(GET)
        backend = harness.accept()
        client.producer.pauseProducing()  # the client's socket buffer is full
        backend.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(client.value().endswith(b"\r\n\r\nok"), client.value())
        self.assertEqual(backend.producerState, "producing")
        self.assertEqual(harness.service.forwarder.pool_for(group.config).idle_count(A), 1)
