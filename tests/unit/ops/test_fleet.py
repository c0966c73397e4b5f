"""A fleet instance's start when etcd cannot be reached: the cache, or one line and exit 1."""

from __future__ import annotations

import os

from twisted.trial import unittest

from clbproxy.fleet.cache import Snapshot, write_snapshot
from clbproxy.ops.fleet import start_fleet
from tests.support.etcd import free_ports

LOCAL = """
[fleet]
cluster = "prod"
instance = "node-1"
endpoints = ["http://127.0.0.1:{port}"]
cache_dir = "cache"
startup_timeout = 1
  [fleet.binds]
  web = "tcp:0:interface=127.0.0.1"
"""

DOCUMENT = """
[[listener]]
name = "web"
  [[listener.rule]]
  fixed_response = { status = 200, body = "cached" }
"""


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class StartWithoutEtcdTests(unittest.TestCase):
    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "tap.conf")
        [port] = free_ports(1)  # nobody listens there
        with open(self.path, "w") as f:
            f.write(LOCAL.format(port=port))
        self.time = FakeTime()

    def start(self):
        return start_fleet(self.path, clock=self.time.clock, sleep=self.time.sleep)

    def test_without_a_cache_the_start_ends_with_one_line(self):
        with self.assertRaises(SystemExit) as caught:
            self.start()
        message = caught.exception.code
        self.assertIsInstance(message, str)
        self.assertNotIn("\n", message)
        self.assertIn("etcd did not answer within 1 s", message)
        self.assertIn(os.path.join(self.directory, "cache", "prod.json"), message)
        self.assertEqual(self.time.slept, [0.5, 0.5])

    def test_with_a_cache_it_starts_from_it(self):
        snapshot = Snapshot(DOCUMENT, 17, "a cookie secret of the fleet")
        write_snapshot(os.path.join(self.directory, "cache", "prod.json"), snapshot)
        started = self.start()
        self.assertEqual(started.status.source, "cache")
        self.assertEqual(started.snapshot, snapshot)
        self.assertEqual(started.merged.config.listeners[0].rules[0].fixed_response.body, "cached")
        self.assertEqual(started.merged.config.path, "etcd:/clbproxy/prod/config@17")
