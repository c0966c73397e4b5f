"""Tests for :mod:`clbproxy.ws.timers`: pings and pong deadlines on shared delay queues.

Every session's next ping waits in one queue per ping interval and every pong
deadline in one queue per ping timeout, so the reactor holds one delayed call
per queue, not three per session; each ping and deadline still comes exactly
when a delayed call of its own would have.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.ws.closecodes import Side
from clbproxy.ws.timers import IdleQueue
from tests.unit.ws.test_timers import Recorder, timers


def answer(session, recorder: Recorder) -> None:
    """The session's hops answer every ping sent so far."""
    for side, payload in recorder.pings:
        session.pong(side, payload)


class SharedPingTests(unittest.TestCase):
    def test_sessions_opened_apart_are_each_pinged_exactly_their_interval_after_opening(
        self,
    ) -> None:
        clock = task.Clock()
        first, second = Recorder(), Recorder()
        timers(clock, first, idle=3600, interval=20)
        clock.advance(7)
        timers(clock, second, idle=3600, interval=20)
        clock.advance(12.9)  # 19.9 s
        self.assertEqual((first.pings, second.pings), ([], []))
        clock.advance(0.1)  # 20 s: the first's ping
        self.assertEqual((len(first.pings), len(second.pings)), (2, 0))
        clock.advance(6.9)  # 26.9 s
        self.assertEqual(len(second.pings), 0)
        clock.advance(0.1)  # 27 s: the second's
        self.assertEqual((len(first.pings), len(second.pings)), (2, 2))

    def test_a_missing_pong_drops_its_hop_exactly_at_the_deadline_among_answered_ones(
        self,
    ) -> None:
        clock = task.Clock()
        answered, silent = Recorder(), Recorder()
        a = timers(clock, answered, idle=3600, interval=20, timeout=5)
        clock.advance(1)
        b = timers(clock, silent, idle=3600, interval=20, timeout=5)
        clock.advance(19)  # 20 s: a pinged
        answer(a, answered)
        clock.advance(1)  # 21 s: b pinged
        b.pong(*silent.pings[0])  # its client answers, its backend does not
        clock.advance(4.9)  # 25.9 s
        self.assertEqual((answered.dead, silent.dead), ([], []))
        clock.advance(0.1)  # 26 s: b's deadline
        self.assertEqual((answered.dead, silent.dead), ([], [Side.BACKEND]))

    def test_an_answered_ping_never_drops_its_hop(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=3600, interval=20, timeout=5)
        clock.advance(20)
        for _ in range(15):
            clock.advance(4.9)
            answer(session, seen)
            clock.advance(15.1)
        self.assertEqual(seen.dead, [])
        self.assertEqual(len(seen.pings), 2 * 16)

    def test_a_pong_leaves_only_the_next_ping_on_the_reactor(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=0, interval=20, timeout=5)
        clock.advance(20)
        answer(session, seen)
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [40.0])

    def test_a_hop_dropped_for_its_missing_pong_stops_the_other_hops_deadline(self) -> None:
        clock, seen = task.Clock(), Recorder()
        timers(clock, seen, idle=0, interval=20, timeout=5)
        clock.advance(20)
        clock.advance(5)
        self.assertEqual(seen.dead, [Side.CLIENT])
        clock.advance(100)
        self.assertEqual((seen.dead, len(seen.pings)), ([Side.CLIENT], 2))
        self.assertEqual(clock.getDelayedCalls(), [])


class OneTimerTests(unittest.TestCase):
    """Many sessions' pings, deadlines and idle timeouts: one delayed call per queue."""

    def test_a_thousand_pinged_sessions_hold_three_delayed_calls(self) -> None:
        clock = task.Clock()
        idle = IdleQueue(clock, 60)
        sessions = []
        for _ in range(1000):
            seen = Recorder()
            sessions.append(
                (timers(clock, seen, idle=60, interval=20, timeout=5, queue=idle), seen)
            )
            clock.advance(0.01)
        clock.advance(12)  # 22 s: the first half pinged, deadlines outstanding
        self.assertEqual(len(clock.getDelayedCalls()), 3)
        for session, seen in sessions:
            answer(session, seen)
        clock.advance(10)  # all pinged and answered, the idle timeouts restarted
        for session, seen in sessions:
            answer(session, seen)
        self.assertEqual(len(clock.getDelayedCalls()), 2)  # the next pings and the idle one
        self.assertEqual(sum(len(seen.dead) for _, seen in sessions), 0)

    def test_the_queues_let_go_of_stopped_sessions(self) -> None:
        clock = task.Clock()
        sessions = [timers(clock, Recorder(), idle=0, interval=20, timeout=5) for _ in range(50)]
        clock.advance(20)  # pinged: deadlines outstanding
        for session in sessions:
            session.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
