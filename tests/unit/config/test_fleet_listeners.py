"""``[fleet.listeners.NAME]``: a shared listener's bind, access log and TLS state stay local."""

from __future__ import annotations

import os

from twisted.trial import unittest

from clbproxy.config import ConfigError
from clbproxy.config.fleet import merge, read_local

LOCAL = """
[fleet]
cluster = "prod"
instance = "node-1"
endpoints = ["http://127.0.0.1:2379"]
cache_dir = "cache"
{extra}
"""

DOCUMENT = """
[[listener]]
name = "web"
{web}
  [[listener.rule]]
  fixed_response = {{ status = 200 }}
[[listener]]
name = "secure"
protocol = "https"
tls = {{ self_signed = true {tls} }}
  [[listener.rule]]
  fixed_response = {{ status = 200 }}
"""

SOURCE = "etcd:/clbproxy/prod/config@42"


class LocalListenerKeyTests(unittest.TestCase):
    def local(self, extra: str):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        path = os.path.join(self.directory, "tap.conf")
        with open(path, "w") as f:
            f.write(LOCAL.format(extra=extra))
        return path

    def merged(self, extra: str, web: str = "", tls: str = ""):
        local = read_local(self.local(extra))
        return merge(local, DOCUMENT.format(web=web, tls=tls), SOURCE)

    def refused(self, extra: str, web: str = "", tls: str = "") -> list[str]:
        with self.assertRaises(ConfigError) as caught:
            self.merged(extra, web, tls)
        return caught.exception.problems

    def test_the_bind_access_log_and_tls_state_directory_come_from_the_local_table(self):
        merged = self.merged(
            '[fleet.listeners.web]\nbind = "tcp:8080"\n'
            'access_log = { path = "logs/web.log" }\n'
            '[fleet.listeners.secure]\nbind = "tcp:8443"\nstate_directory = "/var/lib/clb/tls"'
        )
        web, secure = merged.config.listeners
        self.assertEqual(web.bind, "tcp:8080")
        self.assertEqual(web.access_log.path, "logs/web.log")
        self.assertEqual(secure.bind, "tcp:8443")
        self.assertEqual(secure.tls.state_directory, "/var/lib/clb/tls")
        self.assertEqual(merged.unserved, ())

    def test_fleet_binds_stays_the_short_form_next_to_the_tables(self):
        merged = self.merged(
            '[fleet.binds]\nweb = "tcp:8080"\n'
            '[fleet.listeners.secure]\nbind = "tcp:8443"\n'
            '[fleet.listeners.web]\naccess_log = { path = "-" }'
        )
        web, secure = merged.config.listeners
        self.assertEqual(
            (web.bind, web.access_log.path, secure.bind), ("tcp:8080", "-", "tcp:8443")
        )

    def test_a_local_table_without_a_bind_leaves_the_listener_unserved(self):
        merged = self.merged(
            '[fleet.binds]\nweb = "tcp:8080"\n[fleet.listeners.secure]\nstate_directory = "s"'
        )
        self.assertEqual([listener.name for listener in merged.config.listeners], ["web"])
        self.assertEqual(merged.unserved, ("secure",))

    def test_a_document_that_sets_a_listeners_access_log_is_refused(self):
        [problem] = self.refused(
            '[fleet.binds]\nweb = "tcp:8080"\nsecure = "tcp:8443"',
            web='access_log = { path = "/tmp/shared.log" }',
        )
        self.assertEqual(
            problem,
            f"{SOURCE}: listener[0].access_log: is local to each instance: set it in "
            f"[fleet.listeners.web] of {self.directory}/tap.conf",
        )

    def test_a_document_that_sets_a_tls_state_directory_is_refused(self):
        [problem] = self.refused(
            '[fleet.binds]\nweb = "tcp:8080"\nsecure = "tcp:8443"', tls=', state_directory = "x"'
        )
        self.assertIn("listener[1].tls.state_directory: is local to each instance", problem)
        self.assertIn("[fleet.listeners.secure]", problem)

    def test_a_bind_in_both_forms_is_refused_in_the_local_file(self):
        path = self.local('[fleet.binds]\nweb = "tcp:8080"\n[fleet.listeners.web]\nbind = "tcp:81"')
        with self.assertRaises(ConfigError) as caught:
            read_local(path)
        [problem] = caught.exception.problems
        self.assertIn("fleet.listeners.web.bind: set twice: also in [fleet.binds]", problem)

    def test_an_unknown_key_of_a_local_listener_table_is_refused(self):
        path = self.local('[fleet.listeners.web]\nbind = "tcp:8080"\nrule = []')
        with self.assertRaises(ConfigError) as caught:
            read_local(path)
        self.assertTrue(
            any("fleet.listeners.web" in p and "'rule'" in p for p in caught.exception.problems),
            caught.exception.problems,
        )
