"""The backend client's timers: one per connection, re-armed, never one per request."""

from __future__ import annotations

from tests.unit.http.test_upstream_client import GET, OK, A, PoolTestCase


class IdleTimerTests(PoolTestCase):
    def test_a_connection_busy_when_its_idle_timer_fires_stays_open(self):
        pool = self.pool(http_pool_idle_timeout=5.0)
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK)  # idle from t=0
        self.clock.advance(1)
        sink, _ = self.send(pool)  # busy from t=1, past the first deadline (t=5)
        self.clock.advance(6)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(OK)  # idle again from t=7
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idle_count(A), 0)

    def test_many_requests_on_a_connection_leave_one_idle_and_one_response_timer(self):
        pool = self.pool(http_pool_idle_timeout=5.0)
        self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(OK)
        for _ in range(20):
            self.send(pool)
            protocol.dataReceived(OK)
        # The idle timer and the response timer, however many requests went.
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)


class ResponseTimerTests(PoolTestCase):
    def test_an_earlier_exchanges_timer_does_not_cut_the_next_one_short(self):
        pool = self.pool(http_pool_idle_timeout=60.0)
        self.send(pool, timeout=5.0)  # due at t=5
        protocol, _ = self.endpoints.accept()
        self.clock.advance(1)
        protocol.dataReceived(OK)
        self.clock.advance(3)
        sink, _ = self.send(pool, timeout=5.0)  # sent at t=4: due at t=9
        self.clock.advance(4.9)
        self.assertEqual(sink.events, [("connected",)])
        self.clock.advance(0.2)
        self.assertEqual(sink.last, ("failed", 504, "no response within 5 s", False))

    def test_a_response_in_time_on_a_reused_connection_is_not_timed_out(self):
        pool = self.pool(http_pool_idle_timeout=60.0)
        self.send(pool, timeout=5.0)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK)
        sink, _ = self.send(pool, timeout=5.0)
        self.clock.advance(4)
        protocol.dataReceived(OK)
        self.clock.advance(10)
        self.assertEqual(sink.last, ("complete", []))
        self.assertFalse(transport.disconnecting)

    def test_a_lost_connection_leaves_no_response_timer(self):
        pool = self.pool(http_pool_idle_timeout=60.0)
        sink, _ = self.send(pool, head=GET, timeout=5.0)
        protocol, _ = self.endpoints.accept()
        self.lose(protocol)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_shorter_timeout_on_a_reused_connection_moves_its_timer_earlier(self):
        pool = self.pool(http_pool_idle_timeout=60.0)
        self.send(pool, timeout=5.0)  # the timer: due at t=5
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(OK)
        self.clock.advance(4)
        self.send(pool, timeout=5.0)  # due at t=9: the timer waits again at t=5
        self.clock.advance(2)
        protocol.dataReceived(OK)
        self.clock.advance(1)
        sink, _ = self.send(pool, timeout=1.0)  # sent at t=7 (a reload): due at t=8
        self.clock.advance(0.9)
        self.assertEqual(sink.events, [("connected",)])
        self.clock.advance(0.2)
        self.assertEqual(sink.last, ("failed", 504, "no response within 1 s", False))
