"""Tests for :mod:`clbproxy.ops.reload`: every reload ends in an outcome that says why."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.ops.preflight import load_checked
from clbproxy.ops.reload import ReloadOutcome
from clbproxy.ops.services import build_service

TAP = """\
[[listener]]
name = "web"
bind = "{bind}"
  [[listener.rule]]
  target_group = "g"
[target_group.g]
backends = ["127.0.0.1:9"]
"""


class ReloadOutcomeTests(unittest.TestCase):
    def proxy(self):
        self.path = self.mktemp()
        self.write("tcp:0:interface=127.0.0.1")
        root = build_service(load_checked(self.path), MemoryReactorClock())
        root.privilegedStartService()
        root.startService()
        return root

    def write(self, bind: str) -> None:
        with open(self.path, "w") as f:
            f.write(TAP.format(bind=bind))

    def test_an_applied_reload_says_so(self):
        root = self.proxy()
        self.write("tcp:0:interface=127.0.0.2")

        outcome = self.successResultOf(root.reloader.attempt())

        self.assertEqual(outcome, ReloadOutcome(True))
        self.assertEqual(root.config.listeners[0].bind, "tcp:0:interface=127.0.0.2")

    def test_a_refused_reload_carries_the_first_problem_line(self):
        root = self.proxy()
        self.write("nonsense:1")

        outcome = self.successResultOf(root.reloader.attempt())

        self.assertFalse(outcome.applied)
        self.assertTrue(outcome.reason.startswith(f"{self.path}: listener[0].bind: "))
        self.assertEqual(root.config.listeners[0].bind, "tcp:0:interface=127.0.0.1")

    def test_reload_fires_only_whether_it_was_applied(self):
        root = self.proxy()
        self.write("nonsense:1")

        self.assertIs(self.successResultOf(root.reloader.reload()), False)
