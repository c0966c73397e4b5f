"""ListenerConnection's header and idle timeouts on one lazily checked timer.

The timer wakes at the shortest timeout and waits again for what is left, so
a request moves no timer; these tests pin that every timeout still fires at
its documented time, on both parser back ends.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from clbproxy.config import ListenerConfig
from clbproxy.http.parsers import available
from clbproxy.listener.connection import ListenerSite
from tests.unit.listener.test_connection import GET, Root, respond


class _TimerTests:
    backend = ""

    def setUp(self):
        if self.backend not in available():
            raise unittest.SkipTest(f"the {self.backend} HTTP parser is not installed here")

    def connect(self, root=None, **options):
        self.clock = MemoryReactorClock()
        self.root = root if root is not None else Root(answer=b"x")
        config = ListenerConfig(name="web", bind="tcp:0", rules=(), **options)
        site = ListenerSite(self.root, config, self.clock, backend=self.backend)
        self.connection = site.buildProtocol(None)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        return self.connection

    def sent(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def test_keepalive_longer_than_the_header_timeout_closes_at_keepalive(self):
        self.connect(header_timeout=2, keepalive_timeout=30, client_timeout=60)
        self.connection.dataReceived(GET)
        self.clock.advance(29.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_requests_kept_coming_for_many_timeouts_never_time_out(self):
        self.connect(header_timeout=2, keepalive_timeout=3, client_timeout=2)
        for _ in range(40):
            self.connection.dataReceived(GET)
            self.clock.advance(1)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.root.requests), 40)

    def test_keepalive_counts_from_the_last_response_after_a_busy_spell(self):
        self.connect(header_timeout=2, keepalive_timeout=3, client_timeout=2)
        for _ in range(10):
            self.connection.dataReceived(GET)
            self.clock.advance(1.5)
        self.clock.advance(1.4)  # 2.9 s after the last response
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_a_head_in_pieces_after_a_long_wait_gets_408_at_header_timeout(self):
        self.connect(header_timeout=2, keepalive_timeout=30, client_timeout=60)
        self.connection.dataReceived(GET)
        self.sent()
        self.clock.advance(7.3)
        self.connection.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(1.9)
        self.assertEqual(self.sent(), b"")
        self.clock.advance(0.2)
        self.assertTrue(self.sent().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(self.transport.disconnecting)

    def test_a_body_cut_short_in_the_heads_read_closes_after_client_timeout(self):
        self.connect(Root(), header_timeout=1, keepalive_timeout=30, client_timeout=4)
        self.connection.dataReceived(GET)
        respond(self.root.requests[0])
        self.clock.advance(5)
        self.connection.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab")
        self.clock.advance(3.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_no_timeout_fires_while_a_response_is_awaited(self):
        self.connect(Root(), header_timeout=1, keepalive_timeout=2, client_timeout=1)
        self.connection.dataReceived(GET)
        self.clock.advance(100)
        self.assertFalse(self.transport.disconnecting)
        (request,) = self.root.requests
        request.setHeader(b"Content-Length", b"0")
        request.finish()
        self.clock.advance(1.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_all_timeouts_off_never_close(self):
        self.connect(header_timeout=0, keepalive_timeout=0, client_timeout=0)
        self.connection.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(10_000)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HttptoolsTimerTests(_TimerTests, unittest.TestCase):
    backend = "httptools"


class H11TimerTests(_TimerTests, unittest.TestCase):
    backend = "h11"
