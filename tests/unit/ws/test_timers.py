"""Tests for :mod:`clbproxy.ws.timers`: idle timeout and proxy pings on ``task.Clock``."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.ws.closecodes import Side
from clbproxy.ws.timers import IdleQueue, SessionTimers


class Recorder:
    """A session as its timers see it: what they asked it to do."""

    def __init__(self) -> None:
        self.pings: list[tuple[Side, bytes]] = []
        self.idle = 0
        self.dead: list[Side] = []

    def timer_ping(self, side: Side, payload: bytes) -> None:
        self.pings.append((side, payload))

    def timer_idle(self) -> None:
        self.idle += 1

    def timer_dead(self, side: Side) -> None:
        self.dead.append(side)


def timers(clock, recorder, idle=60.0, interval=0.0, timeout=10.0, queue=None) -> SessionTimers:
    result = SessionTimers(
        clock,
        idle_timeout=idle,
        ping_interval=interval,
        ping_timeout=timeout,
        owner=recorder,
        idle_queue=queue,
    )
    result.start()
    return result


class IdleTests(unittest.TestCase):
    def test_session_without_frames_is_idle_after_exactly_the_timeout(self) -> None:
        clock, seen = task.Clock(), Recorder()
        timers(clock, seen, idle=60)
        clock.advance(59.9)
        self.assertEqual(seen.idle, 0)
        clock.advance(0.1)
        self.assertEqual(seen.idle, 1)

    def test_a_frame_restarts_the_idle_timeout(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=60)
        clock.advance(50)
        session.activity()
        clock.advance(59)
        self.assertEqual(seen.idle, 0)
        clock.advance(1)
        self.assertEqual(seen.idle, 1)

    def test_stopped_timers_never_fire(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=60, interval=5)
        session.stop()
        clock.advance(1000)
        self.assertEqual((seen.idle, seen.pings, seen.dead), (0, [], []))
        self.assertEqual(clock.getDelayedCalls(), [])


class SharedIdleQueueTests(unittest.TestCase):
    """Sessions sharing one :class:`IdleQueue` idle out exactly as with timers of their own."""

    def test_each_session_is_idle_exactly_its_timeout_after_its_last_frame(self) -> None:
        clock = task.Clock()
        queue = IdleQueue(clock, 60)
        first, second, third = Recorder(), Recorder(), Recorder()
        a = timers(clock, first, idle=60, queue=queue)
        clock.advance(10)
        timers(clock, second, idle=60, queue=queue)
        clock.advance(10)
        c = timers(clock, third, idle=60, queue=queue)
        clock.advance(25)
        a.activity()  # a: quiet from 45 s, idle at 105 s
        clock.advance(10)
        c.activity()  # c: quiet from 55 s, idle at 115 s
        clock.advance(14.9)  # 69.9 s
        self.assertEqual((first.idle, second.idle, third.idle), (0, 0, 0))
        clock.advance(0.1)  # 70 s: b's timeout
        self.assertEqual((first.idle, second.idle, third.idle), (0, 1, 0))
        clock.advance(34.9)  # 104.9 s
        self.assertEqual((first.idle, third.idle), (0, 0))
        clock.advance(0.1)
        self.assertEqual((first.idle, third.idle), (1, 0))
        clock.advance(10)
        self.assertEqual((first.idle, second.idle, third.idle), (1, 1, 1))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_one_delayed_call_serves_all_sessions(self) -> None:
        clock = task.Clock()
        queue = IdleQueue(clock, 60)
        for _ in range(100):
            timers(clock, Recorder(), idle=60, queue=queue)
            clock.advance(0.1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_sessions_that_stop_leave_the_queue_and_the_last_one_cancels_its_call(self) -> None:
        clock = task.Clock()
        queue = IdleQueue(clock, 60)
        seen = [Recorder(), Recorder()]
        sessions = [timers(clock, recorder, idle=60, queue=queue) for recorder in seen]
        sessions[0].stop()
        self.assertEqual(len(queue.sessions), 1)
        sessions[1].stop()
        self.assertEqual((queue.sessions, clock.getDelayedCalls()), ({}, []))
        clock.advance(100)
        self.assertEqual([recorder.idle for recorder in seen], [0, 0])

    def test_a_session_stopped_by_another_ones_idle_close_is_not_closed_again(self) -> None:
        clock = task.Clock()
        queue = IdleQueue(clock, 60)
        stopped = []

        class ClosesTheOther(Recorder):
            def timer_idle(self) -> None:
                super().timer_idle()
                stopped[0].stop()

        first, second = ClosesTheOther(), Recorder()
        timers(clock, first, idle=60, queue=queue)
        stopped.append(timers(clock, second, idle=60, queue=queue))
        clock.advance(60)
        self.assertEqual((first.idle, second.idle), (1, 0))
        self.assertEqual(clock.getDelayedCalls(), [])


class PingTests(unittest.TestCase):
    def test_both_hops_are_pinged_every_interval(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, interval=20, timeout=5)
        clock.advance(20)
        self.assertEqual([side for side, _ in seen.pings], [Side.CLIENT, Side.BACKEND])
        for side, payload in seen.pings:
            session.pong(side, payload)
        clock.advance(20)
        self.assertEqual(len(seen.pings), 4)

    def test_unanswered_ping_declares_that_hop_dead_at_the_deadline(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, interval=20, timeout=5)
        clock.advance(20)
        session.pong(*seen.pings[0])
        clock.advance(4.9)
        self.assertEqual(seen.dead, [])
        clock.advance(0.1)
        self.assertEqual(seen.dead, [Side.BACKEND])

    def test_a_pong_with_another_payload_does_not_answer_the_ping(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, interval=20, timeout=5)
        clock.advance(20)
        session.pong(Side.CLIENT, b"not ours")
        session.pong(*seen.pings[1])
        clock.advance(5)
        self.assertEqual(seen.dead, [Side.CLIENT])

    def test_answered_pings_keep_an_otherwise_silent_session_alive(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=60, interval=20, timeout=5)
        for _ in range(30):
            clock.advance(20)
            for side, payload in seen.pings[-2:]:
                session.pong(side, payload)
        self.assertEqual((seen.idle, seen.dead), (0, []))

    def test_throttled_session_suspends_the_ping_deadline_and_restarts_it_in_full(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=3600, interval=20, timeout=5)
        clock.advance(20)
        session.throttled()
        clock.advance(30)
        self.assertEqual(seen.dead, [])
        session.flowing()
        clock.advance(4.9)
        self.assertEqual(seen.dead, [])
        clock.advance(0.1)
        self.assertEqual(seen.dead, [Side.CLIENT])

    def test_ping_deadlines_stay_suspended_until_no_hop_is_paused(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=3600, interval=20, timeout=5)
        clock.advance(20)
        session.throttled()  # one hop paused
        session.throttled()  # the other too
        session.flowing()  # the first is read again
        clock.advance(30)
        self.assertEqual(seen.dead, [])
        session.flowing()
        clock.advance(5)
        self.assertEqual(seen.dead, [Side.CLIENT])

    def test_no_second_ping_while_one_is_outstanding(self) -> None:
        clock, seen = task.Clock(), Recorder()
        session = timers(clock, seen, idle=3600, interval=20, timeout=50)
        clock.advance(20)
        session.pong(*seen.pings[0])
        clock.advance(20)
        self.assertEqual([side for side, _ in seen.pings], [Side.CLIENT, Side.BACKEND, Side.CLIENT])


class IdleQueueCallTests(unittest.TestCase):
    """The idle queue cancels only a call still pending: one that fired is never cancelled."""

    def test_the_last_session_leaving_after_a_firing_cancels_the_call_set_then(self) -> None:
        clock = task.Clock()
        queue = IdleQueue(clock, 60)
        session = timers(clock, Recorder(), idle=60, queue=queue)
        clock.advance(30)
        session.activity()
        clock.advance(30)  # fires, finds the session active, waits again
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        session.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_session_after_all_idled_out_leaves_no_call_when_it_stops(self) -> None:
        clock = task.Clock()
        queue = IdleQueue(clock, 60)
        timers(clock, Recorder(), idle=60, queue=queue)
        clock.advance(60)
        self.assertEqual(clock.getDelayedCalls(), [])
        timers(clock, Recorder(), idle=60, queue=queue).stop()
        self.assertEqual(clock.getDelayedCalls(), [])
