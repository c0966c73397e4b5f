"""A session's two limiters share one time: both directions decide as two plain buckets do.

On the fast path the two hops of a session keep the time of the session's
last read in one place (see :class:`clbproxy.ws.controls.CalmRecord`), so a
read of one hop may drop or settle the other hop's record of its last calm
read.  These properties feed both hops at once, in any order and with any
spacing (around the calm gap, at the same instant, after long idle spells), and
hold each hop to its own bucket charged on every read (``Reference`` in
``test_controls_calm``): the same read is throttled, and the hop is read again
at the same time.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.ws.controls import arm_controls
from clbproxy.ws.fastpath import LimitedHop
from clbproxy.ws.pauses import ReadPauses
from tests.support.relay import RelayHarness, frame, switching_protocols, upgrade_head
from tests.unit.ws.test_controls_calm import Reference, on_time, resumes
from tests.unit.ws.test_controls_exact import DELAYS, refill_time, seconds

TEXT = 0x1

#: Runs of reads alike, each run by one hop (0: the client's, 1: the backend's) or
#: by both in turn (2).
READS = st.lists(
    st.tuples(
        DELAYS,
        st.integers(0, 120),
        st.integers(0, 6),
        st.sampled_from((0, 1, 2)),
        st.integers(1, 20),
    ),
    min_size=1,
    max_size=8,
).map(
    lambda runs: [
        (d, size, count, who if who < 2 else i % 2)
        for d, size, count, who, n in runs
        for i in range(n)
    ]
)


class Session:
    """An open session on the fast path, each hop next to its reference bucket."""

    def __init__(self, test, *, message_rate, message_burst, byte_rate, byte_burst):
        self.harness = harness = RelayHarness(
            websocket_message_rate=message_rate,
            websocket_message_burst=message_burst,
            websocket_byte_rate=byte_rate,
            websocket_byte_burst=byte_burst,
            # Idle spells are long: no session timer may end the session meanwhile.
            websocket_idle_timeout=0,
            websocket_ping_interval=0,
        )
        test.addCleanup(harness.close)
        client = harness.client(upgrade_head())
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        client.take()
        (session,) = harness.factory.sessions
        test.assertIsInstance(session.front, LimitedHop)
        self.gap = session.controls.limiters[0].gap
        self.refill = refill_time([(message_rate, message_burst), (byte_rate, byte_burst)])
        self.senders = (client, backend)
        self.paused = (StringTransport(), StringTransport())
        self.references = tuple(
            Reference(
                on_time(harness),
                ReadPauses(paused),
                messages=(message_rate, message_burst),
                octets=(byte_rate, byte_burst),
            )
            for paused in self.paused
        )
        self.totals = [0, 0]

    def advance(self, step):
        self.harness.clock.advance(step)
        for reference in self.references:
            reference.clock.advance(step)

    def read(self, who, size, count):
        """Hop ``who`` reads ``count`` frames of ``size`` bytes, unless it is throttled."""
        sender = self.senders[who]
        if sender.producerState == "paused":
            return
        data = b"".join(frame(TEXT, b"x" * size, masked=who == 0) for _ in range(count))
        sender.receive(data)
        self.totals[who] += count
        self.references[who].received(len(data), self.totals[who])

    def agree(self, test, i):
        for who in (0, 1):
            test.assertEqual(
                self.senders[who].producerState, self.paused[who].producerState, f"read {i}"
            )
        test.assertEqual(
            sorted(resumes(self.harness.clock)),
            sorted(resumes(self.references[0].clock) + resumes(self.references[1].clock)),
            f"read {i}",
        )


class BothDirectionsProperties(unittest.TestCase):
    @settings(max_examples=60, deadline=None)
    @given(
        message_rate=st.sampled_from((50.0, 200.0, 1e6)),
        message_burst=st.sampled_from((0, 1, 3, 20)),
        byte_rate=st.sampled_from((20_000, 100_000, 2**30)),
        byte_burst=st.sampled_from((0, 3000, 100_000)),
        reads=READS,
    )
    def test_each_hop_is_paused_at_the_same_read_for_as_long(
        self, message_rate, message_burst, byte_rate, byte_burst, reads
    ):
        session = Session(
            self,
            message_rate=message_rate,
            message_burst=message_burst,
            byte_rate=byte_rate,
            byte_burst=byte_burst,
        )
        for i, (delay, size, count, who) in enumerate(reads):
            session.advance(seconds(delay, session.gap, session.refill))
            session.read(who, size, count)
            session.agree(self, i)


class BothDirectionsTests(unittest.TestCase):
    def open(self, **limits):
        return Session(self, **limits)

    def test_a_calm_read_of_one_hop_leaves_the_others_burst_to_it(self):
        # The client's calm read, the backend's a gap later, then the client's
        # burst at once: five pass (the bucket is full again), the sixth is over.
        session = self.open(message_rate=10.0, message_burst=5, byte_rate=2**30, byte_burst=0)
        trace = [(1.0, 0, 1), (0.2, 1, 1), (0.0, 0, 5), (0.0, 0, 1)]
        for i, (step, who, count) in enumerate(trace):
            session.advance(step)
            session.read(who, 10, count)
            session.agree(self, i)
        self.assertEqual(session.senders[0].producerState, "paused")
        self.assertEqual(session.senders[1].producerState, "producing")

    def test_a_flood_of_one_hop_right_after_the_others_calm_read_is_charged_in_full(self):
        # The backend's read comes too soon after the client's calm one to be calm:
        # the client's record is settled first, and a later client burst still
        # finds its bucket short by what the calm read took.
        session = self.open(message_rate=10.0, message_burst=5, byte_rate=2**30, byte_burst=0)
        trace = [(1.0, 0, 1), (0.0, 1, 6), (0.0, 0, 4), (0.0, 0, 1)]
        for i, (step, who, count) in enumerate(trace):
            session.advance(step)
            session.read(who, 10, count)
            session.agree(self, i)
        self.assertEqual([sender.producerState for sender in session.senders], ["paused", "paused"])

    def test_a_read_sooner_than_the_gap_after_a_calm_one_is_charged_in_full(self):
        # Ten a second, five at once: the gap is a tenth of a second.  0.06 s
        # after a calm read the bucket holds 3.6 after this read's one: four more
        # at once are over (a calm record would have said four were left).
        session = self.open(message_rate=10.0, message_burst=5, byte_rate=2**30, byte_burst=0)
        trace = [(10.0, 0, 1), (0.06, 0, 1), (0.0, 0, 4)]
        for i, (step, who, count) in enumerate(trace):
            session.advance(step)
            session.read(who, 10, count)
            session.agree(self, i)
        self.assertEqual(session.senders[0].producerState, "paused")

    def test_the_other_hops_read_within_the_gap_keeps_this_hops_record_exact(self):
        # The backend reads a third of a gap after the client's calm read, the
        # client a third of a gap after that: not calm, and charged from the calm
        # read's time (3.6 left after it, so four more at once are over).
        session = self.open(message_rate=10.0, message_burst=5, byte_rate=2**30, byte_burst=0)
        trace = [(10.0, 0, 1), (0.03, 1, 1), (0.03, 0, 1), (0.0, 0, 4)]
        for i, (step, who, count) in enumerate(trace):
            session.advance(step)
            session.read(who, 10, count)
            session.agree(self, i)
        self.assertEqual(session.senders[0].producerState, "paused")


class MixedHopsTests(unittest.TestCase):
    def test_a_fast_path_hop_next_to_another_kind_keeps_a_time_of_its_own(self):
        class Other:
            """A hop that is not a CalmRecord (an Autobahn one, say)."""

            def __init__(self):
                self.pauses = ReadPauses(StringTransport())
                self.messages_in = 0
                self.limiter = None

        hop = LimitedHop.__new__(LimitedHop)
        hop.pauses = ReadPauses(StringTransport())
        hop.scanner = None
        hop.messages_before = 0
        other = Other()
        arm_controls(
            task.Clock(),
            None,
            (hop, other),
            limits=(10.0, 5, 0, 0, "throttle"),
            tunnel=False,
            lifetime=(0.0, 0.1),
            lifetimes=None,
            count=lambda name: None,
        )
        self.assertIs(hop.limiter.record, hop)
        self.assertIs(hop.rate_session, hop)
        self.assertIsNot(other.limiter.record, other)
