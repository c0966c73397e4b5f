"""A fleet instance's local file, and etcd's document merged with it."""

from __future__ import annotations

import os

from twisted.trial import unittest

from clbproxy.cli import main
from clbproxy.config import ConfigError
from clbproxy.config.fleet import has_fleet, merge, read_local

LOCAL = """
workers = 1
[fleet]
cluster = "prod"
instance = "node-2"
endpoints = ["http://127.0.0.1:2379"]
cache_dir = "cache"
  [fleet.binds]
  web = "tcp:8080:interface=127.0.0.1"
[admin]
bind = "tcp:9000:interface=127.0.0.1"
"""

DOCUMENT = """
[[listener]]
name = "web"
  [[listener.rule]]
  target_group = "pool"
[[listener]]
name = "intranet"
  [[listener.rule]]
  target_group = "pool"
[target_group.pool]
backends = ["127.0.0.1:9001"]
persistence = { type = "cookie" }
"""

SOURCE = "etcd:/clbproxy/prod/config@42"


class LocalFileTests(unittest.TestCase):
    def write(self, text: str) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "tap.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def problems(self, text: str) -> list[str]:
        with self.assertRaises(ConfigError) as caught:
            read_local(self.write(text))
        return caught.exception.problems

    def test_the_fleet_table_is_read_with_paths_from_the_files_directory(self):
        path = self.write(LOCAL)
        local = read_local(path)
        self.assertTrue(has_fleet(path))
        self.assertEqual(local.fleet.cluster, "prod")
        self.assertEqual(local.fleet.instance, "node-2")
        self.assertEqual(
            local.fleet.cache_dir, os.path.join(os.path.dirname(os.path.abspath(path)), "cache")
        )
        self.assertEqual(local.fleet.binds, (("web", "tcp:8080:interface=127.0.0.1"),))
        self.assertEqual(local.fleet.startup_timeout, 10.0)

    def test_the_instance_name_defaults_to_the_host_name(self):
        local = read_local(self.write(LOCAL.replace('instance = "node-2"\n', "")))
        self.assertTrue(local.fleet.instance)

    def test_a_local_file_with_fleet_and_rules_or_groups_is_refused(self):
        problems = self.problems(LOCAL + DOCUMENT)
        self.assertEqual(len(problems), 2)
        self.assertTrue(
            problems[0].endswith(
                "tap.conf: listener: comes from etcd in fleet mode: "
                "a file with [fleet] holds only fleet, admin, "
                "access_log, workers, max_connections, demo_backend"
            )
        )
        self.assertIn(": target_group: comes from etcd", problems[1])

    def test_missing_keys_and_bad_endpoints_are_named_by_key_path(self):
        problems = self.problems('[fleet]\nendpoints = ["etcd-1:2379"]\n')
        self.assertTrue(
            any(
                "fleet.endpoints[0]: 'etcd-1:2379' is not an etcd client URL" in p for p in problems
            )
        )
        self.assertTrue(any("fleet: missing required key 'cluster'" in p for p in problems))
        self.assertTrue(any("fleet: missing required key 'cache_dir'" in p for p in problems))

    def test_a_bad_bind_is_named_by_listener(self):
        problems = self.problems(LOCAL.replace('web = "tcp:8080', 'web = "carrier-pigeon:8080'))
        self.assertIn("fleet.binds.web:", problems[0])

    def test_an_unknown_fleet_key_suggests_the_right_one(self):
        problems = self.problems(LOCAL.replace("cache_dir", "cachedir"))
        self.assertTrue(
            any("unknown key 'cachedir' (did you mean 'cache_dir'?)" in p for p in problems)
        )

    def test_a_file_without_fleet_is_not_a_fleet_file(self):
        self.assertFalse(has_fleet(self.write("workers = 2\n")))


class MergeTests(unittest.TestCase):
    def setUp(self):
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "tap.conf")
        with open(self.path, "w") as f:
            f.write(LOCAL)
        self.local = read_local(self.path)

    def problems(self, document: str) -> list[str]:
        with self.assertRaises(ConfigError) as caught:
            merge(self.local, document, SOURCE)
        return caught.exception.problems

    def test_listeners_get_their_local_bind_and_the_others_are_not_served(self):
        merged = merge(self.local, DOCUMENT, SOURCE)
        self.assertEqual([served.name for served in merged.config.listeners], ["web"])
        self.assertEqual(merged.config.listeners[0].bind, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(merged.unserved, ("intranet",))
        self.assertEqual(merged.config.admin.bind, "tcp:9000:interface=127.0.0.1")
        self.assertEqual(merged.config.path, SOURCE)

    def test_problems_name_the_etcd_key_its_revision_and_the_key_path(self):
        problems = self.problems(
            DOCUMENT.replace("[target_group.pool]", '[target_group.pool]\npolicy = "lotto"')
        )
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith(f"{SOURCE}: target_group.pool.policy: "))

    def test_a_syntax_error_names_the_source(self):
        self.assertTrue(self.problems("[[listener]\n")[0].startswith(SOURCE))

    def test_local_keys_and_binds_in_the_document_are_refused(self):
        problems = self.problems(
            "workers = 4\n" + DOCUMENT.replace('name = "web"', 'name = "web"\nbind = "tcp:80"')
        )
        self.assertIn(f"{SOURCE}: workers: is local to each instance", problems[0])
        self.assertIn(f"{SOURCE}: listener[0].bind: binds are local", problems[1])

    def test_a_document_with_no_listener_bound_here_is_refused(self):
        problems = self.problems(DOCUMENT.replace('"web"', '"other"'))
        self.assertIn("no listener of the document has a bind in [fleet.binds]", problems[0])

    def test_certificate_paths_are_taken_from_the_local_files_directory(self):
        document = DOCUMENT.replace(
            '[[listener]]\nname = "web"',
            '[[listener]]\nname = "web"\nprotocol = "https"\n'
            'tls = { certificates = [{ cert = "web.pem", key = "web.key" }] }',
            1,
        )
        merged = merge(self.local, document, SOURCE)
        certificate = merged.config.listeners[0].tls.certificates[0]
        self.assertEqual(
            certificate.cert, os.path.join(os.path.dirname(os.path.abspath(self.path)), "web.pem")
        )

    def test_cookie_persistence_gets_the_fleets_secrets(self):
        merged = merge(self.local, DOCUMENT, SOURCE, "n" * 32, "o" * 32)
        persistence = merged.config.target_groups[0].persistence
        self.assertEqual(persistence.secret, "n" * 32)
        self.assertEqual(persistence.previous_secret, "o" * 32)

    def test_a_groups_own_secret_is_kept(self):
        document = DOCUMENT.replace(
            '{ type = "cookie" }', '{ type = "cookie", secret = "own-secret-of-the-group" }'
        )
        merged = merge(self.local, document, SOURCE, "n" * 32)
        self.assertEqual(
            merged.config.target_groups[0].persistence.secret, "own-secret-of-the-group"
        )


class CheckCommandTests(unittest.TestCase):
    def test_clbproxy_check_checks_the_local_part_of_a_fleet_file(self):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "tap.conf")
        with open(path, "w") as f:
            f.write(LOCAL)
        self.assertEqual(main(["check", "--config", path]), 0)
        with open(path, "w") as f:
            f.write(LOCAL + DOCUMENT)
        self.assertEqual(main(["check", "--config", path]), 1)
