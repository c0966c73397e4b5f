"""The rate limiter is an exact token bucket: property tests against the plain one, read by read.

:class:`clbproxy.ws.controls.RateLimiter` records calm reads instead of
charging them; these properties hold it (through ``received`` and through the
fast path's inlined branch) to the bucket charged on every read
(``Reference`` in ``test_controls_calm``) on any mix of limits and of reads,
idle spells longer than a full refill among them: the same read is throttled or
closed, the hop resumes at the same time.  A bucket idle for longer than it
takes to refill holds its burst and no more, however long the idle spell, and
however many calm reads came before it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.ws.controls import MESSAGE_RATE
from clbproxy.ws.pauses import ReadPauses
from tests.support.relay import RelayHarness, frame, switching_protocols, upgrade_head
from tests.unit.ws.test_controls_calm import Pair, Reference, agree, on_time, resumes

TEXT = 0x1

#: (rate, burst) of a limit; burst 0 is one second's worth.  Rates of both
#: magnitudes the calm gap depends on (its 0.1 ms floor, one message, 4 KiB).
RATES = st.sampled_from((2.0, 10.0, 64.0, 200.0, 1000.0, 50_000.0, 1e6))
BURSTS = st.sampled_from((0, 1, 3, 20, 100))
OCTET_RATES = st.sampled_from((1000.0, 65536.0, 1e6, 2.0**30))
OCTET_BURSTS = st.sampled_from((0, 100, 4096, 100_000))

#: Seconds before a read: around the limiter's calm gap (where a read starts or
#: stops being calm), any multiple of it, none, or an idle spell of up to a hundred
#: refills (``("idle", k)``: ``k`` times the longest refill).
DELAYS = st.one_of(
    st.sampled_from((0.5, 0.75, 0.999, 1.0, 1.001, 1.25, 1.5, 2.0)).map(lambda k: ("gap", k)),
    st.floats(0.0, 20.0).map(lambda k: ("gap", k)),
    st.just(0.0),
    st.floats(1.0, 100.0).map(lambda k: ("idle", k)),
)
#: Mostly a message or two per read, now and then a burst of them.
COUNTS = st.one_of(st.sampled_from((1, 1, 0, 2, 3)), st.integers(0, 30))
SIZES = st.one_of(st.integers(1, 100), st.integers(0, 6000))
#: Runs of reads alike (a trickle, a flood, reads spaced around the gap), in any order.
READS = st.lists(st.tuples(DELAYS, SIZES, COUNTS, st.integers(1, 40)), min_size=1, max_size=10).map(
    lambda runs: [(d, size, count) for d, size, count, n in runs for _ in range(n)]
)


def seconds(delay, gap: float, refill: float) -> float:
    if delay == 0.0:
        return 0.0
    unit, k = delay
    return k * (gap if unit == "gap" else refill)


def refill_time(limits) -> float:
    """Seconds an empty bucket of the longest refill takes to be full again."""
    return max((burst or max(rate, 1.0)) / rate for rate, burst in limits if rate)


class ExactBucketProperties(unittest.TestCase):
    @settings(max_examples=600, deadline=None)
    @given(
        messages=st.one_of(st.none(), st.tuples(RATES, BURSTS)),
        octets=st.one_of(st.none(), st.tuples(OCTET_RATES, OCTET_BURSTS)),
        close=st.booleans(),
        reads=READS,
    )
    def test_every_read_is_decided_as_the_plain_bucket_decides_it(
        self, messages, octets, close, reads
    ):
        if messages is None and octets is None:
            messages = (10.0, 0)
        pair = Pair(messages=messages, octets=octets, close=close)
        gap, refill = pair.limiter.gap, refill_time([m for m in (messages, octets) if m])
        trace = [(seconds(d, gap, refill), size, count) for d, size, count in reads]
        agree(self, pair, trace)


class IdleRefillTests(unittest.TestCase):
    def test_a_long_idle_spell_refills_the_burst_once(self):
        # Calm reads, an idle spell of a thousand refills, then the burst at once:
        # the read after the burst is over the limit, as after one refill.
        pair = Pair(messages=(10, 5), close=True)
        trace = [(1.0, 10, 1)] * 3 + [(1000.0, 10, 1), (0.0, 10, 4), (0.0, 10, 1)]
        agree(self, pair, trace)
        self.assertEqual(pair.owner.exceeded, [MESSAGE_RATE])

    def test_a_calm_read_after_an_idle_spell_counts_against_the_burst(self):
        # The calm read took one of the five: four more pass, the fifth is over.
        pair = Pair(messages=(10, 5), close=True)
        agree(self, pair, [(60.0, 10, 1), (0.0, 10, 4)])
        self.assertEqual(pair.owner.exceeded, [])
        agree(self, pair, [(0.0, 10, 1)])
        self.assertEqual(pair.owner.exceeded, [MESSAGE_RATE])


class FastPathProperties(unittest.TestCase):
    """The fast path's inlined calm branch, on any reads, as the plain bucket."""

    @settings(max_examples=30, deadline=None)
    @given(
        message_rate=st.sampled_from((50.0, 200.0, 1e6)),
        message_burst=BURSTS,
        byte_rate=st.sampled_from((20_000, 100_000, 2**30)),
        byte_burst=st.sampled_from((0, 3000, 100_000)),
        reads=st.lists(
            st.tuples(DELAYS, st.integers(0, 120), st.integers(1, 8), st.integers(1, 20)),
            min_size=1,
            max_size=6,
        ).map(lambda runs: [(d, size, count) for d, size, count, n in runs for _ in range(n)]),
    )
    def test_a_client_is_paused_at_the_same_read_for_as_long(
        self, message_rate, message_burst, byte_rate, byte_burst, reads
    ):
        harness = RelayHarness(
            websocket_message_rate=message_rate,
            websocket_message_burst=message_burst,
            websocket_byte_rate=byte_rate,
            websocket_byte_burst=byte_burst,
            # Idle spells are long: no session timer may end the session meanwhile.
            websocket_idle_timeout=0,
            websocket_ping_interval=0,
        )
        try:
            client = harness.client(upgrade_head())
            backend = harness.backends.accept()
            backend.receive(switching_protocols(backend.take()))
            client.take()
            (session,) = harness.factory.sessions
            limiter = session.controls.limiters[0]
            paused = StringTransport()
            reference = Reference(
                on_time(harness),
                ReadPauses(paused),
                messages=(message_rate, message_burst),
                octets=(byte_rate, byte_burst),
            )
            refill = refill_time([(message_rate, message_burst), (byte_rate, byte_burst)])
            total = 0
            for i, (delay, size, count) in enumerate(reads):
                step = seconds(delay, limiter.gap, refill)
                harness.clock.advance(step)
                reference.clock.advance(step)
                if client.producerState == "paused":
                    continue  # not read: the throttle holds it
                data = b"".join(frame(TEXT, b"x" * size, masked=True) for _ in range(count))
                client.receive(data)
                total += count
                reference.received(len(data), total)
                self.assertEqual(client.producerState, paused.producerState, f"read {i}")
                self.assertEqual(resumes(harness.clock), resumes(reference.clock), f"read {i}")
        finally:
            harness.close()
