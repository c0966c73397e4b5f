"""Tests for :mod:`clbproxy.ops.supervisor`: telling systemd when every worker serves."""

from __future__ import annotations

import json
import os
import shutil

from twisted.trial import unittest

from clbproxy.ops.supervisor import Supervisor
from tests.unit.ops.test_supervisor import ProcessClock, config

from .test_notify import NotifySocket


class ReadyTests(unittest.TestCase):
    def supervisor(self, systemd: NotifySocket) -> tuple[Supervisor, ProcessClock]:
        clock = ProcessClock()
        supervisor = Supervisor(
            config(workers=2), clock, publisher=lambda event: None, notifier=systemd.notifier()
        )
        supervisor.signals = False
        supervisor.startService()
        self.addCleanup(shutil.rmtree, supervisor.runtime_dir, True)
        return supervisor, clock

    def serving(self, worker) -> None:
        worker.fake_control.dataReceived(json.dumps({"serving": True}).encode() + b"\n")

    def test_ready_is_sent_once_every_worker_serves(self):
        systemd = NotifySocket(self)
        supervisor, clock = self.supervisor(systemd)
        first, second = (protocol for protocol, *_ in clock.spawned)

        self.serving(first)
        self.assertFalse(systemd.pending())
        self.serving(second)

        self.assertEqual(systemd.receive(), ["READY=1", "STATUS=serving with 2 worker(s)"])

    def test_workers_do_not_inherit_the_notify_socket(self):
        systemd = NotifySocket(self)
        self.patch(os, "environ", {**os.environ, "NOTIFY_SOCKET": systemd.value})
        supervisor, clock = self.supervisor(systemd)

        environments = [env for _, _, env, _ in clock.spawned]
        self.assertEqual(len(environments), 2)
        self.assertTrue(all("NOTIFY_SOCKET" not in env for env in environments))
