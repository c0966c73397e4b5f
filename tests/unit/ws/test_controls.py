"""Tests for :mod:`clbproxy.ws.controls`: token buckets, rate limiters, lifetimes (fake clock)."""

from __future__ import annotations

import random

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.ws.closecodes import Side
from clbproxy.ws.controls import (
    BYTE_RATE,
    MESSAGE_RATE,
    LifetimeQueue,
    RateLimiter,
    TokenBucket,
    arm_controls,
)
from clbproxy.ws.pauses import ReadPauses


class TokenBucketTests(unittest.TestCase):
    def test_a_full_bucket_takes_its_burst_at_once(self):
        bucket = TokenBucket(task.Clock(), rate=10, burst=50)
        self.assertEqual(bucket.take(50), 0.0)

    def test_past_the_burst_it_says_how_long_until_the_debt_is_paid(self):
        bucket = TokenBucket(task.Clock(), rate=10, burst=50)
        self.assertEqual(bucket.take(70), 2.0)

    def test_tokens_come_back_at_the_rate(self):
        clock = task.Clock()
        bucket = TokenBucket(clock, rate=10, burst=50)
        bucket.take(50)
        clock.advance(1)
        self.assertEqual(bucket.take(10), 0.0)
        self.assertEqual(bucket.take(1), 0.1)

    def test_tokens_never_pile_up_past_the_burst(self):
        clock = task.Clock()
        bucket = TokenBucket(clock, rate=10, burst=50)
        clock.advance(3600)
        self.assertEqual(bucket.take(60), 1.0)

    def test_a_burst_of_zero_is_one_seconds_worth(self):
        bucket = TokenBucket(task.Clock(), rate=100, burst=0)
        self.assertEqual((bucket.take(100), bucket.take(10)), (0.0, 0.1))

    def test_a_slow_rate_still_lets_one_message_through(self):
        bucket = TokenBucket(task.Clock(), rate=0.5)
        self.assertEqual(bucket.take(1), 0.0)


class Owner:
    def __init__(self):
        self.exceeded = []
        self.relieved = []

    def rate_exceeded(self, side, limit):
        self.exceeded.append((side, limit))

    def relieve(self, reason):
        self.relieved.append(reason)


def limiter(clock, *, messages=None, octets=None, close=False, counted=None):
    transport = StringTransport()
    owner = Owner()
    limiter = RateLimiter(
        clock,
        Side.CLIENT,
        ReadPauses(transport),
        owner,
        messages=TokenBucket(clock, *messages) if messages else None,
        octets=TokenBucket(clock, *octets) if octets else None,
        close=close,
        count=(counted.append if counted is not None else lambda name: None),
    )
    return limiter, transport, owner


class ThrottleTests(unittest.TestCase):
    def test_a_hop_within_its_rate_is_read_on(self):
        clock = task.Clock()
        rate, transport, _ = limiter(clock, messages=(10, 10))
        rate.received(100, 10)
        self.assertEqual(transport.producerState, "producing")

    def test_a_hop_over_its_message_rate_is_not_read_until_the_debt_is_paid(self):
        clock = task.Clock()
        counted = []
        rate, transport, _ = limiter(clock, messages=(10, 10), counted=counted)
        rate.received(100, 30)
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(counted, ["websocket_rate_throttles"])
        clock.advance(1.9)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0.1)
        self.assertEqual(transport.producerState, "producing")

    def test_a_hop_over_its_byte_rate_is_throttled(self):
        clock = task.Clock()
        rate, transport, _ = limiter(clock, octets=(1000, 1000))
        rate.received(3000, 0)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(2)
        self.assertEqual(transport.producerState, "producing")

    def test_messages_are_counted_once_each(self):
        clock = task.Clock()
        rate, transport, _ = limiter(clock, messages=(10, 10))
        for total in (5, 10, 10, 10):
            rate.received(10, total)
        self.assertEqual(transport.producerState, "producing")

    def test_what_was_read_while_paused_is_waited_for_too(self):
        clock = task.Clock()
        rate, transport, _ = limiter(clock, messages=(10, 10))
        rate.received(10, 20)  # one second owed
        rate.received(10, 30)  # buffered data read meanwhile: another second
        clock.advance(1)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(1)
        self.assertEqual(transport.producerState, "producing")

    def test_a_stopped_limiter_lets_the_hop_be_read_and_charges_nothing(self):
        clock = task.Clock()
        rate, transport, _ = limiter(clock, messages=(10, 10))
        rate.received(10, 30)
        rate.stop()
        self.assertEqual(transport.producerState, "producing")
        rate.received(10, 1000)
        self.assertEqual((transport.producerState, clock.getDelayedCalls()), ("producing", []))


class CloseActionTests(unittest.TestCase):
    def test_a_hop_over_its_message_rate_is_reported_once_with_the_limit(self):
        clock = task.Clock()
        rate, transport, owner = limiter(clock, messages=(10, 10), close=True)
        rate.received(10, 11)
        rate.received(10, 50)
        self.assertEqual(owner.exceeded, [(Side.CLIENT, MESSAGE_RATE)])
        self.assertEqual(transport.producerState, "producing")

    def test_the_byte_rate_is_named_when_it_is_the_one_passed(self):
        clock = task.Clock()
        rate, _, owner = limiter(clock, messages=(10, 10), octets=(100, 100), close=True)
        rate.received(1000, 1)
        self.assertEqual(owner.exceeded, [(Side.CLIENT, BYTE_RATE)])


class LifetimeQueueTests(unittest.TestCase):
    def test_each_session_ends_within_its_window(self):
        clock = task.Clock()
        queue = LifetimeQueue(clock, random.Random(7).uniform)
        owners = [Owner() for _ in range(200)]
        for owner in owners:
            queue.add(owner, 100.0, 0.2)
        clock.advance(79.99)
        self.assertEqual(sum(len(o.relieved) for o in owners), 0)
        ended = []
        while clock.seconds() < 100:
            clock.advance(1)
            ended.append(sum(len(o.relieved) for o in owners))
        self.assertEqual(ended[-1], 200)
        self.assertTrue(all(o.relieved == ["lifetime"] for o in owners))
        # Spread over the window: no second ends more than a fifth of them.
        steps = [b - a for a, b in zip([0, *ended], ended)]
        self.assertLess(max(steps), 40)

    def test_the_lifetime_is_drawn_between_max_times_one_minus_spread_and_max(self):
        draws = []

        def uniform(low, high):
            draws.append((low, high))
            return high

        queue = LifetimeQueue(task.Clock(), uniform)
        queue.add(Owner(), 3600.0, 0.1)
        self.assertEqual(draws, [(3240.0, 3600.0)])

    def test_all_sessions_share_one_delayed_call(self):
        clock = task.Clock()
        queue = LifetimeQueue(clock)
        for _ in range(1000):
            queue.add(Owner(), 60.0, 0.5)
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_a_session_removed_is_not_relieved_nor_kept(self):
        clock = task.Clock()
        queue = LifetimeQueue(clock)
        owner = Owner()
        entry = queue.add(owner, 10.0, 0.0)
        queue.remove(entry)
        self.assertEqual((len(queue), clock.getDelayedCalls()), (0, []))
        clock.advance(20)
        self.assertEqual(owner.relieved, [])

    def test_an_earlier_deadline_moves_the_call_forward(self):
        clock = task.Clock()
        queue = LifetimeQueue(clock, lambda low, high: high)
        late, early = Owner(), Owner()
        queue.add(late, 100.0, 0.0)
        queue.add(early, 10.0, 0.0)
        clock.advance(10)
        self.assertEqual((early.relieved, late.relieved), (["lifetime"], []))
        clock.advance(90)
        self.assertEqual(late.relieved, ["lifetime"])


class Hop:
    def __init__(self):
        self.pauses = ReadPauses(StringTransport())
        self.messages_in = 3
        self.limiter = None


class ArmTests(unittest.TestCase):
    def arm(self, limits, tunnel=False, lifetime=(0.0, 0.1)):
        hops = (Hop(), Hop())
        controls = arm_controls(
            task.Clock(),
            Owner(),
            hops,
            limits=limits,
            tunnel=tunnel,
            lifetime=lifetime,
            lifetimes=LifetimeQueue(task.Clock()),
            count=lambda name: None,
        )
        return controls, hops

    def test_a_session_without_limits_or_lifetime_gets_nothing(self):
        controls, hops = self.arm((0.0, 0, 0, 0, "throttle"))
        self.assertEqual((controls, hops[0].limiter, hops[1].limiter), (None, None, None))

    def test_each_hop_gets_a_limiter_of_its_own(self):
        controls, (front, back) = self.arm((5.0, 0, 0, 0, "throttle"))
        self.assertEqual((front.limiter.side, back.limiter.side), (Side.CLIENT, Side.BACKEND))
        self.assertIs(front.limiter.pauses, front.pauses)

    def test_a_tunnel_has_no_message_rate(self):
        controls, hops = self.arm((5.0, 0, 0, 0, "throttle"), tunnel=True)
        self.assertIsNone(controls)
        controls, (front, _) = self.arm((5.0, 0, 100, 0, "throttle"), tunnel=True)
        self.assertEqual((front.limiter.messages, front.limiter.octets.rate), (None, 100.0))

    def test_a_lifetime_alone_arms_no_limiter(self):
        controls, (front, _) = self.arm((0.0, 0, 0, 0, "throttle"), lifetime=(60.0, 0.1))
        self.assertIsNotNone(controls)
        self.assertIsNone(front.limiter)
