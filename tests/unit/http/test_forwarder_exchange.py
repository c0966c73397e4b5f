"""The forwarder's exchange on the lean backend client, in memory: bytes in, bytes out.

A listener (:class:`tests.support.listener.ListenerHarness`) forwards to
backends whose connections are in-memory transports, so each test reads the
exact backend request head, drives the backend's and the client's sockets
full and empty, and runs the response timeout on the reactor's clock.
"""

from __future__ import annotations

import re

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.forwarder import HTTPForwarder
from clbproxy.upstream.balancer import TargetGroup
from tests.support.listener import ListenerHarness, forwarding_listener

A = BackendConfig("10.0.0.1", 8001)
B = BackendConfig("10.0.0.2", 8002)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _without_id(head: bytes) -> bytes:
    """A backend head without its X-Request-Id line (a new random ID each request)."""
    return re.sub(rb"X-Request-Id: [0-9a-f]+\r\n", b"", head)


class ExchangeTestCase(unittest.TestCase):
    def listener(self, backends=(A,), **group_options) -> ListenerHarness:
        return forwarding_listener(self, backends, **group_options)


class RequestHeadTests(ExchangeTestCase):
    def test_the_backend_head_is_the_request_line_then_the_rewritten_fields(self):
        harness = self.listener()
        harness.client(
            b"GET /app?x=1 HTTP/1.1\r\nHost: shop.test\r\nx-team: blue\r\n"
            b"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Forwarded-For: 6.6.6.6\r\n"
            b"TE: trailers\r\n\r\n"
        )
        self.assertEqual(
            _without_id(harness.accept().value()),
            b"GET /app?x=1 HTTP/1.1\r\nTE: trailers\r\nHost: shop.test\r\nX-Team: blue\r\n"
            b"X-Forwarded-For: 6.6.6.6, 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
            b"X-Forwarded-Host: shop.test\r\nX-Forwarded-Port: 8080\r\n"
            b"X-Real-Ip: 192.0.2.7\r\n\r\n",
        )

    def test_a_post_without_a_body_says_content_length_0(self):
        harness = self.listener()
        harness.client(b"POST /form HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        head = harness.accept().value()
        self.assertTrue(head.startswith(b"POST /form HTTP/1.1\r\nContent-Length: 0\r\n"), head)

    def test_an_http10_request_without_host_is_sent_the_backends_address_last(self):
        harness = self.listener()
        harness.client(b"GET / HTTP/1.0\r\n\r\n")
        head = harness.accept().value()
        self.assertTrue(head.endswith(b"\r\nHost: 10.0.0.1:8001\r\n\r\n"), head)

    def test_without_idle_connections_the_backend_is_asked_to_close(self):
        harness = self.listener(http_pool_max_idle=0)
        harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        head = harness.accept().value()
        self.assertTrue(head.startswith(b"GET / HTTP/1.1\r\nConnection: close\r\n"), head)

    def test_a_chunked_body_is_announced_chunked_and_expect_stays_with_the_proxy(self):
        harness = self.listener()
        harness.client(
            b"PUT /f HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        head = harness.accept().value()
        self.assertTrue(
            head.startswith(b"PUT /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost:"), head
        )
        self.assertNotIn(b"Expect", head)


class RetryTests(ExchangeTestCase):
    def test_a_refused_connect_is_sent_to_another_backend(self):
        harness = self.listener(backends=(A, B))
        client = harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        harness.refuse(0)
        harness.accept(1).receive(OK)
        self.assertEqual(len(harness.backend_attempts()), 2)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK"), client.value())

    def test_a_kept_alive_connection_the_backend_closed_is_replaced_for_a_get(self):
        harness = self.listener()
        client = harness.client(b"GET /1 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        first = harness.accept()
        first.receive(OK)
        client.clear()
        client.receive(b"GET /2 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        self.assertIn(b"GET /2 ", first.value())
        first.peer_closes()
        self.assertEqual(harness.backend_attempts(), [("10.0.0.1", 8001)] * 2)
        second = harness.accept()
        self.assertTrue(second.value().startswith(b"GET /2 HTTP/1.1\r\n"), second.value())
        second.receive(OK)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK"), client.value())

    def test_a_post_on_a_kept_alive_connection_the_backend_closed_is_502(self):
        harness = self.listener()
        client = harness.client(b"GET /1 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        first = harness.accept()
        first.receive(OK)
        client.clear()
        client.receive(b"POST /2 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        first.peer_closes()
        self.assertEqual(len(harness.backend_attempts()), 1)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "), client.value())


class _Remembering:
    """A session persistence that remembers nothing, notes ``remember``, adds a header."""

    def __init__(self, reads: bool) -> None:
        self.reads_request = reads
        self.remembered: list[str] = []

    def lookup(self, request):
        return None

    def remember(self, request, backend):
        self.remembered.append(backend.address)
        return [("Set-Cookie", "lb=1")]


class GroupTestCase(unittest.TestCase):
    def listener(self, backends=(A, B), **group_options) -> None:
        clock = MemoryReactorClock()
        self.group = TargetGroup(TargetGroupConfig("pool", backends), clock, **group_options)
        rules = (RuleConfig(target_group="pool"),)
        listener = ListenerConfig(name="web", bind="tcp:0", rules=rules)
        self.harness = ListenerHarness(listener, {"pool": self.group}, clock)
        self.addCleanup(self.harness.close)


class PersistenceTests(GroupTestCase):
    def test_session_persistence_adds_its_headers_to_the_response(self):
        persistence = _Remembering(reads=True)
        self.listener(persistence=persistence)
        client = self.harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        self.harness.accept().receive(OK)
        self.assertEqual(persistence.remembered, ["10.0.0.1:8001"])
        self.assertIn(b"\r\nSet-Cookie: lb=1\r\n", client.value())

    def test_persistence_that_never_reads_requests_is_not_asked_to_remember(self):
        persistence = _Remembering(reads=False)
        self.listener(persistence=persistence)
        client = self.harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        self.harness.accept().receive(OK)
        self.assertEqual(persistence.remembered, [])
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK"), client.value())


class ReloadedPoolTests(GroupTestCase):
    """A request after a reload takes the pool the group's new settings call for."""

    def setUp(self):
        self.listener(backends=(A,))
        self.client = self.harness.client(b"GET /1 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        self.first = self.harness.accept()
        self.first.receive(OK)  # kept alive, idle

    def reload(self, **changes) -> None:
        self.group.config = attrs.evolve(self.group.config, **changes)
        self.client.receive(b"GET /2 HTTP/1.1\r\nHost: shop.test\r\n\r\n")

    def test_a_new_connect_timeout_keeps_the_kept_alive_connection(self):
        self.reload(connect_timeout=1.0)
        self.assertIn(b"GET /2 ", self.first.value())
        self.assertEqual(len(self.harness.backend_attempts()), 1)

    def test_new_pool_settings_retire_the_kept_alive_connection(self):
        self.reload(http_pool_max_idle=3)
        self.assertNotIn(b"GET /2 ", self.first.value())
        self.assertTrue(self.first.disconnecting)
        self.assertEqual(len(self.harness.backend_attempts()), 2)


class LoadTests(GroupTestCase):
    """A request in flight counts on its backend (``least_conn``, ``max_conns``) until it ends."""

    def setUp(self):
        self.listener()

    def test_a_request_counts_on_its_backend_until_its_response_is_complete(self):
        self.harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        backend = self.harness.accept()
        self.assertEqual((self.group.load(A), self.group.sent(A)), (1, 1))
        backend.receive(OK)
        self.assertEqual((self.group.load(A), self.group.sent(A)), (0, 1))

    def test_a_retried_request_counts_only_on_the_backend_it_went_to_next(self):
        self.harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        self.harness.refuse(0)
        self.assertEqual([self.group.load(A), self.group.load(B)], [0, 1])
        self.harness.accept(1).receive(OK)
        self.assertEqual([self.group.load(A), self.group.load(B)], [0, 0])
        self.assertEqual([self.group.sent(A), self.group.sent(B)], [1, 1])


class TimeoutTests(ExchangeTestCase):
    def test_no_response_head_within_response_timeout_is_504(self):
        harness = self.listener(response_timeout=5.0)
        client = harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        backend = harness.accept()
        harness.clock.advance(4.9)
        self.assertEqual(client.value(), b"")
        harness.clock.advance(0.2)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())
        self.assertTrue(backend.disconnecting)

    def test_an_upload_that_stalls_for_response_timeout_is_504(self):
        harness = self.listener(response_timeout=5.0)
        client = harness.client(
            b"POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 10\r\n\r\nabc"
        )
        backend = harness.accept()
        harness.clock.advance(4)
        client.receive(b"def")  # the upload moves: its clock starts again
        harness.clock.advance(4)
        self.assertEqual(client.value(), b"")
        self.assertTrue(backend.value().endswith(b"\r\n\r\nabcdef"), backend.value())
        harness.clock.advance(1.5)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())


class BackpressureTests(ExchangeTestCase):
    def test_a_full_backend_socket_stops_reading_the_client_until_it_drains(self):
        harness = self.listener()
        client = harness.client(
            b"POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        )
        backend = harness.accept()
        backend.producer.pauseProducing()  # the backend's socket buffer is full
        self.assertEqual(client.producerState, "paused")
        backend.producer.resumeProducing()
        self.assertEqual(client.producerState, "producing")

    def test_a_slow_client_stops_the_reading_of_the_backend_until_it_drains(self):
        harness = self.listener()
        client = harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        backend = harness.accept()
        backend.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        client.producer.pauseProducing()  # the client's socket buffer is full
        self.assertEqual(backend.producerState, "paused")
        client.producer.resumeProducing()
        self.assertEqual(backend.producerState, "producing")
        backend.receive(b"defghij")
        self.assertTrue(client.value().endswith(b"\r\n\r\nabcdefghij"), client.value())


class TrailerTests(ExchangeTestCase):
    def test_the_clients_trailers_end_the_backends_chunked_body(self):
        harness = self.listener()
        client = harness.client(
            b"PUT / HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        backend = harness.accept()
        client.receive(b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nHost: evil\r\n\r\n")
        body = backend.value().split(b"\r\n\r\n", 1)[1]
        self.assertEqual(body, b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n")

    def test_the_backends_trailers_reach_a_client_that_accepts_them(self):
        harness = self.listener()
        client = harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\nTE: trailers\r\n\r\n")
        harness.accept().receive(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Status\r\n\r\n"
            b"2\r\nok\r\n0\r\nX-Status: done\r\nSet-Cookie: a=1\r\n\r\n"
        )
        answer = client.value()
        self.assertIn(b"\r\nTrailer: X-Status\r\n", answer)
        self.assertTrue(answer.endswith(b"2\r\nok\r\n0\r\nX-Status: done\r\n\r\n"), answer)


class BrokenResponseTests(ExchangeTestCase):
    def test_a_backend_closing_mid_body_aborts_the_client_connection(self):
        harness = self.listener()
        client = harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        backend = harness.accept()
        backend.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        backend.peer_closes()
        self.assertTrue(client.value().startswith(b"HTTP/1.1 200 OK"), client.value())
        self.assertTrue(client.disconnecting)
        self.assertTrue(client.value().endswith(b"abc"))

    def test_a_malformed_chunk_before_any_body_is_a_502(self):
        harness = self.listener()
        client = harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        harness.accept().receive(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: a\r\n\r\nzz\r\n"
        )
        answer = client.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 502 "), answer)
        self.assertNotIn(b"X-Backend", answer)

    def test_a_client_that_goes_away_closes_the_backend_connection(self):
        harness = self.listener()
        client = harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        backend = harness.accept()
        client.peer_closes()
        self.assertTrue(backend.disconnecting)


class _RecordedPool:
    """A pool that records what it was built with and whether it was retired."""

    def __init__(self, reactor, group, connect) -> None:
        self.group = group
        self.connect = connect
        self.retired = False

    def retire(self):
        self.retired = True


class _Connector:
    def endpoint(self, backend, group):
        return (backend, group)


class PoolPerGroupTests(unittest.TestCase):
    def forwarder(self):
        return HTTPForwarder(
            MemoryReactorClock(),
            scheme="http",
            trusted=TrustedProxies(),
            connector=_Connector(),
            pool_factory=_RecordedPool,
        )

    def test_a_group_keeps_its_pool_while_its_tls_and_pool_settings_stay(self):
        forwarder = self.forwarder()
        first = forwarder.pool_for(TargetGroupConfig("pool", (A,), connect_timeout=5.0))
        again = forwarder.pool_for(TargetGroupConfig("pool", (A,), connect_timeout=1.0))
        self.assertIs(first, again)
        # New connections are made with the group's settings of now.
        self.assertEqual(again.connect(A)[1].connect_timeout, 1.0)

    def test_other_tls_or_pool_settings_retire_the_pool(self):
        forwarder = self.forwarder()
        first = forwarder.pool_for(TargetGroupConfig("pool", (A,), server_name="a.internal"))
        second = forwarder.pool_for(TargetGroupConfig("pool", (A,), server_name="b.internal"))
        third = forwarder.pool_for(
            TargetGroupConfig("pool", (A,), server_name="b.internal", http_pool_max_idle=0)
        )
        self.assertEqual([first.retired, second.retired, third.retired], [True, True, False])

    def test_a_group_gone_after_a_reload_has_its_pool_retired(self):
        forwarder = self.forwarder()
        kept = forwarder.pool_for(TargetGroupConfig("kept", (A,)))
        gone = forwarder.pool_for(TargetGroupConfig("gone", (B,)))
        forwarder.keep_groups(["kept"])
        self.assertEqual([kept.retired, gone.retired], [False, True])
