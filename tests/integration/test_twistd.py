"""``twistd clbproxy`` run as a user runs it: a real process, real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from twisted.trial import unittest

from tests.unit.test_tap import BROKEN

TWISTD = "from twisted.scripts.twistd import run; run()"


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
