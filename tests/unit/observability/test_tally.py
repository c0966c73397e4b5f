"""Tests for :mod:`clbproxy.observability.tally`: one count per request, for two readers."""

from __future__ import annotations

import random
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.internet.task import Clock
from twisted.logger import LogPublisher
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability import tally as tally_module
from clbproxy.observability.metrics import LATENCY_BUCKETS, Metrics
from clbproxy.observability.series import BUCKET_SECONDS, LATENCY_BOUNDS_MS, SeriesStore
from clbproxy.observability.service import AccessCounters, Observability
from clbproxy.observability.tally import (
    CELL_BOUNDS_MS,
    METRIC_BUCKET_OF_CELL,
    SERIES_BUCKET_OF_CELL,
    RequestTally,
)
from tests.unit.observability.test_series import config

#: Response times on and around every bound of both readers, and some between.
EDGES = sorted(
    {b for b in CELL_BOUNDS_MS}
    | {b * 0.999 for b in CELL_BOUNDS_MS}
    | {b * 1.001 for b in CELL_BOUNDS_MS}
    | {0.0, 0.01, 1e9}
)


def request_event(**fields) -> dict:
    return {"log_namespace": accesslog.NAMESPACE, "type": "http", "listener": "web", **fields}


def samples(metric) -> dict:
    """Every sample but ``_created`` of a metric, by name and labels."""
    (family,) = metric.collect()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


class CellTests(unittest.TestCase):
    def test_every_bound_of_both_readers_is_a_cell_bound(self) -> None:
        cells = set(CELL_BOUNDS_MS)
        self.assertLessEqual(set(LATENCY_BOUNDS_MS), cells)
        self.assertLessEqual({round(b * 1000, 6) for b in LATENCY_BUCKETS}, cells)

    def test_a_response_time_lands_in_the_bucket_each_reader_would_choose(self) -> None:
        metric_ms = [round(b * 1000, 6) for b in LATENCY_BUCKETS]
        for ms in EDGES:
            cell = bisect_left(CELL_BOUNDS_MS, ms)
            self.assertEqual(SERIES_BUCKET_OF_CELL[cell], bisect_left(LATENCY_BOUNDS_MS, ms), ms)
            # Prometheus: the first bound the value is not above.
            expected = next((i for i, b in enumerate(metric_ms) if ms <= b), len(metric_ms))
            self.assertEqual(METRIC_BUCKET_OF_CELL[cell], expected, ms)


class MetricsAsPrometheusCountsTests(unittest.TestCase):
    """The tally's totals expose what ``prometheus_client``'s own counter and histogram would."""

    def test_random_requests_expose_the_same_samples_as_prometheus_client(self) -> None:
        metrics = Metrics(CollectorRegistry(), live=None)
        reference = CollectorRegistry()
        counter = Counter(
            "clbproxy_http_requests", "", ["listener", "backend", "status"], registry=reference
        )
        histogram = Histogram(
            "clbproxy_http_response_seconds",
            "",
            ["listener"],
            buckets=LATENCY_BUCKETS,
            registry=reference,
        )
        rng = random.Random(24)
        for _ in range(2000):
            listener = rng.choice(["web", "api", None])
            backend = rng.choice(["b:1", "b:2", None])
            status = rng.choice([200, 404, 502, 503])
            ms = rng.choice([None, *EDGES, rng.random() * 100])
            metrics(
                request_event(
                    listener=listener, group="g", backend=backend, status=status, response_ms=ms
                )
            )
            name = "-" if listener is None else listener
            counter.labels(name, "-" if backend is None else backend, status).inc()
            if ms is not None:
                histogram.labels(name).observe(ms / 1000)
        self.assertEqual(samples(metrics.http_requests), samples(counter))
        mine, theirs = samples(metrics.http_response), samples(histogram)
        self.assertEqual(mine.keys(), theirs.keys())
        for key, value in theirs.items():
            self.assertAlmostEqual(mine[key], value, places=6, msg=key)

    def test_a_created_sample_goes_with_each_label_set(self) -> None:
        metrics = Metrics(CollectorRegistry(), live=None)
        metrics(request_event(backend="b:1", status=200, response_ms=2.0))
        (family,) = metrics.http_requests.collect()
        names = [sample.name for sample in family.samples]
        self.assertEqual(names, ["clbproxy_http_requests_total", "clbproxy_http_requests_created"])
        (family,) = metrics.http_response.collect()
        self.assertIn("clbproxy_http_response_seconds_created", [s.name for s in family.samples])


class SharedTallyTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.observability = Observability(config(), {}, self.clock, publisher=LogPublisher())
        self.observability.startService()
        self.addCleanup(self.observability.stopService)

    def count(self, **fields) -> None:
        record = accesslog.RequestRecord(listener="web", group="pool", **fields)
        accesslog.emit(record, self.observability.access_events)

    def scraped(self) -> float:
        return sum(samples(self.observability.metrics.http_requests).values())

    def test_a_scrape_sees_a_request_of_the_bucket_being_filled(self) -> None:
        self.count(backend="b:1", status=200, response_ms=1.0)
        self.assertEqual(self.scraped(), 1)

    def test_a_scrape_in_the_middle_of_a_bucket_leaves_the_series_exact(self) -> None:
        self.count(backend="b:1", status=200, response_ms=1.0)
        self.scraped()
        self.count(backend="b:1", status=503, response_ms=1.0)
        self.clock.advance(BUCKET_SECONDS)
        (listener,) = self.observability.series.raw()["listeners"]
        self.assertEqual((listener["requests"][-1], listener["errors"][-1]), (2, 1))
        self.assertEqual(self.scraped(), 2)

    def test_the_metrics_and_the_series_count_in_one_tally(self) -> None:
        self.assertIs(self.observability.metrics.tally, self.observability.series.tally)

    def test_counters_over_two_tallies_are_refused(self) -> None:
        metrics = Metrics(CollectorRegistry(), live=None)
        series = SeriesStore(self.clock)
        with self.assertRaises(ValueError):
            AccessCounters(metrics, series)

    def test_a_sample_forgets_the_keys_of_past_traffic(self) -> None:
        for backend in ("b:1", "b:2", "b:3"):
            self.count(backend=backend, status=200)
        tally = self.observability.metrics.tally
        self.assertEqual(len(tally.pending), 3)
        self.clock.advance(BUCKET_SECONDS)  # the sampler runs
        self.assertEqual(tally.pending, {})
        self.assertEqual(self.scraped(), 3)


class ClocklessTallyTests(unittest.TestCase):
    def test_a_tally_without_a_clock_folds_when_read(self) -> None:
        tally = RequestTally()
        tally.count(request_event(status=200, response_ms=3.0))
        tally.count(request_event(status=200, response_ms=None))
        self.assertEqual(tally.totals.requests, {})
        tally.fold()
        ((labels, (count, _)),) = tally.totals.requests.items()
        self.assertEqual((labels, count), (("web", "-", "200"), 2))
        buckets, seconds, _ = tally.totals.responses["web"]
        self.assertEqual((sum(buckets), seconds), (1, 0.003))


class CreatedTests(unittest.TestCase):
    def test_labels_are_created_when_their_first_request_was_counted_not_when_folded(self) -> None:
        now = [1000.0]
        self.patch(tally_module.time, "time", lambda: now[0])
        tally = RequestTally()
        tally.count(request_event(status=200, response_ms=1.0))
        now[0] = 1003.0
        tally.count(request_event(status=404, response_ms=1.0))
        now[0] = 1004.5
        tally.fold()
        created = {labels[2]: when for labels, (_, when) in tally.totals.requests.items()}
        self.assertEqual(created, {"200": 1000.0, "404": 1003.0})
        self.assertEqual(tally.totals.responses["web"][2], 1000.0)


class KeyTests(unittest.TestCase):
    def test_an_event_without_group_or_backend_counts_as_one_naming_them_none(self) -> None:
        full, partial = RequestTally(), RequestTally()
        full.count(request_event(group=None, backend=None, status=200, response_ms=1.0))
        partial.count(request_event(status=200, response_ms=1.0))
        self.assertEqual(list(full.pending), [("web", None, None)])
        self.assertEqual(list(partial.pending), [("web", None, None)])
