"""Each clock has its own delay queues, however the callers alternate between clocks."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.util.delays import delay_queue


class DelayQueueClockTests(unittest.TestCase):
    def test_going_back_to_a_clock_gives_its_own_queue_again(self) -> None:
        first, second = task.Clock(), task.Clock()
        queue = delay_queue(first, 3.0)
        other = delay_queue(second, 3.0)
        self.assertIsNot(queue, other)
        self.assertIs(delay_queue(first, 3.0), queue)
        self.assertIs(delay_queue(second, 3.0), other)

    def test_a_deadline_runs_on_the_clock_it_was_set_on_only(self) -> None:
        first, second = task.Clock(), task.Clock()
        ran: list[str] = []
        delay_queue(first, 2.0).add("a", lambda: ran.append("first"))
        delay_queue(second, 2.0).add("a", lambda: ran.append("second"))
        second.advance(2.0)
        self.assertEqual(ran, ["second"])
        first.advance(2.0)
        self.assertEqual(ran, ["second", "first"])
