"""``[fleet]``'s etcd credentials and TLS files: which go together, and with what endpoints."""

from __future__ import annotations

import os

from twisted.trial import unittest

from clbproxy.config import ConfigError
from clbproxy.config.fleet import read_local

LOCAL = """
[fleet]
cluster = "prod"
instance = "node-1"
endpoints = [{endpoints}]
cache_dir = "cache"
{extra}
  [fleet.binds]
  web = "tcp:8080:interface=127.0.0.1"
"""


class AccessKeyTests(unittest.TestCase):
    def read(self, extra: str, endpoints: str = '"https://etcd-1:2379"'):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "tap.conf")
        with open(path, "w") as f:
            f.write(LOCAL.format(extra=extra, endpoints=endpoints))
        return directory, path

    def problems(self, extra: str, endpoints: str = '"https://etcd-1:2379"') -> list[str]:
        _, path = self.read(extra, endpoints)
        with self.assertRaises(ConfigError) as caught:
            read_local(path)
        return caught.exception.problems

    def test_credentials_and_tls_files_are_read_relative_to_the_file(self):
        directory, path = self.read(
            'username = "clb"\npassword_file = "etcd.pass"\nca_file = "ca.pem"\n'
            'cert_file = "me.pem"\nkey_file = "me.key"'
        )
        fleet = read_local(path).fleet
        self.assertEqual(fleet.username, "clb")
        self.assertEqual(fleet.password_file, os.path.join(directory, "etcd.pass"))
        self.assertEqual(fleet.ca_file, os.path.join(directory, "ca.pem"))
        self.assertEqual(fleet.cert_file, os.path.join(directory, "me.pem"))
        self.assertEqual(fleet.key_file, os.path.join(directory, "me.key"))

    def test_a_user_without_a_password_file_is_refused(self):
        [problem] = self.problems('username = "clb"')
        self.assertIn("fleet.password_file: username and password_file go together", problem)

    def test_a_certificate_without_its_key_is_refused(self):
        [problem] = self.problems('cert_file = "me.pem"')
        self.assertIn("fleet.key_file: cert_file and key_file go together", problem)

    def test_tls_files_with_only_http_endpoints_are_refused(self):
        [problem] = self.problems('ca_file = "ca.pem"', endpoints='"http://etcd-1:2379"')
        self.assertIn("fleet.ca_file: is for https:// endpoints; none is", problem)

    def test_a_password_in_the_file_itself_is_an_unknown_key(self):
        problems = self.problems('username = "clb"\npassword_file = "p"\npassword = "x"')
        self.assertTrue(any("unknown key 'password'" in p for p in problems), problems)
