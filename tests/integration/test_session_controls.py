"""Session controls over real sockets: rate limits (throttle and close), lifetimes, relief.

A proxy on 127.0.0.1 with its access log, metrics and status API, echo backends
(:mod:`tests.support.network`), and Autobahn clients.
"""

from __future__ import annotations

import time

from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import RuleConfig
from tests.support.observed import (
    Observed,
    get_json,
    parse_plain,
    sample,
    scrape,
    wait_for_lines,
)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class ControlsFixture:
    timeout = 30

    @defer.inlineCallbacks
    def start(self, rules=None, **listener_options):
        self.net = Observed(self)
        self.backend, backend_port = self.net.backend(deflate=False)
        backend_port = yield backend_port
        self.log_path = self.mktemp()
        self.port = yield self.net.start(
            [backend_port], log_path=self.log_path, rules=rules, **listener_options
        )

    def sessions(self):
        return list(self.net.service.relay.sessions)

    @defer.inlineCallbacks
    def access_lines(self, count):
        lines = yield wait_for_lines(self.log_path, count)
        return [parse_plain(line) for line in lines]


class ThrottleTests(ControlsFixture, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_flooding_client_is_slowed_all_its_messages_arrive_and_others_are_not(self):
        yield self.start(websocket_message_rate=50.0, websocket_message_burst=10)
        flood = self.net.client(self.port, "/echo")
        calm = self.net.client(self.port, "/echo")
        flooder = yield flood.opened
        other = yield calm.opened
        started = time.monotonic()
        payloads = [b"%04d" % i + b"x" * 4092 for i in range(100)]
        for payload in payloads:
            flooder.sendMessage(payload, isBinary=True)
        # Meanwhile the other session's echoes come back at once.
        round_trips = []
        while len(flood.messages) < 100 and time.monotonic() - started < 20:
            sent = time.monotonic()
            other.sendMessage(b"ping %d" % len(round_trips))
            yield calm.wait_messages(len(round_trips) + 1)
            round_trips.append(time.monotonic() - sent)
            yield sleep(0.05)
        echoes = yield flood.wait_messages(100)
        elapsed = time.monotonic() - started
        self.assertEqual([payload for payload, _ in echoes], payloads)
        # 100 messages at 50 per second with a burst of 10 (one read of up to 64 KiB,
        # 16 of these, may pass at once): well over a second, not at once.
        self.assertGreater(elapsed, 1.0)
        self.assertGreater(len(round_trips), 10)
        self.assertLess(max(round_trips), 0.25, round_trips)
        found = yield scrape(self.net)
        self.assertGreater(
            sample(found, "clbproxy_websocket_rate_throttles_total", listener="web"), 0
        )


class CloseActionTests(ControlsFixture, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_client_over_its_rate_is_closed_with_1008_and_the_backend_told_1001(self):
        yield self.start(
            websocket_message_rate=5.0, websocket_message_burst=5, websocket_rate_action="close"
        )
        self.backend.closed = defer.Deferred()
        client = self.net.client(self.port, "/echo")
        protocol = yield client.opened
        for _ in range(20):
            protocol.sendMessage(b"spam")
        was_clean, code, reason = yield client.closed
        self.assertEqual((code, reason), (1008, "rate limit: websocket_message_rate"))
        _, backend_code, backend_reason = yield self.backend.closed
        self.assertEqual(
            (backend_code, backend_reason), (1001, "proxy: client over websocket_message_rate")
        )
        (line,) = yield self.access_lines(1)
        self.assertEqual(line["close_reason"], "rate_limit")
        found = yield scrape(self.net)
        self.assertEqual(
            sample(
                found, "clbproxy_websocket_proxy_closes_total", listener="web", reason="rate_limit"
            ),
            1,
        )
        status, data = yield get_json(self.net, "/api/status")
        self.assertEqual(data["listeners"][0]["session_closes"]["rate_limit"], 1)

    @defer.inlineCallbacks
    def test_a_backend_over_its_rate_is_closed_with_1008_and_the_client_told_1011(self):
        rule = RuleConfig(
            target_group="pool", websocket_byte_rate=1000, websocket_rate_action="close"
        )
        yield self.start(rules=(rule,))
        self.backend.closed = defer.Deferred()
        client = self.net.client(self.port, "/flood?n=2")
        yield client.opened
        _, code, reason = yield client.closed
        self.assertEqual((code, reason), (1011, "backend over websocket_byte_rate"))
        _, backend_code, backend_reason = yield self.backend.closed
        self.assertEqual((backend_code, backend_reason), (1008, "rate limit: websocket_byte_rate"))


class LifetimeTests(ControlsFixture, unittest.TestCase):
    @defer.inlineCallbacks
    def test_sessions_opened_together_end_spread_over_the_lifetime_window(self):
        yield self.start(websocket_max_lifetime=2.0, websocket_lifetime_spread=0.5)
        clients = [self.net.client(self.port, "/echo") for _ in range(20)]
        yield defer.gatherResults([c.opened for c in clients])
        opened = time.monotonic()
        ends = []

        def ended(result):
            ends.append((time.monotonic() - opened, result[1], result[2]))

        for c in clients:
            c.closed.addCallback(ended)
        yield defer.gatherResults([c.closed for c in clients])
        self.assertEqual({(code, reason) for _, code, reason in ends}, {(1001, "lifetime")})
        times = sorted(t for t, _, _ in ends)
        # Drawn in [1 s, 2 s]: none before the window, and not all at one instant.
        self.assertGreater(times[0], 0.9)
        self.assertLess(times[-1], 2.5)
        self.assertGreater(times[-1] - times[0], 0.3)
        lines = yield self.access_lines(20)
        self.assertEqual({line["close_reason"] for line in lines}, {"lifetime"})


class ReliefTests(ControlsFixture, unittest.TestCase):
    @defer.inlineCallbacks
    def test_every_message_received_before_the_proxys_close_is_delivered_before_it(self):
        yield self.start()
        client = self.net.client(self.port, "/push?n=2000")
        yield client.opened
        yield client.wait_messages(1)
        (session,) = self.sessions()
        received_before = session.backend.messages_in
        session.relieve("rebalance")
        _, code, reason = yield client.closed
        self.assertEqual((code, reason), (1001, "rebalance"))
        got = [payload for payload, _ in client.messages]
        self.assertGreaterEqual(len(got), received_before)
        # In order, none missing, none cut: a prefix of what the backend sent.
        self.assertEqual(got, [f"push {i}".encode() for i in range(len(got))])


class BusySessionReliefTests(ControlsFixture, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_relieved_busy_session_delivers_in_order_then_counts_what_it_drops(self):
        ends = []

        def observe(event):
            if "closed after" in event.get("log_format", ""):
                ends.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        yield self.start()
        # The backend queues 50000 messages at once: far more than the proxy has
        # read when the client has its first one.
        client = self.net.client(self.port, "/push?n=50000")
        yield client.opened
        yield client.wait_messages(1)
        (session,) = self.sessions()
        session.relieve("rebalance")
        _, code, reason = yield client.closed
        self.assertEqual((code, reason), (1001, "rebalance"))
        yield self.access_lines(1)
        (end,) = ends
        got = [payload for payload, _ in client.messages]
        # In order, none missing, none cut: a prefix of what the backend sent.
        self.assertEqual(got, [f"push {i}".encode() for i in range(len(got))])
        self.assertGreater(end["down_dropped"], 0)
        self.assertGreater(end["down_dropped_bytes"], 0)
        # Every message the proxy received from the backend was delivered or counted.
        self.assertEqual(len(got) + end["down_dropped"], end["down"])
        self.assertEqual((end["up_dropped"], end["up_dropped_bytes"]), (0, 0))
