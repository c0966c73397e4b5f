"""Tests for :class:`clbproxy.observability.service.AccessPublisher`: a LogPublisher, one loop."""

from __future__ import annotations

from twisted.logger import Logger, LogPublisher
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.service import AccessPublisher

ACCESS = {"log_namespace": accesslog.NAMESPACE, "type": "http", "status": 200}
OTHER = {"log_namespace": "clbproxy.other", "log_format": "hello"}


class AccessPublisherTests(unittest.TestCase):
    def setUp(self) -> None:
        self.seen: list[dict] = []
        self.passed: list[dict] = []
        self.publisher = AccessPublisher(self.seen.append)
        self.publisher.passed_on = self.passed.append

    def test_an_access_event_goes_to_every_observer_and_not_on(self) -> None:
        also: list[dict] = []
        self.publisher.addObserver(also.append)
        self.publisher(ACCESS)
        self.assertEqual((self.seen, also, self.passed), ([ACCESS], [ACCESS], []))

    def test_another_event_goes_to_every_observer_then_on(self) -> None:
        self.publisher(OTHER)
        self.assertEqual((self.seen, self.passed), ([OTHER], [OTHER]))

    def test_nothing_goes_on_until_told_where(self) -> None:
        publisher = AccessPublisher(self.seen.append)
        publisher(OTHER)
        self.assertEqual(self.seen, [OTHER])

    def test_a_failing_observer_is_reported_to_the_others_and_on_as_log_publisher_does(self):
        def broken(event: dict) -> None:
            raise OSError("disk full")

        plain_seen: list[dict] = []
        plain = LogPublisher(broken, plain_seen.append)
        self.publisher.removeObserver(self.seen.append)
        for observer in (broken, self.seen.append):
            self.publisher.addObserver(observer)
        self.publisher(ACCESS)
        plain(ACCESS)
        self.assertEqual(
            [e["log_format"] for e in self.seen[1:]], [e["log_format"] for e in plain_seen[1:]]
        )
        [report] = self.passed
        self.assertIs(report["observer"], broken)
        self.assertIsInstance(report["log_failure"].value, OSError)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 0)

    def test_a_traced_event_records_each_observer_as_log_publisher_does(self) -> None:
        Logger(observer=self.publisher).info("traced", log_trace=[])
        (event,) = self.seen
        self.assertEqual(event["log_trace"][-1], (self.publisher, self.seen.append))
        self.assertEqual(self.passed, [event])
