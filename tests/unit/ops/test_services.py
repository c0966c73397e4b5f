"""Tests for :mod:`clbproxy.ops.services`: when one proxy process tells systemd it serves."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.ops.preflight import load_checked
from clbproxy.ops.services import build_service

from .test_notify import NotifySocket

TAP = """\
[[listener]]
name = "web"
bind = "tcp:0:interface=127.0.0.1"
  [[listener.rule]]
  target_group = "g"
[[listener]]
name = "other"
bind = "tcp:0:interface=127.0.0.2"
  [[listener.rule]]
  target_group = "g"
[target_group.g]
backends = ["127.0.0.1:9"]
"""


class ReadyTests(unittest.TestCase):
    def proxy(self, systemd: NotifySocket):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(TAP)
        reactor = MemoryReactorClock()
        root = build_service(load_checked(path), reactor, notifier=systemd.notifier())
        return root, reactor

    def test_ready_is_sent_once_the_listeners_are_bound_and_the_reactor_runs(self):
        systemd = NotifySocket(self)
        root, reactor = self.proxy(systemd)

        root.privilegedStartService()
        root.startService()
        self.addCleanup(root.stopService)
        self.assertFalse(systemd.pending())
        reactor.run()

        self.assertEqual(len(reactor.tcpServers), 2)
        self.assertEqual(systemd.receive(), ["READY=1", "STATUS=serving on 2 listener(s)"])

    def test_draining_is_announced_as_stopping(self):
        systemd = NotifySocket(self)
        root, reactor = self.proxy(systemd)
        root.signals = True
        root.privilegedStartService()
        root.startService()
        reactor.run()
        systemd.receive()

        root.stopService()
        reactor.advance(60)

        self.assertEqual(systemd.receive(), ["STOPPING=1", "STATUS=draining"])
