"""The status page's recent errors among the access events: WebSocket handshakes only.

:class:`~clbproxy.observability.service.AccessCounters` gives the access
events' WebSocket sessions to the recent errors, so the access publisher has
no observer of its own for them on every HTTP request.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import LogPublisher
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.series import BUCKET_SECONDS
from clbproxy.observability.service import Observability
from tests.unit.observability.test_series import BACKEND, config


def sessions_counted(observability: Observability) -> float:
    return sum(
        sample.value
        for metric in observability.registry.collect()
        for sample in metric.samples
        if sample.name == "clbproxy_websocket_handshakes_total"
    )


class RecentAccessErrorTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.global_publisher = LogPublisher()
        self.twistd_log: list[dict] = []
        self.global_publisher.addObserver(self.twistd_log.append)
        self.observability = Observability(
            config(), {}, self.clock, publisher=self.global_publisher
        )
        self.observability.startService()
        self.addCleanup(self.observability.stopService)

    def session(self, status: int) -> None:
        record = accesslog.SessionRecord(
            listener="web", path="/ws", group="pool", backend=BACKEND, status=status
        )
        accesslog.emit(record, self.observability.access_events)

    def test_a_handshake_a_backend_failed_is_a_recent_error_and_counted(self) -> None:
        self.session(502)
        [error] = self.observability.errors.recent("pool", BACKEND)
        self.assertIn("502", error["message"])
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(sessions_counted(self.observability), 1)

    def test_a_handshake_the_backend_answered_is_no_recent_error(self) -> None:
        self.session(101)
        self.assertEqual(self.observability.errors.recent("pool", BACKEND), [])

    def test_an_http_request_a_backend_failed_is_no_recent_error_of_its_own(self) -> None:
        record = accesslog.RequestRecord(
            listener="web", method="GET", path="/", group="pool", backend=BACKEND, status=502
        )
        accesslog.emit(record, self.observability.access_events)
        self.assertEqual(self.observability.errors.recent("pool", BACKEND), [])

    def test_recent_errors_that_fail_leave_the_session_counted_and_are_reported(self) -> None:
        def broken(event: dict) -> None:
            raise OSError("no room")

        (counters,) = [
            observer
            for observer in self.observability._observers
            if type(observer).__name__ == "AccessCounters"
        ]
        counters.errors = broken
        self.session(502)
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(sessions_counted(self.observability), 1)
        [report] = self.twistd_log
        self.assertIsInstance(report["log_failure"].value, OSError)
