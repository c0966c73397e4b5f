"""Tests for the counts :class:`~clbproxy.observability.series.SeriesStore` keeps pending.

The events of the bucket being filled are added up in plain integers and put
in the arrays when the bucket ends, at a sample or before the series are read:
whenever that happens, every event is in its own bucket, exactly once.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.observability.series import BUCKET_SECONDS, SeriesStore
from tests.unit.observability.test_series import http_event, session_event


def last(raw: dict, name: str, kind: str = "listeners", back: int = 1) -> int:
    return raw[kind][0][name][-back]


class PendingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)  # a bucket boundary (1e6 is a multiple of 5)
        self.store = SeriesStore(self.clock)

    def test_counts_put_in_the_arrays_twice_count_once(self) -> None:
        self.store(http_event(status=503, response_ms=3.0))
        self.store.fold()
        self.store.fold()
        self.store.sample()
        self.clock.advance(BUCKET_SECONDS)
        raw = self.store.raw()
        self.assertEqual([last(raw, n) for n in ("requests", "errors")], [1, 1])
        self.assertEqual(raw["listeners"][0]["latency"][-1], [[8, 1]])

    def test_requests_after_a_sample_in_the_same_bucket_add_to_it(self) -> None:
        self.store(http_event())
        self.clock.advance(1)
        self.store.sample()
        self.store(http_event())
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(last(self.store.raw(), "requests", "backends"), 2)

    def test_requests_before_and_after_the_clock_went_back_count_in_their_own_buckets(
        self,
    ) -> None:
        self.clock.advance(2 * BUCKET_SECONDS)
        self.store(http_event())
        self.clock.rightNow -= BUCKET_SECONDS  # the wall clock went back one bucket
        self.store(http_event())
        self.store(http_event())
        self.clock.advance(2 * BUCKET_SECONDS)
        requests = self.store.raw()["listeners"][0]["requests"]
        self.assertEqual(requests[-3:], [0, 2, 1])

    def test_a_session_no_sample_saw_that_opened_a_bucket_before_counts_there(self) -> None:
        self.clock.advance(BUCKET_SECONDS - 1)
        self.store(http_event())  # the bucket being filled is this one
        self.clock.advance(2)
        self.store(session_event(duration_s=1.5))  # opened 0.5 s before this bucket
        self.clock.advance(BUCKET_SECONDS)
        raw = self.store.raw()
        self.assertEqual([last(raw, "sessions", back=b) for b in (2, 1)], [1, 0])
        self.assertEqual([last(raw, "requests", back=b) for b in (2, 1)], [1, 0])

    def test_a_session_no_sample_saw_counts_in_the_bucket_being_filled(self) -> None:
        self.clock.advance(1)
        self.store(http_event())
        self.clock.advance(2)
        self.store(session_event(duration_s=1.5))
        self.clock.advance(BUCKET_SECONDS)
        raw = self.store.raw()
        self.assertEqual([last(raw, "sessions", "backends", b) for b in (2, 1)], [0, 1])
