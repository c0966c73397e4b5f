"""Deadlines of one fixed delay on one delayed call (:mod:`clbproxy.util.delays`)."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.util.delays import DelayQueue, delay_queue


class DelayQueueTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.queue = DelayQueue(self.clock, 5.0)
        self.ran: list[str] = []

    def add(self, key: str) -> None:
        self.queue.add(key, lambda: self.ran.append(key))

    def test_each_action_runs_when_its_own_delay_is_over(self) -> None:
        self.add("a")
        self.clock.advance(2)
        self.add("b")
        self.clock.advance(2.9)
        self.assertEqual(self.ran, [])
        self.clock.advance(0.1)
        self.assertEqual(self.ran, ["a"])
        self.clock.advance(1.9)
        self.assertEqual(self.ran, ["a"])
        self.clock.advance(0.1)
        self.assertEqual(self.ran, ["a", "b"])

    def test_the_whole_queue_waits_on_one_delayed_call(self) -> None:
        for key in "abcdef":
            self.add(key)
            self.clock.advance(0.5)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_a_discarded_key_never_runs_and_an_empty_queue_leaves_no_call(self) -> None:
        self.add("a")
        self.add("b")
        self.queue.discard("a")
        self.queue.discard("b")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.ran, [])

    def test_adding_a_key_again_moves_its_deadline(self) -> None:
        self.add("a")
        self.clock.advance(3)
        self.add("a")
        self.clock.advance(4)
        self.assertEqual(self.ran, [])
        self.clock.advance(1)
        self.assertEqual(self.ran, ["a"])

    def test_an_action_may_add_and_discard_deadlines_of_the_same_queue(self) -> None:
        self.queue.add("a", lambda: (self.ran.append("a"), self.add("c"), self.queue.discard("b")))
        self.clock.advance(1)
        self.add("b")
        self.clock.advance(4)
        self.assertEqual(self.ran, ["a"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(5)
        self.assertEqual(self.ran, ["a", "c"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_reactor_has_one_queue_per_delay(self) -> None:
        self.assertIs(delay_queue(self.clock, 1.0), delay_queue(self.clock, 1.0))
        self.assertIsNot(delay_queue(self.clock, 1.0), delay_queue(self.clock, 2.0))
        self.assertIsNot(delay_queue(self.clock, 1.0), delay_queue(task.Clock(), 1.0))

    def test_an_action_that_raises_does_not_keep_the_others_from_running(self) -> None:
        def fails() -> None:
            raise RuntimeError("boom")

        self.queue.add("bad", fails)
        self.add("good")
        with self.assertRaises(RuntimeError):
            self.clock.advance(5)
        self.clock.advance(0)
        self.assertEqual(self.ran, ["good"])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DelayQueueCallTests(unittest.TestCase):
    """The queue cancels only a call still pending: one that fired is never cancelled."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.queue = DelayQueue(self.clock, 5.0)

    def test_emptying_the_queue_after_its_call_fired_cancels_only_the_new_call(self) -> None:
        self.queue.add("a", lambda: None)
        self.clock.advance(5)
        self.queue.add("b", lambda: None)
        self.queue.discard("b")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_an_action_emptying_the_queue_while_it_fires_leaves_no_call(self) -> None:
        self.queue.add("a", lambda: self.queue.discard("b"))
        self.clock.advance(1)
        self.queue.add("b", lambda: None)
        self.clock.advance(4)
        self.assertEqual((len(self.queue), self.clock.getDelayedCalls()), (0, []))
        self.queue.discard("b")  # gone already: nothing to cancel
        self.queue.add("c", lambda: None)
        self.queue.discard("c")
        self.assertEqual(self.clock.getDelayedCalls(), [])
