"""Tests for :class:`clbproxy.observability.metrics.Metrics`: per-request counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.metrics import Metrics


def request_event(**fields) -> dict:
    return {"log_namespace": accesslog.NAMESPACE, "type": "http", "listener": "web", **fields}


def samples(metric, suffix: str) -> dict:
    (family,) = metric.collect()
    return {
        tuple(sample.labels.values()): sample.value
        for sample in family.samples
        if sample.name.endswith(suffix)
    }


class RequestMetricsTests(unittest.TestCase):
    def setUp(self):
        self.metrics = Metrics(CollectorRegistry(), live=None)

    def test_requests_are_counted_by_listener_backend_and_status(self):
        for backend, status in [("b:1", 200), ("b:1", 200), ("b:2", 200), (None, 503)]:
            self.metrics(request_event(backend=backend, status=status))
        self.assertEqual(
            samples(self.metrics.http_requests, "_total"),
            {("web", "b:1", "200"): 2.0, ("web", "b:2", "200"): 1.0, ("web", "-", "503"): 1.0},
        )

    def test_response_times_are_observed_per_listener(self):
        self.metrics(request_event(backend="b:1", status=200, response_ms=5.0))
        self.metrics(request_event(backend="b:1", status=200, response_ms=15.0))
        self.metrics(request_event(backend=None, status=502, response_ms=None))
        self.assertEqual(samples(self.metrics.http_response, "_count"), {("web",): 2.0})
        self.assertAlmostEqual(samples(self.metrics.http_response, "_sum")[("web",)], 0.02)
