"""Tests for :mod:`clbproxy.cli`: the ``clbproxy`` console script."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.trial import unittest

from clbproxy import cli
from clbproxy.config import default_config_path

VALID = """
[[listener]]
name = "web"
bind = "tcp:8080"
  [[listener.rule]]
  target_group = "demo"

[target_group.demo]
backends = ["127.0.0.1:8181"]
"""

BROKEN = """
[[listener]]
name = "web"
bind = "ssl:443"
  [[listener.rule]]
  target_group = "api"

[target_group.demo]
backends = ["127.0.0.1:70000"]
"""

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CheckTests(unittest.TestCase):
    def setUp(self) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as stream:
            stream.write(text)
        return path

    def test_valid_config_prints_ok_and_exits_0(self) -> None:
        path = self.write(VALID)
        self.assertEqual(cli.main(["check", "--config", path]), 0)
        self.assertEqual(self.stdout.getvalue(), f"{path}: ok\n")
        self.assertEqual(self.stderr.getvalue(), "")

    def test_broken_config_prints_each_problem_and_exits_1(self) -> None:
        path = self.write(BROKEN)
        self.assertEqual(cli.main(["check", "--config", path]), 1)
        self.assertEqual(self.stdout.getvalue(), "")
        self.assertEqual(
            self.stderr.getvalue().splitlines(),
            [
                f"{path}: listener[0].bind: 'ssl:443' is not allowed: TLS comes from the "
                'listener\'s own settings (protocol = "https"); use a tcp:, tcp6:, unix:, '
                "systemd: or haproxy: endpoint",
                f"{path}: listener[0].rule[0].target_group: unknown target group 'api' "
                "(defined: demo)",
                f"{path}: target_group.demo.backends[0]: port 70000 out of range 1-65535",
            ],
        )

    def test_admin_on_every_interface_is_a_warning_and_the_file_is_ok(self) -> None:
        path = self.write(VALID + '[admin]\nbind = "tcp:9090"\n')
        self.assertEqual(cli.main(["check", "--config", path]), 0)
        self.assertEqual(self.stdout.getvalue(), f"{path}: ok\n")
        self.assertEqual(
            self.stderr.getvalue(),
            f"warning: {path}: admin.bind: 'tcp:9090' listens on every interface: whoever "
            "reaches it can read the status and drain, disable or reweight backends; bind "
            "127.0.0.1 or a management address (and consider admin.token_file)\n",
        )

    def test_trusting_every_address_is_a_warning_per_range(self) -> None:
        text = VALID.replace(
            'bind = "tcp:8080"', 'bind = "tcp:8080"\ntrusted_proxies = ["0.0.0.0/0", "::/0"]'
        )
        path = self.write(text)
        self.assertEqual(cli.main(["check", "--config", path]), 0)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(
            [line.split(" trusts ")[0] for line in lines],
            [
                f"warning: {path}: listener[0].trusted_proxies: listener 'web': 0.0.0.0/0",
                f"warning: {path}: listener[0].trusted_proxies: listener 'web': ::/0",
            ],
        )

    def test_weak_ciphers_are_an_error_naming_listener_and_key(self) -> None:
        state = os.path.abspath(self.mktemp())
        text = VALID.replace(
            'bind = "tcp:8080"',
            'bind = "tcp:8443"\nprotocol = "https"\n'
            f'tls = {{ self_signed = true, state_directory = "{state}", '
            'ciphers = "ALL:eNULL:@SECLEVEL=0" }',
        )
        path = self.write(text)
        self.assertEqual(cli.main(["check", "--config", path]), 1)
        self.assertEqual(self.stdout.getvalue(), "")
        (line,) = self.stderr.getvalue().splitlines()
        self.assertTrue(
            line.startswith(
                f"{path}: listener[0].tls.ciphers: listener 'web': 'ALL:eNULL:@SECLEVEL=0' "
                "is unsafe: it enables eNULL ("
            ),
            line,
        )

    def test_missing_config_file_exits_1(self) -> None:
        path = self.mktemp()
        self.assertEqual(cli.main(["check", "--config", path]), 1)
        self.assertEqual(
            self.stderr.getvalue(), f"{path}: cannot read: No such file or directory\n"
        )

    def test_check_without_config_uses_the_default_path(self) -> None:
        self.assertEqual(cli.main(["check"]), 0)
        self.assertEqual(self.stdout.getvalue(), f"{default_config_path()}: ok\n")

    def test_no_command_prints_usage_and_exits_2(self) -> None:
        self.assertEqual(cli.main([]), 2)
        self.assertIn("usage: clbproxy", self.stderr.getvalue())
        self.assertIn("check", self.stderr.getvalue())

    def test_help_prints_usage_and_exits_0(self) -> None:
        self.assertEqual(cli.main(["--help"]), 0)
        self.assertIn("usage: clbproxy", self.stdout.getvalue())

    def test_unknown_command_exits_2(self) -> None:
        self.assertEqual(cli.main(["run"]), 2)
        self.assertIn("invalid choice", self.stderr.getvalue())


class ScriptTests(unittest.TestCase):
    def test_broken_config_exits_1_without_traceback(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as stream:
            stream.write("[[listener]]\nname = 'web'\nbind = tcp:8080\n")
        environment = dict(os.environ, PYTHONPATH=REPOSITORY)
        result = subprocess.run(
            [sys.executable, "-m", "clbproxy.cli", "check", "--config", path],
            capture_output=True,
            text=True,
            env=environment,
            timeout=30,
        )
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (1, "", f"{path}: line 3, column 8: Invalid value\n"),
        )
