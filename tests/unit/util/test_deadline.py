"""A timeout on the shared delay queues (:class:`~clbproxy.util.delays.Deadline`)."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.util.delays import Deadline, delay_queue


class DeadlineTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.ran: list[float] = []
        self.deadline = Deadline(self.clock, lambda: self.ran.append(self.clock.seconds()))

    def test_the_action_runs_when_the_delay_is_over(self) -> None:
        self.deadline.within(5)
        self.clock.advance(4.9)
        self.assertEqual(self.ran, [])
        self.clock.advance(0.1)
        self.assertEqual(self.ran, [5])

    def test_it_waits_on_the_queue_its_delay_shares_with_others(self) -> None:
        other = Deadline(self.clock, lambda: None)
        self.deadline.within(5)
        other.within(5)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(delay_queue(self.clock, 5)), 2)

    def test_a_later_deadline_leaves_the_earlier_one(self) -> None:
        self.deadline.within(5)
        self.clock.advance(1)
        self.deadline.within(10)
        self.clock.advance(4)
        self.assertEqual(self.ran, [5])

    def test_an_earlier_deadline_replaces_the_later_one(self) -> None:
        self.deadline.within(10)
        self.clock.advance(1)
        self.deadline.within(3)
        self.clock.advance(3)
        self.assertEqual(self.ran, [4])
        self.clock.advance(10)
        self.assertEqual(self.ran, [4])

    def test_waiting_the_rest_runs_the_action_again_after_it(self) -> None:
        self.deadline.within(5)
        self.clock.advance(5)
        self.deadline.wait(2.5)
        self.clock.advance(2.5)
        self.assertEqual(self.ran, [5, 7.5])

    def test_a_stopped_deadline_never_runs_and_leaves_no_call(self) -> None:
        self.deadline.within(5)
        self.deadline.stop()
        self.clock.advance(10)
        self.assertEqual(self.ran, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_stopped_wait_leaves_no_call(self) -> None:
        self.deadline.within(5)
        self.clock.advance(5)
        self.deadline.wait(3)
        self.deadline.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
