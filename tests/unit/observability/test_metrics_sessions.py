"""Tests for the WebSocket session series of :mod:`clbproxy.observability.metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.metrics import Metrics


def session_event(backend: str = "10.0.0.1:80", client_close: int = 1000) -> dict:
    record = accesslog.SessionRecord(listener="web", client="127.0.0.1", path="/")
    record.status, record.group, record.backend = 101, "g", backend
    record.client_close_code, record.backend_close_code = client_close, 1000
    record.closed_by = "client"
    return {"log_namespace": accesslog.NAMESPACE, **record.fields()}


def value(metric, **labels) -> float:
    (family,) = metric.collect()
    for sample in family.samples:
        if sample.name.endswith("_total") and sample.labels == labels:
            return sample.value
    return 0.0


class SessionSeriesTests(unittest.TestCase):
    def test_every_session_counts_in_its_own_labels_series(self):
        metrics = Metrics(CollectorRegistry(), live=None)
        for event in (session_event(), session_event(), session_event(backend="10.0.0.2:80")):
            metrics(event)
        sessions = metrics.sessions
        self.assertEqual(value(sessions, listener="web", group="g", backend="10.0.0.1:80"), 2)
        self.assertEqual(value(sessions, listener="web", group="g", backend="10.0.0.2:80"), 1)

    def test_close_codes_of_each_side_are_counted_apart(self):
        metrics = Metrics(CollectorRegistry(), live=None)
        metrics(session_event(client_close=1001))
        metrics(session_event(client_close=1000))
        closes = metrics.closes
        self.assertEqual(value(closes, listener="web", side="client", code="1001"), 1)
        self.assertEqual(value(closes, listener="web", side="client", code="1000"), 1)
        self.assertEqual(value(closes, listener="web", side="backend", code="1000"), 2)
