"""Tests for :meth:`clbproxy.upstream.balancer.TargetGroup.candidates`: leaving fail-open."""

from __future__ import annotations

from twisted.internet import task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import TargetGroupConfig
from clbproxy.config.upstream import BackendConfig
from clbproxy.upstream.balancer import TargetGroup

A = BackendConfig("10.0.0.1", 80)
B = BackendConfig("10.0.0.2", 80)


class LeavingFailOpenTests(unittest.TestCase):
    def setUp(self):
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.clock = task.Clock()
        self.group = TargetGroup(TargetGroupConfig(name="g", backends=(A, B)), self.clock)

    def said(self, text: str) -> int:
        return sum(text in e.get("log_format", "") for e in self.events)

    def test_a_backend_back_in_service_ends_fail_open_once(self):
        for backend in (A, B):
            for _ in range(3):
                self.group.report_failure(backend, "connection refused")
        self.assertIsNotNone(self.group.pick())
        self.clock.advance(3600)
        for _ in range(5):
            self.assertIsNotNone(self.group.pick())
        self.assertEqual((self.said("failing open"), self.said("healthy again")), (1, 1))

    def test_healthy_picks_say_nothing(self):
        for _ in range(5):
            self.group.pick()
        self.assertEqual((self.said("failing open"), self.said("healthy again")), (0, 0))
