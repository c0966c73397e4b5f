"""Listeners under the global connection limit and their own, as connections come and go.

The gate asks every listener whether to pause only when its count reaches the
limit; a listener with its own ``max_connections`` watches that itself.  These
check that pausing and resuming still follow both counts exactly.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from clbproxy.listener.limits import ConnectionGate, ConnectionLimiter
from tests.unit.listener.test_limits import FakePort, connect


def listener(gate: ConnectionGate, max_connections: int = 0) -> ConnectionLimiter:
    limiter = ConnectionLimiter(
        Factory.forProtocol(Protocol), gate, clock=task.Clock(), max_connections=max_connections
    )
    limiter.listening(FakePort())
    return limiter


class GateTests(unittest.TestCase):
    def test_the_global_limit_reached_through_another_listener_pauses_every_listener(
        self,
    ) -> None:
        gate = ConnectionGate(3)
        own, other = listener(gate, max_connections=5), listener(gate)
        connect(own)
        held = [connect(other), connect(other)]
        self.assertEqual((own.port.reading, other.port.reading), (False, False))
        held[0].connectionLost(None)
        self.assertEqual((own.port.reading, other.port.reading), (True, True))

    def test_a_listener_at_its_own_limit_stays_paused_while_others_come_and_go(self) -> None:
        gate = ConnectionGate(10)
        own, other = listener(gate, max_connections=1), listener(gate)
        connect(own)
        for _ in range(3):
            connect(other).connectionLost(None)
        self.assertEqual((own.port.reading, other.port.reading), (False, True))

    def test_a_listener_paused_by_both_limits_resumes_only_when_both_allow(self) -> None:
        gate = ConnectionGate(2)
        own, other = listener(gate, max_connections=1), listener(gate)
        first = connect(own)
        second = connect(other)
        second.connectionLost(None)
        self.assertEqual((own.port.reading, other.port.reading), (False, True))
        first.connectionLost(None)
        self.assertEqual((own.port.reading, other.port.reading), (True, True))

    def test_the_gate_counts_every_connection_opened_and_closed(self) -> None:
        gate = ConnectionGate(0)
        one, two = listener(gate), listener(gate)
        held = [connect(one) for _ in range(4)] + [connect(two) for _ in range(3)]
        held[0].connectionLost(None)
        self.assertEqual(gate.count, 6)
