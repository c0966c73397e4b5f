"""Tests for :mod:`clbproxy.observability.service`: access events on a publisher of their own.

twistd's own log watches the global publisher; access events go to the
access publisher :class:`Observability` owns, where the access logs, the
metrics, the status page's series and the recent errors watch them.  Here a
separate :class:`LogPublisher` stands for the global one, with a list
standing for twistd's log on it.
"""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial import unittest

from clbproxy.config import AccessLogConfig
from clbproxy.observability import accesslog
from clbproxy.observability.series import BUCKET_SECONDS
from clbproxy.observability.service import Observability
from tests.unit.observability.test_series import BACKEND, config


def requests_counted(observability: Observability) -> float:
    return sum(
        sample.value
        for metric in observability.registry.collect()
        for sample in metric.samples
        if sample.name == "clbproxy_http_requests_total"
    )


class AccessPublisherTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.path = self.mktemp()
        self.global_publisher = LogPublisher()
        #: What twistd's own log would have been given.
        self.twistd_log: list[dict] = []
        self.global_publisher.addObserver(self.twistd_log.append)
        self.observability = Observability(
            attrs.evolve(config(), access_log=AccessLogConfig(path=self.path)),
            {},
            self.clock,
            publisher=self.global_publisher,
        )
        self.observability.startService()
        self.addCleanup(self.observability.stopService)

    def emit(self, **fields) -> None:
        record = accesslog.RequestRecord(
            listener="web", method="GET", path="/quiet", group="pool", backend=BACKEND, **fields
        )
        accesslog.emit(record, self.observability.access_events)

    def access_lines(self) -> list[str]:
        with open(self.path) as f:
            return f.read().splitlines()

    def test_an_access_event_is_written_to_the_access_log(self) -> None:
        self.emit(status=200)
        [line] = self.access_lines()
        self.assertIn('"GET /quiet HTTP/1.1" 200 ', line)

    def test_an_access_event_is_counted_in_the_metrics_and_the_series(self) -> None:
        self.emit(status=200)
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(requests_counted(self.observability), 1)
        listener = self.observability.series.raw()["listeners"][0]
        self.assertEqual(sum(listener["requests"]), 1)

    def test_an_access_event_does_not_reach_twistds_log(self) -> None:
        self.emit(status=200)
        self.assertEqual(self.twistd_log, [])

    def test_a_refused_handshake_is_still_a_recent_error(self) -> None:
        record = accesslog.SessionRecord(
            listener="web", path="/ws", group="pool", backend=BACKEND, status=502
        )
        accesslog.emit(record, self.observability.access_events)
        [error] = self.observability.errors.recent("pool", BACKEND)
        self.assertIn("502", error["message"])

    def test_warnings_on_the_global_publisher_are_still_recent_errors(self) -> None:
        Logger(observer=self.global_publisher).emit(
            LogLevel.warn, "backend failed", group="pool", backend=BACKEND, reason="refused"
        )
        [error] = self.observability.errors.recent("pool", BACKEND)
        self.assertEqual(error["message"], "refused")

    def test_an_access_observer_that_fails_is_reported_in_twistds_log(self) -> None:
        def broken(event: dict) -> None:
            raise OSError("disk full")

        self.observability.access.addObserver(broken)
        self.emit(status=200)
        [report] = self.twistd_log
        self.assertIs(report["observer"], broken)
        self.assertIsInstance(report["log_failure"].value, OSError)
        self.assertEqual(len(self.access_lines()), 1)

    def test_a_stopped_service_writes_and_counts_nothing(self) -> None:
        self.observability.stopService()
        self.emit(status=200)
        self.assertEqual((self.access_lines(), requests_counted(self.observability)), ([], 0))
