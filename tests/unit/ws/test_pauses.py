"""Tests for :mod:`clbproxy.ws.pauses`: one owner of why a hop is not read."""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.ws.pauses import InflateBudget, PauseReason, ReadPauses

PEER = PauseReason.PEER_BACKPRESSURE
OWN = PauseReason.OWN_WRITE_BUFFER
INFLATE = PauseReason.INFLATE


class FlowRecorder:
    """Records what a hop's pause owner tells its listener (the session's timers)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def throttled(self) -> None:
        self.events.append("throttled")

    def flowing(self) -> None:
        self.events.append("flowing")


def pauses() -> tuple[ReadPauses, StringTransport, FlowRecorder]:
    transport, listener = StringTransport(), FlowRecorder()
    return ReadPauses(transport, listener), transport, listener


class ReadPausesTests(unittest.TestCase):
    def test_the_first_reason_pauses_reading_and_the_listener_hears_it(self) -> None:
        owner, transport, listener = pauses()
        owner.add(PEER)
        self.assertEqual((transport.producerState, listener.events), ("paused", ["throttled"]))
        self.assertTrue(owner.holds(PEER))

    def test_reading_resumes_only_when_no_reason_holds(self) -> None:
        owner, transport, listener = pauses()
        owner.add(PEER)
        owner.add(OWN)
        owner.add(INFLATE)
        owner.remove(PEER)
        owner.remove(INFLATE)
        self.assertEqual(transport.producerState, "paused")
        owner.remove(OWN)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(listener.events, ["throttled", "flowing"])

    def test_a_reason_added_twice_is_removed_once(self) -> None:
        owner, transport, listener = pauses()
        owner.add(OWN)
        owner.add(OWN)
        owner.remove(OWN)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(listener.events, ["throttled", "flowing"])

    def test_removing_a_reason_that_does_not_hold_does_nothing(self) -> None:
        owner, transport, listener = pauses()
        owner.add(PEER)
        owner.remove(OWN)
        self.assertEqual((transport.producerState, listener.events), ("paused", ["throttled"]))

    def test_release_reads_the_hop_whatever_held_it(self) -> None:
        owner, transport, listener = pauses()
        owner.add(PEER)
        owner.add(INFLATE)
        owner.release()
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(owner.holds(PEER | OWN | INFLATE))
        self.assertEqual(listener.events, ["throttled", "flowing"])

    def test_without_a_listener_only_the_transport_is_paused(self) -> None:
        transport = StringTransport()
        owner = ReadPauses(transport)
        owner.add(INFLATE)
        owner.remove(INFLATE)
        self.assertEqual(transport.producerState, "producing")


class InflateBudgetTests(unittest.TestCase):
    def test_one_seconds_worth_is_free_then_the_debt_says_how_long_to_wait(self) -> None:
        clock = task.Clock()
        budget = InflateBudget(clock, 1000)
        self.assertEqual(budget.spend(1000), 0.0)
        self.assertEqual(budget.spend(500), 0.5)

    def test_the_allowance_refills_at_the_rate_up_to_one_seconds_worth(self) -> None:
        clock = task.Clock()
        budget = InflateBudget(clock, 1000)
        budget.spend(1500)
        clock.advance(0.5)
        self.assertEqual(budget.spend(0), 0.0)
        clock.advance(100)
        self.assertEqual(budget.spend(2000), 1.0)
