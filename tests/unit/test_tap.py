"""``twistd clbproxy``: options, check mode, the service tree and start-up errors."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import (
    AccessLogConfig,
    BackendConfig,
    Config,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
    TLSConfig,
    load_config,
)
from clbproxy.net import descriptors
from clbproxy.ops.services import build_service
from clbproxy.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, "tap.conf")


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


class DescriptorBudgetTests(unittest.TestCase):
    """A max_connections the descriptor limit cannot hold is warned about, not refused."""

    def setUp(self):
        self.patch(descriptors, "process_descriptor_limit", lambda: 64)
        with open(SHIPPED) as shipped:
            text = shipped.read()
        self.path = self.mktemp()
        with open(self.path, "w") as f:
            f.write("max_connections = 1000\n" + text)

    def test_check_mode_warns_naming_the_key_and_both_numbers(self):
        code, out, err = parse("--config", self.path, "--check")
        self.assertEqual((code, out), (0, f"{self.path}: ok\n"))
        self.assertIn(
            f"warning: {self.path}: max_connections = 1000 is more than the descriptor budget "
            "of 16 connections per process (RLIMIT_NOFILE 64, 32 reserved, 2 per connection)",
            err,
        )

    def test_start_logs_the_warning_and_the_budget_in_force(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        build_service(load_config(self.path), MemoryReactorClock())
        text = "\n".join(formatEvent(event) for event in events)
        self.assertIn("config: " + self.path + ": max_connections = 1000 is more than", text)
        self.assertIn(
            "descriptor budget: 16 connections (RLIMIT_NOFILE 64); accepting pauses at 16", text
        )

    def test_a_max_connections_within_the_budget_gets_no_warning(self):
        self.patch(descriptors, "process_descriptor_limit", lambda: 4096)
        code, _, err = parse("--config", self.path, "--check")
        self.assertEqual((code, err), (0, ""))


class ServiceTreeTests(unittest.TestCase):
    def test_shipped_config_builds_demo_backends_observability_listener_and_admin(self):
        root = build_service(load_config(SHIPPED), MemoryReactorClock())
        self.assertEqual(
            [service.name for service in root],
            [
                "demo:demo-a",
                "demo:demo-b",
                "observability",
                "listener:web",
                "listener:web-tls",
                "admin",
            ],
        )


def file_in_the_way(testcase: unittest.TestCase) -> str:
    """A path that is a file, so nothing can be created below it (as if a directory)."""
    blocker = testcase.mktemp()
    with open(blocker, "w") as stream:
        stream.write("a file, not a directory")
    return blocker


def one_listener(name: str, workers: int = 1, **listener_fields) -> Config:
    """A tap.conf with one listener (``listener_fields`` added) sending to one backend."""
    listener = ListenerConfig(
        name=name, bind="tcp:0", rules=(RuleConfig(target_group="g"),), **listener_fields
    )
    group = TargetGroupConfig(name="g", backends=(BackendConfig("127.0.0.1", 1),))
    return Config(path="tap.conf", listeners=(listener,), target_groups=(group,), workers=workers)


class TLSStartTests(unittest.TestCase):
    def test_unwritable_state_directory_stops_start_up_with_one_line(self):
        blocker = file_in_the_way(self)
        config = one_listener(
            "secure",
            protocol="https",
            tls=TLSConfig(self_signed=True, state_directory=os.path.join(blocker, "state")),
        )
        with self.assertRaises(SystemExit) as raised:
            build_service(config, MemoryReactorClock())
        self.assertTrue(str(raised.exception.code).startswith("clbproxy: listener:secure: "))


class AccessLogStartTests(unittest.TestCase):
    """An access log file that cannot be opened stops start-up with one line naming its key."""

    def config(self) -> tuple[Config, str]:
        blocker = file_in_the_way(self)
        access_log = AccessLogConfig(path=os.path.join(blocker, "access.log"))
        return one_listener("web", workers=2, access_log=access_log), blocker

    def test_one_process(self):
        config, blocker = self.config()
        with self.assertRaises(SystemExit) as raised:
            build_service(config, MemoryReactorClock())
        self.assertEqual(
            raised.exception.code,
            f"tap.conf: listener[0].access_log.path: cannot open {blocker}/access.log: "
            "Not a directory",
        )

    def test_the_supervisor_checks_before_starting_workers(self):
        from clbproxy.ops.supervisor import build_supervisor

        config, blocker = self.config()
        with self.assertRaises(SystemExit) as raised:
            build_supervisor(config, MemoryReactorClock(), signals=False)
        self.assertEqual(
            raised.exception.code,
            f"tap.conf: listener[0].access_log.path: cannot open {blocker}/access.log: "
            "Not a directory",
        )
