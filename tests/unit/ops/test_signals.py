"""Tests for :mod:`clbproxy.ops.signals`: what a SIGHUP tells systemd, in one process or many."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from clbproxy.ops.signals import SignalHandlers

from .test_notify import NotifySocket


class SignalHandlerTests(unittest.TestCase):
    def test_a_reload_is_announced_as_reloading_then_ready(self):
        systemd = NotifySocket(self)
        handlers = SignalHandlers(
            None, lambda: defer.succeed(True), lambda: None, systemd.notifier()
        )

        applied = self.successResultOf(handlers.reload())

        self.assertIs(applied, True)
        self.assertEqual(systemd.receive()[0], "RELOADING=1")
        self.assertEqual(systemd.receive(), ["READY=1", "STATUS=serving; reload applied"])

    def test_a_refused_reload_still_ends_with_ready(self):
        systemd = NotifySocket(self)
        handlers = SignalHandlers(
            None, lambda: defer.succeed(False), lambda: None, systemd.notifier()
        )

        applied = self.successResultOf(handlers.reload())

        self.assertIs(applied, False)
        self.assertEqual(systemd.receive()[0], "RELOADING=1")
        self.assertEqual(systemd.receive(), ["READY=1", "STATUS=serving; reload refused"])

    def test_systemd_hears_ready_only_when_the_reload_is_done(self):
        systemd = NotifySocket(self)
        pending = defer.Deferred()
        handlers = SignalHandlers(None, lambda: pending, lambda: None, systemd.notifier())

        handlers.reload()
        self.assertEqual(systemd.receive()[0], "RELOADING=1")
        self.assertFalse(systemd.pending())
        pending.callback(True)

        self.assertEqual(systemd.receive()[0], "READY=1")
