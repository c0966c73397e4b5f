"""Tests for :mod:`clbproxy.listener.limits`: access lists, handshake rate, admission, pausing."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import ListenerConfig, RuleConfig
from clbproxy.http.forwarded import TrustedProxies, real_client_ip
from clbproxy.listener.limits import (
    CLOSE_LOG_INTERVAL,
    PROXY_HEADER_TIMEOUT,
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
                "refused_handshake_rate": 1,
                "refused_draining": 1,
            },
        )
        # Only the WebSocket handshakes among them are handshake outcomes too.
        self.assertEqual(stats.websocket_refusals(), {403: 1, 429: 1, 503: 1})

    def test_with_no_list_drain_or_rate_nothing_is_refused(self) -> None:
        admission = Admission(listener(), task.Clock(), LimitStats())
        rule = RuleConfig(target_group="g")
        self.assertEqual(
            [
                self.check(admission, address, checked_rule, websocket=websocket)
                for address in ("10.0.0.1", "", "fd00::1")
                for checked_rule in (None, rule)
                for websocket in (False, True)
            ],
            [None] * 12,
        )

    def test_a_reload_that_adds_a_list_applies_it(self) -> None:
        admission = Admission(listener(), task.Clock(), LimitStats())
        self.assertIsNone(self.check(admission, "10.9.0.1", websocket=False))
        admission.configure(listener(deny=("10.9.0.0/16",)))
        self.assertEqual(
            self.check(admission, "10.9.0.1", websocket=False), (403, "denied_by_listener")
        )
        admission.configure(listener())
        self.assertIsNone(self.check(admission, "10.9.0.1", websocket=False))

    def test_a_rules_list_applies_on_a_listener_without_one(self) -> None:
        admission = Admission(listener(), task.Clock(), LimitStats())
        allowed = RuleConfig(target_group="g", allow=("10.0.0.0/24",))
        denied = RuleConfig(target_group="g", deny=("10.0.0.0/24",))
        self.assertEqual(
            [
                self.check(admission, "10.0.1.1", allowed, websocket=False),
                self.check(admission, "10.0.0.1", allowed, websocket=False),
                self.check(admission, "10.0.0.1", denied, websocket=True),
            ],
            [(403, "denied_by_rule"), None, (403, "denied_by_rule")],
        )

    def test_a_drain_or_a_rate_applies_to_handshakes_on_a_listener_without_lists(self) -> None:
        admission = Admission(
            listener(websocket_handshake_rate=1.0, websocket_handshake_burst=1),
            task.Clock(),
            LimitStats(),
        )
        self.assertEqual(
            [self.check(admission, websocket=True) for _ in range(2)],
            [None, (429, "refused_handshake_rate")],
        )
        self.assertIsNone(self.check(admission, websocket=False))
        admission = Admission(listener(), task.Clock(), LimitStats())
        admission.draining = True
        self.assertEqual(self.check(admission, websocket=True), (503, "refused_draining"))
        self.assertIsNone(self.check(admission, websocket=False))

    def test_the_per_address_connection_limit_is_not_a_request_refusal(self) -> None:
        admission = Admission(listener(max_connections_per_ip=1), task.Clock(), LimitStats())
        self.assertEqual(
            [self.check(admission, websocket=websocket) for websocket in (False, True, False)],
            [None, None, None],
        )

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
    """Accept a connection from ``host`` as Twisted's port does; None when the
    limiter gave no protocol for it (the port then closes the socket)."""
    address = IPv4Address("TCP", host, 40000)
    protocol = limiter.buildProtocol(address)
    if protocol is None:
        return None
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol


class ConnectionLimiterTests(unittest.TestCase):
    def limiter(self, gate=None, **options) -> ConnectionLimiter:
        limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), gate or ConnectionGate(), clock=task.Clock(), **options
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

    def test_a_connection_over_the_per_address_limit_gets_no_protocol(self) -> None:
        limiter = self.limiter(max_per_ip=2)
        held = [connect(limiter), connect(limiter)]
        self.assertIsNone(connect(limiter))
        self.assertIsNone(connect(limiter))
        self.assertNotIn(None, held)
        self.assertEqual(limiter.stats["closed_per_ip_connections"], 2)

    def test_other_addresses_and_trusted_proxies_are_not_held_to_one_addresses_limit(
        self,
    ) -> None:
        limiter = self.limiter(max_per_ip=1, trusted=TrustedProxies.from_cidrs(["10.9.0.0/16"]))
        connect(limiter)
        self.assertIsNotNone(connect(limiter, "10.0.0.2"))
        self.assertNotIn(None, [connect(limiter, "10.9.0.1") for _ in range(3)])
        self.assertIsNone(connect(limiter))

    def test_the_address_is_accepted_again_once_one_of_its_connections_ends(self) -> None:
        limiter = self.limiter(max_per_ip=1)
        first = connect(limiter)
        self.assertIsNone(connect(limiter))
        first.connectionLost(None)
        self.assertIsNotNone(connect(limiter))

    def test_a_connection_closed_at_accept_counts_against_no_limit(self) -> None:
        gate = ConnectionGate(3)
        limiter = self.limiter(gate, max_per_ip=1, max_connections=3)
        connect(limiter)
        for _ in range(10):
            connect(limiter)
        self.assertEqual((gate.count, len(limiter.protocols)), (1, 1))
        self.assertTrue(limiter.port.reading)
        self.assertIsNotNone(connect(limiter, "10.0.0.2"))

    def test_a_lower_limit_from_a_reload_applies_to_new_connections(self) -> None:
        limiter = self.limiter(max_per_ip=0)
        held = [connect(limiter) for _ in range(3)]
        limiter.configure(max_connections=0, max_per_ip=2, trusted=TrustedProxies())
        self.assertIsNotNone(connect(limiter))
        self.assertIsNotNone(connect(limiter))
        self.assertIsNone(connect(limiter))
        self.assertNotIn(None, held)

    def test_a_stopped_listener_is_never_resumed(self) -> None:
        limiter = self.limiter(max_connections=1)
        first = connect(limiter)
        port = limiter.port
        limiter.stopped()
        first.connectionLost(None)
        self.assertFalse(port.reading)


class Recorder(Protocol):
    """The listener's protocol in these tests: what it was told, and when."""

    def __init__(self) -> None:
        self.peer = None
        self.host = None
        self.received = b""
        self.lost = False

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()
        self.host = self.transport.getHost()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason=None) -> None:
        self.lost = True


def proxy_v1(source: str) -> bytes:
    return f"PROXY TCP4 {source} 10.0.0.2 5555 8443\r\n".encode()


def proxy_v2(source: tuple[int, int, int, int]) -> bytes:
    return (
        b"\r\n\r\n\x00\r\nQUIT\n"  # signature
        + b"\x21\x11\x00\x0c"  # v2 PROXY, TCP over IPv4, 12 address bytes
        + bytes(source)
        + bytes([10, 0, 0, 2])
        + (5555).to_bytes(2, "big")
        + (8443).to_bytes(2, "big")
    )


class ProxyProtocolTests(unittest.TestCase):
    """A PROXY-protocol listener (``haproxy:``): the limiter reads the header."""

    BALANCER = IPv4Address("TCP", "10.0.0.1", 40000)

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.limiter = ConnectionLimiter(
            Factory.forProtocol(Recorder),
            ConnectionGate(),
            clock=self.clock,
            max_per_ip=1,
            proxy_protocol=True,
        )
        self.limiter.listening(FakePort())

    def connect(self, *chunks: bytes):
        """A connection from the balancer that sends ``chunks``: (wrapper, transport)."""
        protocol = self.limiter.buildProtocol(self.BALANCER)
        transport = StringTransport(peerAddress=self.BALANCER)
        protocol.makeConnection(transport)
        for chunk in chunks:
            protocol.dataReceived(chunk)
        return protocol, transport

    def test_the_listener_sees_the_header_source_from_connection_made_on(self) -> None:
        protocol, transport = self.connect(proxy_v1("203.0.113.7") + b"GET / HTTP/1.1\r\n")
        listener = protocol.wrappedProtocol
        self.assertEqual(
            (listener.peer.host, listener.host.port, listener.received),
            ("203.0.113.7", 8443, b"GET / HTTP/1.1\r\n"),
        )
        self.assertFalse(transport.disconnecting)

    def test_the_listener_is_not_connected_before_the_header_is_complete(self) -> None:
        protocol, _ = self.connect(b"PROXY TCP4 203.0.")
        self.assertIsNone(protocol.wrappedProtocol.peer)
        protocol.dataReceived(b"113.7 10.0.0.2 5555 8443\r\n")
        self.assertEqual(protocol.wrappedProtocol.peer.host, "203.0.113.7")

    def test_a_header_in_pieces_of_any_size_is_read(self) -> None:
        for header in (proxy_v1("203.0.113.7"), proxy_v2((203, 0, 113, 7))):
            protocol, transport = self.connect(*(header[i : i + 1] for i in range(len(header))))
            protocol.dataReceived(b"x")
            self.assertEqual(protocol.wrappedProtocol.peer.host, "203.0.113.7", header)
            self.assertEqual(protocol.wrappedProtocol.received, b"x")
            protocol.connectionLost(None)

    def test_each_header_source_is_counted_not_the_balancer(self) -> None:
        first, _ = self.connect(proxy_v1("203.0.113.7"))
        other, other_transport = self.connect(proxy_v2((203, 0, 113, 8)))
        self.assertFalse(other_transport.disconnecting)
        self.assertEqual([c.client_ip for c in (first, other)], ["203.0.113.7", "203.0.113.8"])

    def test_a_header_without_a_source_is_counted_as_the_balancer(self) -> None:
        local = b"\r\n\r\n\x00\r\nQUIT\n" + b"\x20\x00\x00\x00"  # v2 LOCAL (health checks)
        first, _ = self.connect(local)
        _, transport = self.connect(local)
        self.assertEqual(first.wrappedProtocol.peer.host, "10.0.0.1")
        self.assertTrue(transport.disconnected)

    def test_a_header_naming_an_over_limit_address_closes_before_the_listener_sees_it(
        self,
    ) -> None:
        self.connect(proxy_v1("203.0.113.7"))
        for header in (proxy_v1("203.0.113.7"), proxy_v2((203, 0, 113, 7))):
            protocol, transport = self.connect(header + b"GET / HTTP/1.1\r\n\r\n")
            self.assertTrue(transport.disconnected)
            self.assertEqual(transport.value(), b"")
            listener = protocol.wrappedProtocol
            self.assertEqual((listener.peer, listener.received), (None, b""))
            protocol.connectionLost(None)
            self.assertFalse(listener.lost)
        self.assertEqual(self.limiter.stats["closed_per_ip_connections"], 2)

    def test_a_closed_over_limit_connection_frees_its_place(self) -> None:
        held, _ = self.connect(proxy_v1("203.0.113.7"))
        refused, _ = self.connect(proxy_v1("203.0.113.7"))
        refused.connectionLost(None)
        self.assertEqual((self.limiter.gate.count, len(self.limiter.protocols)), (1, 1))
        held.connectionLost(None)
        _, transport = self.connect(proxy_v1("203.0.113.7"))
        self.assertFalse(transport.disconnecting)

    def test_no_header_within_the_timeout_closes_the_connection(self) -> None:
        silent, silent_transport = self.connect()
        partial, partial_transport = self.connect(b"PROXY TCP4 203.0.113.7 ")
        self.clock.advance(PROXY_HEADER_TIMEOUT - 0.1)
        self.assertEqual([silent_transport.disconnected, partial_transport.disconnected], [0, 0])
        self.clock.advance(0.1)
        self.assertEqual([silent_transport.disconnected, partial_transport.disconnected], [1, 1])
        self.assertEqual(self.limiter.stats["closed_no_proxy_header"], 2)
        self.assertIsNone(silent.wrappedProtocol.peer)

    def test_a_complete_header_stops_the_timeout(self) -> None:
        _, transport = self.connect(proxy_v1("203.0.113.7"))
        self.clock.advance(PROXY_HEADER_TIMEOUT * 10)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_connection_lost_before_its_header_leaves_no_timer(self) -> None:
        protocol, _ = self.connect(b"PROXY ")
        protocol.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((self.limiter.gate.count, protocol.wrappedProtocol), (0, None))

    def test_bytes_that_cannot_be_a_header_close_the_connection(self) -> None:
        for data in (
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY " + b"9" * 200,
            b"PROXY TCP4 not-an-address 10.0.0.2 5555 80\r\n",
            b"PROXY TCP4 \x1b[31m 10.0.0.2 5555 80\r\n",
            b"PROXY TCP4 203.0.113.\xff 10.0.0.2 5555 80\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.2 port 80\r\n",
        ):
            protocol, transport = self.connect(data)
            self.assertTrue(transport.disconnected, data)
            self.assertIsNone(protocol.wrappedProtocol.peer, data)
        self.assertEqual(self.limiter.stats["closed_no_proxy_header"], 8)


class CloseLogTests(unittest.TestCase):
    """Closes a client can cause in bulk are logged once per interval, then summed up."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), ConnectionGate(), clock=self.clock, max_per_ip=1
        )
        self.limiter.listening(FakePort())

    def lines(self) -> list[str]:
        lines = [formatEvent(event) for event in self.events]
        return [line for line in lines if "max_connections_per_ip" in line]

    def test_a_flood_logs_one_line_then_one_summary_per_interval(self) -> None:
        connect(self.limiter)
        for _ in range(5):
            connect(self.limiter)
        connect(self.limiter, "10.0.0.2")
        connect(self.limiter, "10.0.0.2")
        self.assertEqual(
            self.lines(),
            [
                "10.0.0.1: connection closed, over max_connections_per_ip 1 (more such closes "
                "are counted and logged every 10 s)"
            ],
        )
        self.clock.advance(CLOSE_LOG_INTERVAL)
        self.assertEqual(
            self.lines()[1:],
            [
                "5 more connection(s) closed over max_connections_per_ip 1 in 10 s, from 2 "
                "address(es), most from 10.0.0.1 (4)"
            ],
        )

    def test_after_a_quiet_interval_the_next_close_is_logged_at_once(self) -> None:
        connect(self.limiter)
        connect(self.limiter)
        self.clock.advance(CLOSE_LOG_INTERVAL)
        self.assertEqual(len(self.lines()), 1)
        connect(self.limiter)
        self.assertEqual(len(self.lines()), 2)
        self.assertTrue(self.lines()[1].startswith("10.0.0.1: connection closed"))

    def test_a_stopped_listener_leaves_no_timer(self) -> None:
        connect(self.limiter)
        connect(self.limiter)
        self.limiter.stopped()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DescriptorBudgetTests(unittest.TestCase):
    """The global gate held to a descriptor budget (limits given, never the test run's own)."""

    def setUp(self) -> None:
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def limiter(self, gate) -> ConnectionLimiter:
        limiter = ConnectionLimiter(Factory.forProtocol(Protocol), gate, clock=task.Clock())
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
        limiter = ConnectionLimiter(Factory.forProtocol(Protocol), gate, clock=task.Clock())
        port = self.port(limiter, pending=200)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending, port.reading), (16, 184, False))
        port.accepted[0].connectionLost(None)
        self.assertTrue(port.reading)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending, port.reading), (17, 183, False))

    def test_a_listener_limit_cuts_the_batch_too(self) -> None:
        limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), ConnectionGate(), clock=task.Clock(), max_connections=5
        )
        port = self.port(limiter, pending=50)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending), (5, 45))

    def test_without_limits_the_batch_is_the_ports_own(self) -> None:
        limiter = ConnectionLimiter(
            Factory.forProtocol(Protocol), ConnectionGate(), clock=task.Clock()
        )
        port = self.port(limiter, pending=150)
        port.doRead()
        self.assertEqual((len(port.accepted), port.pending), (100, 50))


class AdmissionShortcutTests(unittest.TestCase):
    """A plain request where no address list applies is let through without consulting any;
    every other case is answered as the full check answers it."""

    def test_every_combination_answers_as_the_full_check(self) -> None:
        rules = (
            None,
            RuleConfig(target_group="g"),
            RuleConfig(target_group="g", allow=("10.0.0.0/24",)),
            RuleConfig(target_group="g", deny=("10.0.0.0/24",)),
        )
        listeners = (
            listener(),
            listener(deny=("10.0.0.0/24",)),
            listener(allow=("10.9.0.0/16",)),
            listener(websocket_handshake_rate=1.0, websocket_handshake_burst=1),
        )
        for config, draining in [(config, False) for config in listeners] + [(listener(), True)]:
            for rule in rules:
                for websocket in (False, True):
                    for address in ("10.0.0.1", "10.9.0.1", ""):
                        admission = Admission(config, task.Clock(), LimitStats())
                        admission.draining = draining
                        if config.websocket_handshake_rate:
                            admission.rate.allow(address)  # its one handshake: the next waits
                        full = admission._refusal(address, rule, websocket)
                        answer = admission.check(address, rule, websocket=websocket)
                        self.assertEqual(
                            None if answer is None else answer.counter,
                            None if full is None else full.counter,
                            (config.allow, config.deny, rule, websocket, address),
                        )

    def test_a_reload_that_adds_a_list_ends_the_shortcut(self) -> None:
        admission = Admission(listener(), task.Clock(), LimitStats())
        self.assertIsNone(admission.check("10.0.0.1", None, websocket=False))
        admission.configure(listener(deny=("10.0.0.0/24",)))
        refusal = admission.check("10.0.0.1", None, websocket=False)
        self.assertEqual(refusal.counter, "denied_by_listener")
