"""Tests for :mod:`clbproxy.listener.streams`: HTTP/2 streams in flight counted as connections."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clbproxy.http.forwarded import TrustedProxies
from clbproxy.listener.limits import ConnectionGate, ConnectionLimiter
from tests.unit.listener.test_limits import FakePort, connect


class StreamCountingTests(unittest.TestCase):
    def limiter(self, gate=None, **options) -> ConnectionLimiter:
        limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), gate or ConnectionGate(), clock=task.Clock(), **options
        )
        limiter.listening(FakePort())
        return limiter

    def logged(self) -> list[str]:
        events: list[str] = []

        def observer(event) -> None:
            events.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    def test_a_stream_over_the_per_address_limit_is_refused_and_logged(self) -> None:
        limiter = self.limiter(max_per_ip=2)
        connection = connect(limiter)
        events = self.logged()
        self.assertEqual((connection.open_stream(), connection.open_stream()), (True, False))
        self.assertEqual(limiter.stats["refused_streams_per_ip"], 1)
        self.assertEqual(
            [e for e in events if "stream refused" in e],
            [
                "10.0.0.1: HTTP/2 stream refused, over max_connections_per_ip 2 (more such "
                "refusals are counted and logged every 10 s)"
            ],
        )

    def test_a_counted_stream_holds_a_place_of_its_address(self) -> None:
        limiter = self.limiter(max_per_ip=2)
        connection = connect(limiter)
        connection.open_stream()
        self.assertIsNone(connect(limiter))
        connection.close_stream()
        self.assertIsNotNone(connect(limiter))

    def test_other_addresses_and_trusted_proxies_are_not_held_by_a_clients_streams(self) -> None:
        limiter = self.limiter(max_per_ip=1, trusted=TrustedProxies.from_cidrs(["10.9.0.0/16"]))
        trusted = connect(limiter, "10.9.0.1")
        self.assertEqual([trusted.open_stream() for _ in range(3)], [True, True, True])
        self.assertIsNotNone(connect(limiter, "10.0.0.2"))

    def test_streams_count_against_the_listeners_max_connections(self) -> None:
        limiter = self.limiter(max_connections=3)
        connection = connect(limiter)
        self.assertEqual([connection.open_stream() for _ in range(3)], [True, True, False])
        self.assertEqual(
            (limiter.port.reading, limiter.stats["refused_streams_max_connections"]), (False, 1)
        )
        connection.close_stream()
        self.assertTrue(limiter.port.reading)

    def test_streams_count_against_the_global_gate_and_descriptor_budget(self) -> None:
        gate = ConnectionGate(descriptor_budget=2)
        limiter = self.limiter(gate)
        connection = connect(limiter)
        self.assertEqual((connection.open_stream(), gate.count), (True, 2))
        self.assertEqual((connection.open_stream(), gate.count), (False, 2))
        connection.close_stream()
        self.assertEqual(gate.count, 1)

    def test_a_connection_that_ends_gives_back_its_streams(self) -> None:
        gate = ConnectionGate()
        limiter = self.limiter(gate, max_per_ip=5)
        connection = connect(limiter)
        for _ in range(3):
            connection.open_stream()
        connection.connectionLost(None)
        connection.close_stream()  # the HTTP/2 connection's own release comes after
        self.assertEqual(
            (gate.count, limiter.count, limiter._per_ip, limiter.extra_streams), (0, 0, {}, 0)
        )
