"""``twistd clbproxy``: options, check mode, the service tree and start-up errors."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import load_config
from clbproxy.tap import Options, build_service

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "tap.conf")

TWISTD = "from twisted.scripts.twistd import run; run()"

BROKEN = """
[[listener]]
name = "web"
bnd = "tcp:8080"
  [[listener.rule]]
  target_group = "api"
[target_group.demo]
backends = ["127.0.0.1:70000"]
"""


def parse(*argv):
    """Run Options on argv; returns (exit code or None, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            Options().parseOptions(list(argv))
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


class OptionsTests(unittest.TestCase):
    def broken_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(BROKEN)
        return path

    def test_check_mode_prints_ok(self):
        code, out, _ = parse("--config", SHIPPED, "--check")
        self.assertEqual(code, 0)
        self.assertEqual(out, f"{SHIPPED}: ok\n")

    def test_broken_config_prints_one_line_per_problem_and_exits_1(self):
        path = self.broken_file()
        code, out, err = parse("--config", path, "--check")
        self.assertEqual(code, 1)
        lines = err.splitlines()
        self.assertEqual(len(lines), 4, err)
        for line in lines:
            self.assertTrue(line.startswith(f"{path}: "), line)
        self.assertIn("unknown key 'bnd' (did you mean 'bind'?)", err)
        self.assertNotIn("Usage", err + out)

    def test_broken_config_stops_a_normal_start_too(self):
        code, _, err = parse("--config", self.broken_file())
        self.assertEqual(code, 1)
        self.assertIn("listener[0].rule[0].target_group: unknown target group 'api'", err)


class ServiceTreeTests(unittest.TestCase):
    def test_shipped_config_builds_demo_backends_and_the_listener(self):
        root = build_service(load_config(SHIPPED), MemoryReactorClock())
        self.assertEqual(
            [service.name for service in root],
            ["demo:demo-a", "demo:demo-b", "listener:web"],
        )


class TwistdTests(unittest.TestCase):
    """The real command line, as a user runs it."""

    def run_twistd(self, *args):
        return subprocess.run(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "clbproxy", *args],
            cwd=self.mktemp_dir(),
            capture_output=True,
            text=True,
            timeout=30,
        )

    def mktemp_dir(self):
        path = self.mktemp()
        os.makedirs(path)
        return path

    def test_bad_config_is_one_line_per_problem_without_traceback(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(BROKEN)
        result = self.run_twistd("--config", path)
        self.assertEqual(result.returncode, 1)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        self.assertEqual(len(result.stderr.strip().splitlines()), 4, result.stderr)

    def test_port_in_use_is_one_line_and_exit_1(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(
                f'[[listener]]\nname = "web"\nbind = "tcp:{port}:interface=127.0.0.1"\n'
                '[[listener.rule]]\ntarget_group = "g"\n'
                '[target_group.g]\nbackends = ["127.0.0.1:9"]\n'
            )
        result = self.run_twistd("--config", path)
        self.assertEqual(result.returncode, 1)
        output = result.stdout + result.stderr
        self.assertNotIn("Traceback", output)
        self.assertIn(
            f"clbproxy: listener:web: cannot listen on 127.0.0.1:{port}: Address already in use",
            output,
        )
