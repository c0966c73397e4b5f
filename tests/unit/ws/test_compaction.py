"""When a session's connections are compacted (:mod:`clbproxy.ws.compaction`)."""

from __future__ import annotations

import socket
import sys

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from clbproxy.ws.closecodes import Side
from clbproxy.ws.compaction import COMPACT_AFTER, compact_when_settled, forget_compaction
from clbproxy.ws.fastpath import CLOSED, Hop
from tests.unit.ws.test_fastpath import FakeSession


class SettledCompactionTests(unittest.TestCase):
    def setUp(self) -> None:
        if sys.implementation.name != "cpython":
            raise unittest.SkipTest("PyPy's shared attribute maps need no compacting")
        self.session = FakeSession()
        self.clock = self.session.reactor
        self.connections = []
        self.hops = []
        for side in (Side.CLIENT, Side.BACKEND):
            ours, theirs = socket.socketpair()
            self.addCleanup(ours.close)
            self.addCleanup(theirs.close)
            connection = tcp.Connection(ours, Protocol(), reactor=self.clock)
            self.connections.append(connection)
            self.hops.append(Hop(connection, self.session, side, None))

    def compacted(self) -> list[bool]:
        return [type(c) is not tcp.Connection for c in self.connections]

    def test_the_connections_of_a_session_still_open_after_a_while_are_compacted(self) -> None:
        compact_when_settled(self.clock, self.session, self.hops)
        self.clock.advance(COMPACT_AFTER - 0.01)
        self.assertEqual(self.compacted(), [False, False])
        self.clock.advance(0.01)
        self.assertEqual(self.compacted(), [True, True])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_session_that_ended_before_is_never_compacted_and_leaves_no_timer(self) -> None:
        compact_when_settled(self.clock, self.session, self.hops)
        self.clock.advance(COMPACT_AFTER / 2)
        forget_compaction(self.clock, self.session)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(COMPACT_AFTER)
        self.assertEqual(self.compacted(), [False, False])

    def test_a_hop_closed_meanwhile_is_left_alone(self) -> None:
        compact_when_settled(self.clock, self.session, self.hops)
        self.hops[1].state = CLOSED
        self.clock.advance(COMPACT_AFTER)
        self.assertEqual(self.compacted(), [True, False])
