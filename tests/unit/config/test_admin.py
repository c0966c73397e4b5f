"""``[admin]`` and ``[access_log]`` tables."""

from __future__ import annotations

import os

from twisted.trial import unittest

from clbproxy.config import (
    AccessLogConfig,
    AdminConfig,
    load_config,
)
from tests.unit.config.loading import TLS_REFUSED, LoaderMixin, document


class ObservabilityConfigTests(LoaderMixin, unittest.TestCase):
    def test_access_log_and_admin_load_with_defaults(self) -> None:
        config = self.load(
            document(listener={"access_log": '{ path = "-", format = "json" }'})
            + '[access_log]\npath = "/var/log/clb.log"\n[admin]\n'
        )
        self.assertEqual(config.access_log, AccessLogConfig(path="/var/log/clb.log"))
        self.assertEqual(config.listeners[0].access_log, AccessLogConfig("-", "json"))
        self.assertEqual(config.admin, AdminConfig("tcp:9090:interface=127.0.0.1", "/metrics"))

    def test_without_tables_there_is_no_access_log_nor_admin(self) -> None:
        config = self.load(document())
        self.assertIsNone(config.access_log)
        self.assertIsNone(config.admin)

    def test_observability_problems(self) -> None:
        cases = {
            "no path": (
                "[access_log]\n",
                "access_log: missing required key 'path' (a file, or \"-\" for stdout)",
            ),
            "empty path": (
                '[access_log]\npath = ""\n',
                'access_log.path: must not be empty; use "-" for stdout',
            ),
            "format": (
                '[access_log]\npath = "-"\nformat = "xml"\n',
                "access_log.format: unknown format 'xml'; must be one of: 'plain', 'json'",
            ),
            "unknown key": (
                '[admin]\nbnd = "tcp:1"\n',
                "admin: unknown key 'bnd' (did you mean 'bind'?)",
            ),
            "bind": ('[admin]\nbind = "ssl:443"\n', "admin.bind: 'ssl:443' " + TLS_REFUSED),
            "metrics path": (
                '[admin]\nmetrics_path = "/api/m"\n',
                "admin.metrics_path: '/api/m' must be a path like '/metrics' "
                "(not '/' or under '/api/', no query or spaces)",
            ),
            "same bind": (
                '[admin]\nbind = "tcp:8080"\n',
                "admin.bind: duplicate bind string 'tcp:8080' (also listener[0])",
            ),
        }
        found = self.problem_table({name: document() + text for name, (text, _) in cases.items()})
        self.assertEqual(
            {name: lines for name, lines in found.items()},
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )

    def test_listener_access_log_problems_name_the_listener(self) -> None:
        problems = self.problems(document(listener={"access_log": '"stdout"'}))
        self.assertEqual(
            problems, ["tap.conf: listener[0].access_log: expected a table, got a string"]
        )

    def test_admin_that_is_not_a_table(self) -> None:
        problems = self.problems('admin = "on"\n' + document())
        self.assertEqual(problems, ["tap.conf: admin: expected a table, got a string"])


class AdminAccessConfigTests(LoaderMixin, unittest.TestCase):
    """``[admin] allowed_hosts`` and ``token_file``: who may use the admin listener."""

    def token_file(self, content: bytes) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as stream:
            stream.write(content)
        return path

    def test_allowed_hosts_are_kept_lower_case_without_a_final_dot(self) -> None:
        config = self.load(
            document() + '[admin]\nallowed_hosts = ["Admin.Example.NET", "lb-1.internal."]\n'
        )
        self.assertEqual(config.admin.allowed_hosts, ("admin.example.net", "lb-1.internal"))

    def test_the_token_is_read_from_token_file_without_surrounding_whitespace(self) -> None:
        path = self.token_file(b"  0123abcdef-._~+/==\n")
        config = self.load(document() + f'[admin]\ntoken_file = "{path}"\n')
        self.assertEqual(config.admin.token_file, path)
        self.assertEqual(config.admin.token, "0123abcdef-._~+/==")

    def test_a_relative_token_file_is_relative_to_the_config_file(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "admin.token"), "w") as stream:
            stream.write("t0ken\n")
        config_path = os.path.join(directory, "tap.conf")
        with open(config_path, "w") as stream:
            stream.write(document() + '[admin]\ntoken_file = "admin.token"\n')
        self.assertEqual(load_config(config_path).admin.token, "t0ken")

    def test_the_token_is_not_shown_in_the_config_repr(self) -> None:
        path = self.token_file(b"very-secret\n")
        config = self.load(document() + f'[admin]\ntoken_file = "{path}"\n')
        self.assertNotIn("very-secret", repr(config))
        self.assertIn(path, repr(config))

    def test_without_token_file_there_is_no_token(self) -> None:
        self.assertIsNone(self.load(document() + "[admin]\n").admin.token)

    def test_admin_access_problems_name_the_key(self) -> None:
        missing = os.path.abspath(os.path.join(self.mktemp(), "none"))
        empty = self.token_file(b"")
        blank = self.token_file(b" \n\n")
        two = self.token_file(b"one two\n")
        binary = self.token_file(b"t\xc3\xb6ken")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cases = {
            "host with port": (
                'allowed_hosts = ["admin.example.net:8443"]',
                "admin.allowed_hosts[0]: 'admin.example.net:8443' is not a host name like "
                "'admin.example.net' (no port, no scheme)",
            ),
            "url": (
                'allowed_hosts = ["https://admin.example.net"]',
                "admin.allowed_hosts[0]: 'https://admin.example.net' is not a host name like "
                "'admin.example.net' (no port, no scheme)",
            ),
            "empty host": (
                'allowed_hosts = [""]',
                "admin.allowed_hosts[0]: '' is not a host name like "
                "'admin.example.net' (no port, no scheme)",
            ),
            "not a list": (
                'allowed_hosts = "admin.example.net"',
                "admin.allowed_hosts: expected an array of strings, got a string",
            ),
            "missing token file": (
                f'token_file = "{missing}"',
                f"admin.token_file: cannot read {missing}: No such file or directory",
            ),
            "a directory": (
                f'token_file = "{directory}"',
                f"admin.token_file: cannot read {directory}: Is a directory",
            ),
            "empty token file": (
                f'token_file = "{empty}"',
                f"admin.token_file: {empty} is empty; put the token on its first line",
            ),
            "blank token file": (
                f'token_file = "{blank}"',
                f"admin.token_file: {blank} is empty; put the token on its first line",
            ),
            "empty token file name": ('token_file = ""', "admin.token_file: must not be empty"),
        }
        for name, path in (("two words", two), ("not ascii", binary)):
            cases[name] = (
                f'token_file = "{path}"',
                f"admin.token_file: {path} must hold one token of at most 4096 letters, digits "
                "and -._~+/ (like the output of 'openssl rand -hex 32')",
            )
        found = self.problem_table(
            {name: document() + f"[admin]\n{text}\n" for name, (text, _) in cases.items()}
        )
        self.assertEqual(found, {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()})

    def test_an_unreadable_token_file_is_a_problem(self) -> None:
        if os.geteuid() == 0:
            raise unittest.SkipTest("root reads any file")
        path = self.token_file(b"t0ken\n")
        os.chmod(path, 0)
        self.assertEqual(
            self.problems(document() + f'[admin]\ntoken_file = "{path}"\n'),
            [f"tap.conf: admin.token_file: cannot read {path}: Permission denied"],
        )
