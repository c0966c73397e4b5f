"""The cache of the last good document: private, atomic, and read back as written."""

from __future__ import annotations

import os
import stat

from twisted.trial import unittest

from clbproxy.fleet.cache import Snapshot, read_snapshot, write_snapshot
from clbproxy.fleet.messages import FleetKeys, KeyValue

KEYS = FleetKeys("prod")


class CacheTests(unittest.TestCase):
    def test_a_snapshot_is_written_mode_0600_and_read_back(self):
        path = os.path.join(self.mktemp(), "prod.json")
        snapshot = Snapshot("[[listener]]\n", 42, "secret-1", "secret-0")
        write_snapshot(path, snapshot)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(read_snapshot(path), snapshot)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["prod.json"])

    def test_no_cache_is_none_and_a_broken_one_is_an_error(self):
        directory = self.mktemp()
        os.makedirs(directory)
        self.assertIsNone(read_snapshot(os.path.join(directory, "none.json")))
        broken = os.path.join(directory, "broken.json")
        with open(broken, "w") as f:
            f.write("{}")
        self.assertRaises(ValueError, read_snapshot, broken)

    def test_the_digest_follows_content_not_revision(self):
        self.assertEqual(Snapshot("a", 1).digest, Snapshot("a", 2).digest)
        self.assertNotEqual(Snapshot("a", 1).digest, Snapshot("a", 1, "s").digest)

    def test_an_event_on_another_key_changes_nothing(self):
        kv = KeyValue(key=KEYS.instance("x"), value=b"{}", mod_revision=9)
        self.assertEqual(Snapshot("a", 1).updated(KEYS, kv), Snapshot("a", 1))
