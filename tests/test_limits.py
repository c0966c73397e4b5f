"""Tests for :mod:`clbproxy.limits`: access lists, handshake rate, admission, accept pausing."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.haproxy import proxyEndpoint
from twisted.trial import unittest

from clbproxy.config import ListenerConfig, RuleConfig
from clbproxy.forwarding import TrustedProxies, real_client_ip
from clbproxy.limits import (
    AccessList,
    Admission,
    ConnectionGate,
    ConnectionLimiter,
    HandshakeRate,
    LimitStats,
)


class AccessListTests(unittest.TestCase):
    def test_table(self) -> None:
        cases = [
            ((), (), "203.0.113.9", True),
            (("10.0.0.0/8",), (), "10.1.2.3", True),
            (("10.0.0.0/8",), (), "11.1.2.3", False),
            (("10.0.0.0/8",), ("10.9.0.0/16",), "10.9.1.1", False),
            ((), ("10.9.0.0/16",), "10.8.1.1", True),
            ((), ("10.9.0.0/16",), "::ffff:10.9.1.1", False),
            (("fd00::/8",), (), "fd00::1", True),
            (("fd00::/8",), (), "10.0.0.1", False),
            (("10.0.0.0/8",), (), "", False),
            ((), ("10.0.0.0/8",), "", True),
        ]
        for allow, deny, address, expected in cases:
            self.assertEqual(
                AccessList.from_cidrs(allow, deny).permits(address),
                expected,
                (allow, deny, address),
            )


class HandshakeRateTests(unittest.TestCase):
    def test_burst_then_rate_per_address(self) -> None:
        clock = task.Clock()
        rate = HandshakeRate(clock, rate=2.0, burst=3)
        self.assertEqual([rate.allow("a") for _ in range(4)], [True, True, True, False])
        self.assertTrue(rate.allow("b"))
        clock.advance(0.5)
        self.assertEqual([rate.allow("a"), rate.allow("a")], [True, False])

    def test_memory_is_bounded(self) -> None:
        clock = task.Clock()
        rate = HandshakeRate(clock, rate=1.0, burst=1, max_tracked=10)
        for index in range(100):
            rate.allow(f"10.0.0.{index}")
        self.assertLessEqual(len(rate._buckets), 10)


def listener(**options) -> ListenerConfig:
    return ListenerConfig(name="l", bind="tcp:0", rules=(), **options)


class AdmissionTests(unittest.TestCase):
    def check(self, admission, address="10.0.0.1", rule=None, **kwargs):
        refusal = admission.check(address, rule, **kwargs)
        return None if refusal is None else (refusal.status, refusal.counter)

    def test_statuses_and_counters(self) -> None:
        stats = LimitStats()
        admission = Admission(
            listener(
                deny=("10.9.0.0/16",), websocket_handshake_rate=1.0, websocket_handshake_burst=1
            ),
            task.Clock(),
            stats,
        )
        rule = RuleConfig(target_group="g", allow=("10.0.0.0/24",))
        self.assertEqual(
            self.check(admission, "10.9.0.1", websocket=False), (403, "denied_by_listener")
        )
        self.assertEqual(
            self.check(admission, "10.0.1.1", rule, websocket=True), (403, "denied_by_rule")
        )
        self.assertEqual(
            self.check(admission, rule=rule, websocket=False, over_ip_limit=True),
            (429, "refused_per_ip_connections"),
        )
        self.assertIsNone(self.check(admission, rule=rule, websocket=True))
        self.assertEqual(
            self.check(admission, rule=rule, websocket=True), (429, "refused_handshake_rate")
        )
        self.assertIsNone(self.check(admission, rule=rule, websocket=False))
        admission.draining = True
        self.assertEqual(self.check(admission, websocket=True), (503, "refused_draining"))
        self.assertEqual(
            stats.snapshot(),
            {
                **dict.fromkeys(LimitStats.NAMES, 0),
                "denied_by_listener": 1,
                "denied_by_rule": 1,
                "refused_per_ip_connections": 1,
                "refused_handshake_rate": 1,
                "refused_draining": 1,
            },
        )
        # Only the WebSocket handshakes among them are handshake outcomes too.
        self.assertEqual(stats.websocket_refusals(), {403: 1, 429: 1, 503: 1})

    def test_real_client_comes_from_a_trusted_peers_forwarded_for(self) -> None:
        trusted = TrustedProxies.from_cidrs(["10.0.0.0/8"])
        self.assertEqual(
            real_client_ip("10.0.0.5", ["203.0.113.7, 10.0.0.9"], trusted), "203.0.113.7"
        )
        self.assertEqual(real_client_ip("198.51.100.1", ["203.0.113.7"], trusted), "198.51.100.1")


class FakePort:
    def __init__(self) -> None:
        self.reading = True
        self.connected = True
        self.disconnecting = False

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


class BatchPort(FakePort):
    """A listening port with ``pending`` connections waiting, accepting as Twisted's does:
    up to ``numberAccepts`` each time it is read, pausing or not."""

    numberAccepts = 100

    def __init__(self, limiter: ConnectionLimiter, pending: int) -> None:
        super().__init__()
        self.limiter = limiter
        self.pending = pending
        self.accepted: list = []

    def doRead(self) -> None:
        for _ in range(self.numberAccepts):
            if not self.pending:
                break
            self.pending -= 1
            self.accepted.append(connect(self.limiter))


def connect(limiter: ConnectionLimiter, host: str = "10.0.0.1"):
    address = IPv4Address("TCP", host, 40000)
    protocol = limiter.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol


class _Captured:
    """A server endpoint that only keeps the factory it is asked to listen with."""

    factory = None

    def listen(self, factory):
        self.factory = factory


def proxy_protocol_factory(wrapped):
    """``wrapped`` behind Twisted's PROXY protocol wrapper, as ``haproxy:`` endpoints use it."""
    endpoint = _Captured()
    proxyEndpoint(endpoint).listen(wrapped)
    return endpoint.factory


class ConnectionLimiterTests(unittest.TestCase):
    def limiter(self, gate=None, **options) -> ConnectionLimiter:
        limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), gate or ConnectionGate(), **options
        )
        limiter.listening(FakePort())
        return limiter

    def test_listener_limit_pauses_accepting_and_resumes_when_one_ends(self) -> None:
        limiter = self.limiter(max_connections=2)
        first = connect(limiter)
        connect(limiter)
        self.assertFalse(limiter.port.reading)
        self.assertEqual(limiter.stats["accept_paused"], 1)
        first.connectionLost(None)
        self.assertTrue(limiter.port.reading)

    def test_global_limit_pauses_every_listener(self) -> None:
        gate = ConnectionGate(2)
        one, two = self.limiter(gate), self.limiter(gate)
        first = connect(one)
        connect(two)
        self.assertEqual((one.port.reading, two.port.reading), (False, False))
        first.connectionLost(None)
        self.assertEqual((one.port.reading, two.port.reading), (True, True))

    def test_connections_over_the_per_address_limit_are_marked(self) -> None:
        limiter = self.limiter(max_per_ip=1, trusted=TrustedProxies.from_cidrs(["10.9.0.0/16"]))
        first, second = connect(limiter), connect(limiter)
        other = connect(limiter, "10.0.0.2")
        proxies = [connect(limiter, "10.9.0.1") for _ in range(3)]
        self.assertEqual(
            [c.over_ip_limit for c in (first, second, other, *proxies)],
            [False, True, False, False, False, False],
        )
        first.connectionLost(None)
        second.connectionLost(None)
        self.assertFalse(connect(limiter).over_ip_limit)

    def test_under_proxy_protocol_the_header_source_is_counted(self) -> None:
        limiter = self.limiter(max_per_ip=1, proxy_protocol=True)
        balancer = IPv4Address("TCP", "10.0.0.1", 40000)
        proxied = proxy_protocol_factory(limiter)

        def connect_via_balancer(source: str):
            protocol = proxied.buildProtocol(balancer)
            protocol.makeConnection(StringTransport(peerAddress=balancer))
            protocol.dataReceived(f"PROXY TCP4 {source} 10.0.0.2 5555 80\r\nGET".encode())
            return protocol.wrappedProtocol

        first, other, again = (
            connect_via_balancer(source) for source in ("203.0.113.7", "203.0.113.8", "203.0.113.7")
        )
        self.assertEqual(
            [(c.client_ip, c.over_ip_limit) for c in (first, other, again)],
            [("203.0.113.7", False), ("203.0.113.8", False), ("203.0.113.7", True)],
        )
        first.connectionLost(None)
        again.connectionLost(None)
        self.assertFalse(connect_via_balancer("203.0.113.7").over_ip_limit)

    def test_a_stopped_listener_is_never_resumed(self) -> None:
        limiter = self.limiter(max_connections=1)
        first = connect(limiter)
        port = limiter.port
        limiter.stopped()
        first.connectionLost(None)
        self.assertFalse(port.reading)


class DescriptorBudgetTests(unittest.TestCase):
    """The global gate held to a descriptor budget (limits given, never the test run's own)."""

    def setUp(self) -> None:
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def limiter(self, gate) -> ConnectionLimiter:
        limiter = ConnectionLimiter(Factory.forProtocol(Protocol), gate)
        limiter.listening(FakePort())
        return limiter

    def messages(self) -> list[str]:
        return [
            formatEvent(event) for event in self.events if "accepting paused" in formatEvent(event)
        ]

    def test_the_budget_of_the_descriptor_limit_pauses_accepting_and_says_so(self) -> None:
        gate = ConnectionGate.for_process(0, descriptor_limit=64)
        limiter = self.limiter(gate)
        connections = [connect(limiter) for _ in range(15)]
        self.assertTrue(limiter.port.reading)
        connections.append(connect(limiter))
        self.assertFalse(limiter.port.reading)
        self.assertEqual(gate.stats["accept_paused"], 1)
        self.assertEqual(
            self.messages(),
            ["descriptor budget of 16 connections reached (RLIMIT_NOFILE 64): accepting paused"],
        )
        connections[0].connectionLost(None)
        self.assertTrue(limiter.port.reading)

    def test_a_smaller_max_connections_is_the_limit_and_its_own_message(self) -> None:
        gate = ConnectionGate.for_process(3, descriptor_limit=64)
        limiter = self.limiter(gate)
        for _ in range(3):
            connect(limiter)
        self.assertFalse(limiter.port.reading)
        self.assertEqual(self.messages(), ["global max_connections 3 reached: accepting paused"])

    def test_a_larger_max_connections_pauses_at_the_budget(self) -> None:
        gate = ConnectionGate.for_process(1000, descriptor_limit=64)
        limiter = self.limiter(gate)
        for _ in range(16):
            connect(limiter)
        self.assertFalse(limiter.port.reading)
        self.assertIn("descriptor budget of 16 connections", self.messages()[0])

    def test_a_reload_changes_max_connections_and_keeps_the_budget(self) -> None:
        gate = ConnectionGate.for_process(1000, descriptor_limit=64)
        limiter = self.limiter(gate)
        connections = [connect(limiter) for _ in range(4)]
        gate.set_limit(4)
        self.assertFalse(limiter.port.reading)
        gate.set_limit(0)
        self.assertTrue(limiter.port.reading)
        connections.extend(connect(limiter) for _ in range(12))
        self.assertFalse(limiter.port.reading)

    def test_without_a_known_limit_only_max_connections_counts(self) -> None:
        gate = ConnectionGate.for_process(0, descriptor_limit=0)
        limiter = self.limiter(gate)
        for _ in range(100):
            connect(limiter)
        self.assertTrue(limiter.port.reading)


class AcceptBatchTests(unittest.TestCase):
    """A readable port accepts a batch; the batch never exceeds what the limits allow."""

    def port(self, limiter: ConnectionLimiter, pending: int) -> BatchPort:
        port = BatchPort(limiter, pending)
        limiter.listening(port)
        return port

    def test_a_flood_is_accepted_up_to_the_global_limit_and_waits_for_the_rest(self) -> None:
        gate = ConnectionGate.for_process(0, descriptor_limit=64)
        limiter = ConnectionLimiter(Factory.forProtocol(Protocol), gate)
        port = self.port(limiter, pending=200)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending, port.reading), (16, 184, False))
        port.accepted[0].connectionLost(None)
        self.assertTrue(port.reading)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending, port.reading), (17, 183, False))

    def test_a_listener_limit_cuts_the_batch_too(self) -> None:
        limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), ConnectionGate(), max_connections=5
        )
        port = self.port(limiter, pending=50)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending), (5, 45))

    def test_without_limits_the_batch_is_the_ports_own(self) -> None:
        limiter = ConnectionLimiter(Factory.forProtocol(Protocol), ConnectionGate())
        port = self.port(limiter, pending=150)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending), (100, 50))
