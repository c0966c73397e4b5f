"""Metrics and series count each access event through one observer (:class:`AccessCounters`)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import LogPublisher
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.series import BUCKET_SECONDS
from clbproxy.observability.service import AccessCounters, Observability
from tests.unit.observability.test_series import BACKEND, config
from tests.unit.observability.test_service_access import requests_counted


class AccessCountersTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.observability = Observability(config(), {}, self.clock, publisher=LogPublisher())
        self.observability.startService()
        self.addCleanup(self.observability.stopService)

    def counted(self) -> tuple[float, int, int]:
        """Requests in the metrics, in the listener's series, in the backend's series."""
        self.clock.advance(BUCKET_SECONDS)
        raw = self.observability.series.raw()
        return (
            requests_counted(self.observability),
            sum(sum(entry["requests"]) for entry in raw["listeners"]),
            sum(sum(entry["requests"]) for entry in raw["backends"]),
        )

    def test_one_event_counts_once_in_the_metrics_and_once_in_each_series(self) -> None:
        record = accesslog.RequestRecord(
            listener="web", group="pool", backend=BACKEND, status=200, response_ms=1.0
        )
        accesslog.emit(record, self.observability.access_events)
        self.assertEqual(self.counted(), (1, 1, 1))

    def test_events_that_are_not_access_events_are_not_counted(self) -> None:
        counters = AccessCounters(self.observability.metrics, self.observability.series)
        counters({"log_namespace": "clbproxy.other", "type": "http", "status": 200})
        counters({"log_namespace": accesslog.NAMESPACE, "status": 200})
        self.assertEqual(self.counted(), (0, 0, 0))
