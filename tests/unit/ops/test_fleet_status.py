"""``clbproxy fleet status``: current, rejected and behind instances, and its exit code."""

from __future__ import annotations

import argparse
import io
import sys

from twisted.trial import unittest

from clbproxy.ops import fleet_tools
from clbproxy.ops.fleet_tools import instance_state, status_line

CURRENT = {"instance": "a", "applied_revision": 9, "source": "etcd", "connected": True}
REJECTED = {
    "instance": "b",
    "applied_revision": 8,
    "rejected_revision": 9,
    "rejected_reason": "etcd:/clbproxy/prod/config@9: listener[0].bind: binds are local",
    "source": "etcd",
    "connected": True,
}
BEHIND = {"instance": "c", "applied_revision": 8, "source": "cache", "connected": False}


class StatusTests(unittest.TestCase):
    def run_status(self, instances: list[dict], wait: float = 0.0) -> tuple[int, str, str]:
        self.patch(fleet_tools, "read_status", lambda client, keys: (9, instances))
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        options = argparse.Namespace(
            cluster="prod",
            etcd=["http://127.0.0.1:1"],
            user=None,
            password_file=None,
            ca_file=None,
            cert_file=None,
            key_file=None,
            wait=wait,
            json=False,
        )
        sleeps = []
        code = fleet_tools._status(options, clock=lambda: len(sleeps), sleep=sleeps.append)
        self.sleeps = sleeps
        return code, out.getvalue(), err.getvalue()

    def test_an_instance_that_refused_the_newest_revision_is_rejected_not_behind(self):
        self.assertEqual(instance_state(REJECTED, 9), "rejected")
        self.assertEqual(instance_state(BEHIND, 9), "behind")
        self.assertEqual(instance_state(CURRENT, 9), "current")

    def test_a_rejected_instance_is_named_with_the_revision_and_reason(self):
        self.assertEqual(
            status_line(REJECTED, 9),
            "  b: rejected at 9: etcd:/clbproxy/prod/config@9: listener[0].bind: binds are "
            "local (applied 8 serves), source etcd, connected",
        )

    def test_rejected_and_behind_instances_are_listed_apart_and_exit_1(self):
        code, out, err = self.run_status([CURRENT, REJECTED, BEHIND])
        self.assertEqual(code, 1)
        self.assertIn("  a: applied 9 (current)", out)
        self.assertIn("  c: applied 8 (behind), source cache, not connected", out)
        self.assertEqual(err, "rejected at revision 9: b\nbehind at revision 9: c\n")

    def test_a_rejection_is_not_waited_for(self):
        code, _, err = self.run_status([CURRENT, REJECTED], wait=5.0)
        self.assertEqual(code, 1)
        self.assertEqual(self.sleeps, [])
        self.assertEqual(err, "rejected at revision 9: b\n")

    def test_every_instance_current_exits_0(self):
        code, out, err = self.run_status([CURRENT])
        self.assertEqual((code, err), (0, ""))
