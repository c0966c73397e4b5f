"""Calm reads (:class:`clbproxy.ws.controls.RateLimiter`) change no decision: a fake-clock spec.

A read of a session under its limits is only recorded; the buckets catch up
when a read is not calm.  These tests hold the limiter to the plain token
buckets it replaced (``Reference`` below, the previous implementation, kept as
the specification): the same read is throttled or closed, with the same wait,
whatever mix of idle time, trickle, burst and flood comes before it; and
never more than ``burst + rate * t`` (plus the read that passes the limit) gets
through.
"""

from __future__ import annotations

import random

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.ws.closecodes import Side
from clbproxy.ws.controls import BYTE_RATE, MESSAGE_RATE, RateLimiter, TokenBucket
from clbproxy.ws.fastpath import Hop
from clbproxy.ws.pauses import PauseReason, ReadPauses
from tests.support.relay import RelayHarness, frame, switching_protocols, upgrade_head

TEXT = 0x1


class ReferenceBucket:
    """The token bucket charged on every read, as before calm reads."""

    def __init__(self, clock, rate, burst=0):
        self.clock = clock
        self.rate = float(rate)
        self.burst = float(burst or max(rate, 1.0))
        self.tokens = self.burst
        self.at = clock.seconds()

    def take(self, amount):
        now = self.clock.seconds()
        tokens = self.tokens + (now - self.at) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        tokens -= amount
        self.tokens = tokens
        self.at = now
        return 0.0 if tokens >= 0 else -tokens / self.rate


class Reference:
    """What a limiter did before calm reads: both buckets charged on every read."""

    def __init__(self, clock, pauses, *, messages=None, octets=None, close=False):
        self.clock = clock
        self.pauses = pauses
        self.messages = ReferenceBucket(clock, *messages) if messages else None
        self.octets = ReferenceBucket(clock, *octets) if octets else None
        self.close = close
        self.seen = 0
        self.call = None
        self.stopped = False
        self.exceeded = []
        self.throttles = 0

    def received(self, octets, messages):
        wait, limit = 0.0, ""
        if self.octets is not None:
            wait = self.octets.take(octets)
            if wait:
                limit = BYTE_RATE
        new = messages - self.seen
        if new and self.messages is not None:
            self.seen = messages
            owed = self.messages.take(new)
            if owed > wait:
                wait, limit = owed, MESSAGE_RATE
        if not wait or self.stopped:
            return
        if self.close:
            self.stopped = True
            self.exceeded.append(limit)
        elif self.call is None:
            self.pauses.add(PauseReason.RATE)
            self.throttles += 1
            self.call = self.clock.callLater(wait, self._refilled)

    def _refilled(self):
        self.call = None
        wait = max(
            self.octets.take(0) if self.octets is not None else 0.0,
            self.messages.take(0) if self.messages is not None else 0.0,
        )
        now = self.clock.seconds()
        if now + wait > now:  # a debt the clock can tell apart (see test_controls_rounding)
            self.call = self.clock.callLater(wait, self._refilled)
        else:
            self.pauses.remove(PauseReason.RATE)


class Owner:
    def __init__(self):
        self.exceeded = []

    def rate_exceeded(self, side, limit):
        self.exceeded.append(limit)

    def relieve(self, reason):
        pass


class Pair:
    """A limiter and the reference, each on its own clock and hop, given the same reads."""

    def __init__(self, *, messages=None, octets=None, close=False):
        self.clocks = task.Clock(), task.Clock()
        self.transports = StringTransport(), StringTransport()
        self.owner = Owner()
        self.throttles = []
        clock = self.clocks[0]
        self.limiter = RateLimiter(
            clock,
            Side.CLIENT,
            ReadPauses(self.transports[0]),
            self.owner,
            messages=TokenBucket(clock, *messages) if messages else None,
            octets=TokenBucket(clock, *octets) if octets else None,
            close=close,
            count=self.throttles.append,
        )
        self.reference = Reference(
            self.clocks[1],
            ReadPauses(self.transports[1]),
            messages=messages,
            octets=octets,
            close=close,
        )
        self.total = 0

    def advance(self, seconds):
        for clock in self.clocks:
            clock.advance(seconds)

    def read(self, octets, messages=0):
        """One read of ``octets`` bytes completing ``messages`` messages; what each did."""
        self.total += messages
        self.limiter.received(octets, self.total)
        self.reference.received(octets, self.total)
        return self.state()

    def state(self):
        return (
            [t.producerState for t in self.transports],
            [self.owner.exceeded, len(self.throttles)],
            [self.reference.exceeded, self.reference.throttles],
            [[c.getTime() for c in clock.getDelayedCalls()] for clock in self.clocks],
        )


def agree(test, pair, trace):
    """Feed ``trace`` (``(seconds, octets, messages)`` each) to both; they must never differ."""
    for i, (seconds, octets, messages) in enumerate(trace):
        pair.advance(seconds)
        paused, mine, reference, calls = pair.read(octets, messages)
        test.assertEqual(paused[0], paused[1], f"read {i}")
        test.assertEqual(mine, reference, f"read {i}")
        test.assertEqual(calls[0], calls[1], f"read {i}")


def mixed_trace(rng, rate, burst, gap, reads=400):
    """Idle spells, trickles well under the rate, bursts and floods above it, in random order.

    ``gap`` is the limiter's calm gap: some runs of reads are spaced right
    around it, and a burst or flood may follow one at once.
    """
    trace = []
    while len(trace) < reads:
        kind = rng.choice(("idle", "trickle", "burst", "flood", "edge", "calm"))
        if kind == "idle":
            trace.append((rng.uniform(0.5, 5.0) * burst / rate, 1, 1))
        elif kind == "trickle":
            for _ in range(rng.randrange(5, 40)):
                trace.append((rng.uniform(2.0, 10.0) / rate, rng.randrange(1, 3), 1))
        elif kind == "burst":
            for _ in range(rng.randrange(1, 10)):
                trace.append((rng.uniform(0, 0.01) / rate, 1, rng.randrange(1, int(burst) + 2)))
        elif kind == "flood":
            for _ in range(rng.randrange(10, 60)):
                trace.append((rng.uniform(0.3, 0.9) / rate, rng.randrange(1, 4), 1))
        elif kind == "edge":
            # Reads spaced right around the calm gap.
            for _ in range(rng.randrange(5, 30)):
                spacing = gap * rng.choice((0.999, 1.0, 1.001, 1.5)) + rng.choice((0, 1e-9, -1e-9))
                trace.append((spacing, rng.randrange(1, 3), 1))
        else:
            # Calm reads, then at once a burst of reads close together.
            for _ in range(rng.randrange(1, 5)):
                trace.append((gap * rng.uniform(1.0, 3.0), rng.randrange(1, 3), 1))
            for _ in range(rng.randrange(1, 20)):
                trace.append((rng.uniform(0, 0.2) / rate, 1, rng.randrange(1, 4)))
    return trace


class SameDecisionsTests(unittest.TestCase):
    def test_messages_throttle_at_the_same_read_with_the_same_wait(self):
        rng = random.Random(1)
        for rate, burst in ((10, 5), (100, 0), (1000, 50), (1e6, 0)):
            pair = Pair(messages=(rate, burst))
            agree(self, pair, mixed_trace(rng, rate, burst or rate, pair.limiter.gap))

    def test_bytes_throttle_at_the_same_read_with_the_same_wait(self):
        rng = random.Random(2)
        for rate, burst in ((1000, 1000), (65536, 4096), (2**30, 0)):
            pair = Pair(octets=(rate, burst))
            trace = [
                (seconds, octets * rng.randrange(1, 3000), 0)
                for seconds, octets, _ in mixed_trace(
                    rng, rate / 1000, (burst or rate) / 1000, pair.limiter.gap
                )
            ]
            agree(self, pair, trace)

    def test_both_limits_decide_as_before(self):
        rng = random.Random(3)
        for close in (False, True):
            pair = Pair(messages=(100, 20), octets=(10_000, 2_000), close=close)
            trace = [
                (seconds, 30 * messages + rng.randrange(0, 200), messages)
                for seconds, _, messages in mixed_trace(rng, 100, 20, pair.limiter.gap, 600)
            ]
            agree(self, pair, trace)

    def test_a_flood_after_an_idle_spell_closes_at_the_same_message(self):
        pair = Pair(messages=(10, 5), close=True)
        trace = [(3.0, 10, 1)] + [(0.5, 10, 1)] * 10 + [(0.01, 10, 1)] * 20
        agree(self, pair, trace)
        self.assertEqual(pair.owner.exceeded, [MESSAGE_RATE])

    def test_a_trickle_under_the_rate_is_never_throttled(self):
        pair = Pair(messages=(10, 0), octets=(1000, 0))
        agree(self, pair, [(0.2, 100, 1)] * 500)
        self.assertEqual(pair.throttles, [])


class BoundTests(unittest.TestCase):
    def test_a_greedy_sender_gets_no_more_than_burst_plus_rate_times_t(self):
        rng = random.Random(4)
        # Binary fractions only: a debt paid to the last bit (a fake clock never
        # moves on by less than its own rounding).
        rate, burst = 64.0, 16
        pair = Pair(messages=(rate, burst))
        clock, transport = pair.clocks[0], pair.transports[0]
        passed, largest = 0, 0
        for _ in range(3000):
            # Read whenever the hop is read; idle now and then.
            pair.advance(0.5 if rng.random() < 0.02 else rng.choice((2**-10, 2**-8, 2**-6)))
            if transport.producerState == "paused":
                continue
            messages = rng.randrange(1, 6)
            largest = max(largest, messages)
            pair.read(10, messages)
            passed += messages
            self.assertLessEqual(passed, burst + rate * clock.seconds() + largest)
        # It was held to the rate: throttled, many times.
        self.assertGreater(len(pair.throttles), 10)


def on_time(harness):
    """A clock for the reference that reads what the harness's reads now."""
    clock = task.Clock()
    clock.advance(harness.clock.seconds())
    return clock


def resumes(clock):
    """When the limiter will read its hop again (its refill call), on ``clock``."""
    return [c.getTime() for c in clock.getDelayedCalls() if c.func.__name__ == "_refilled"]


class FastPathTests(unittest.TestCase):
    """The fast path's inlined calm branch decides as the reference does."""

    def open_session(self, **options):
        harness = RelayHarness(**options)
        self.addCleanup(harness.close)
        client = harness.client(upgrade_head())
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        client.take()
        (session,) = harness.factory.sessions
        self.assertIsInstance(session.front, Hop)
        return harness, client, backend, session.controls.limiters

    def agree(self, harness, sender, masked, reference, paused, trace):
        total = 0
        for i, (seconds, size, messages) in enumerate(trace):
            harness.clock.advance(seconds)
            reference.clock.advance(seconds)
            data = b"".join(frame(TEXT, b"x" * size, masked=masked) for _ in range(messages))
            sender.receive(data)
            total += messages
            reference.received(len(data), total)
            self.assertEqual(sender.producerState, paused.producerState, f"read {i}")
            self.assertEqual(resumes(harness.clock), resumes(reference.clock), f"read {i}")
        self.assertGreater(reference.throttles, 0)

    def test_a_client_is_paused_at_the_same_message_for_as_long(self):
        rng = random.Random(5)
        harness, client, _, (limiter, _) = self.open_session(
            websocket_message_rate=200.0,
            websocket_message_burst=20,
            websocket_byte_rate=100_000,
            websocket_byte_burst=5000,
        )
        paused = StringTransport()
        reference = Reference(
            on_time(harness), ReadPauses(paused), messages=(200, 20), octets=(100_000, 5000)
        )
        trace = [
            (seconds, rng.randrange(1, 100), messages)
            for seconds, _, messages in mixed_trace(rng, 200, 20, limiter.gap, 300)
        ]
        self.agree(harness, client, True, reference, paused, trace)

    def test_a_backend_is_paused_at_the_same_read_for_as_long(self):
        rng = random.Random(6)
        harness, _, backend, (_, limiter) = self.open_session(
            websocket_byte_rate=50_000, websocket_byte_burst=3000
        )
        paused = StringTransport()
        reference = Reference(on_time(harness), ReadPauses(paused), octets=(50_000, 3000))
        trace = [
            (seconds, rng.randrange(1, 120), messages)
            for seconds, _, messages in mixed_trace(rng, 400, 30, limiter.gap)
        ]
        self.agree(harness, backend, False, reference, paused, trace)
