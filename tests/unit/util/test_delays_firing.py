"""Tests for :mod:`clbproxy.util.delays`: actions that add deadlines while the queue fires.

A session's ping adds its next ping to the queue it runs from; the queue sets
its one delayed call once the due actions have run, for the soonest deadline
then, not once per action that adds one.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.util.delays import DelayQueue


class CountingClock(task.Clock):
    """A clock that counts the delayed calls set on it."""

    def __init__(self) -> None:
        super().__init__()
        self.set = 0

    def callLater(self, delay, callable, *args, **kw):
        self.set += 1
        return super().callLater(delay, callable, *args, **kw)


class RepeatingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = CountingClock()
        self.queue = DelayQueue(self.clock, 10)
        self.runs: list[tuple[str, float]] = []

    def repeat(self, key: str) -> None:
        """Run every 10 s from now, adding the next run from the run itself."""

        def run() -> None:
            self.runs.append((key, self.clock.seconds()))
            self.queue.add(key, run)

        self.queue.add(key, run)

    def test_an_action_adding_its_next_run_costs_one_delayed_call_per_firing(self) -> None:
        self.repeat("a")
        self.clock.advance(1)
        self.repeat("b")
        for _ in range(3):
            self.clock.advance(9)
            self.clock.advance(1)
        self.assertEqual(
            self.runs, [("a", 10), ("b", 11), ("a", 20), ("b", 21), ("a", 30), ("b", 31)]
        )
        self.assertEqual(self.clock.set, 7)  # the first add, then one per firing
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_actions_due_together_run_in_one_firing_and_set_one_call(self) -> None:
        for key in "abc":
            self.repeat(key)
        self.clock.advance(10)
        self.assertEqual([key for key, _ in self.runs], ["a", "b", "c"])
        self.assertEqual(self.clock.set, 2)
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [20.0])

    def test_an_action_that_raises_leaves_the_others_to_run(self) -> None:
        def fails() -> None:
            raise RuntimeError("boom")

        self.queue.add("bad", fails)
        self.repeat("good")
        self.assertRaises(RuntimeError, self.clock.advance, 10)
        self.clock.advance(0)
        self.assertEqual(self.runs, [("good", 10)])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
