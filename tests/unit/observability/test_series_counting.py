"""Tests for :class:`clbproxy.observability.series.SeriesStore`'s per-request counting.

An HTTP request is counted in plain integers for the bucket being filled,
which reach the arrays when it ends or before they are read: each request
still lands in its own five-second bucket, in its listener's and its
backend's series, however the buckets change between requests of one
listener and backend.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.observability.series import BUCKET_SECONDS, SLOTS, SeriesStore
from tests.unit.observability.test_series import http_event

OTHER = "127.0.0.1:8282"


class CountingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)  # a bucket boundary (1e6 is a multiple of 5)
        self.store = SeriesStore(self.clock)

    def counts(self, name: str, backend: str) -> tuple[list, list]:
        """The listener's and ``backend``'s request counts, oldest bucket first."""
        raw = self.store.raw()
        backends = {entry["address"]: entry[name] for entry in raw["backends"]}
        return raw["listeners"][0][name], backends[backend]

    def test_requests_of_one_backend_in_following_buckets_count_in_each(self) -> None:
        for requests in (1, 3, 2):
            for _ in range(requests):
                self.store(http_event())
            self.clock.advance(BUCKET_SECONDS)
        listener, backend = self.counts("requests", "127.0.0.1:8181")
        self.assertEqual((listener[-3:], backend[-3:]), ([1, 3, 2], [1, 3, 2]))

    def test_errors_and_latency_count_in_both_series(self) -> None:
        self.store(http_event(status=502, response_ms=3.0))
        self.store(http_event(status=200, response_ms=None))
        self.clock.advance(BUCKET_SECONDS)
        listener, backend = self.counts("errors", "127.0.0.1:8181")
        self.assertEqual((listener[-1], backend[-1]), (1, 1))
        raw = self.store.raw()
        self.assertEqual(raw["listeners"][0]["latency"][-1], [[8, 1]])
        self.assertEqual(raw["backends"][0]["latency"][-1], [[8, 1]])

    def test_a_request_of_a_bucket_the_listener_no_longer_holds_counts_for_its_backend(
        self,
    ) -> None:
        start = self.clock.seconds()
        self.clock.advance(5 * BUCKET_SECONDS)
        self.store(http_event())  # counted in bucket +5
        self.clock.advance((SLOTS + 15) * BUCKET_SECONDS)
        self.store(http_event(backend=OTHER))  # the listener's ring moves 195 buckets on:
        # its bucket +5 is gone, and bucket +10 is older than its window
        self.clock.rightNow = start + 10 * BUCKET_SECONDS  # the wall clock went back
        self.store(http_event())
        self.store.fold()  # the arrays are read directly: the pending counts first
        listener = self.store.listeners["web"]
        backend = self.store.backends["pool"]["127.0.0.1:8181"]
        self.assertEqual((sum(listener.requests), sum(backend.requests)), (1, 2))
        self.assertEqual(backend.requests[(int(start) // BUCKET_SECONDS + 10) % SLOTS], 1)
