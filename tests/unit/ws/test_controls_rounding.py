"""A debt left by rounding, smaller than the clock can tell apart, does not keep a hop paused.

A throttled hop is read again when its buckets' debt is paid back; the wait is
worked out in floating point, so a debt paid back exactly may leave a remainder
of a few 1e-14 tokens, whose wait added to the clock's time leaves it the same.
Scheduling that wait brought the same call back at once, for ever (a reactor
spinning; a fake clock never returning).
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.ws.controls import PauseReason
from tests.unit.ws.test_controls import limiter


class RoundingTests(unittest.TestCase):
    def test_a_debt_below_the_clocks_resolution_lets_the_hop_be_read(self):
        clock = task.Clock()
        clock.advance(30.4)
        rate, transport, owner = limiter(clock, messages=(10.0, 5))
        rate.pauses.add(PauseReason.RATE)
        bucket = rate.messages
        # What a refill at the due time left in a session the property tests found.
        bucket.tokens, bucket.at = -1.4210854715202004e-14, clock.seconds()
        rate._refilled()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_real_debt_still_waits(self):
        clock = task.Clock()
        clock.advance(30.4)
        rate, transport, owner = limiter(clock, messages=(10.0, 5))
        rate.pauses.add(PauseReason.RATE)
        bucket = rate.messages
        bucket.tokens, bucket.at = -0.5, clock.seconds()
        rate._refilled()
        self.assertEqual(transport.producerState, "paused")
        (call,) = clock.getDelayedCalls()
        self.assertAlmostEqual(call.getTime() - clock.seconds(), 0.05)
        clock.advance(0.05)
        self.assertEqual(transport.producerState, "producing")
