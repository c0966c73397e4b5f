"""``twistd -n clbproxy`` as systemd runs it: readiness notification and socket activation.

systemd is not needed: the notification socket is ours (a unix datagram socket
in a temporary directory, named by ``$NOTIFY_SOCKET``), and the listening socket
is handed over by Debian's ``systemd-socket-activate``, which runs without
systemd as PID 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests.integration.test_lifecycle import free_port
from tests.support.network import ROOT, TWISTD, raw_request

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")

TAP = """\
workers = {workers}
drain_timeout = 1
[[listener]]
name = "web"
bind = "{bind}"
  [[listener.rule]]
  path = "= /fixed"
  fixed_response = {{ status = 200, body = "fixed" }}
  [[listener.rule]]
  target_group = "g"
[target_group.g]
backends = ["127.0.0.1:9"]
"""


class NotifySocket:
    """What systemd listens on for ``sd_notify`` messages."""

    def __init__(self, testcase: unittest.TestCase) -> None:
        directory = tempfile.mkdtemp(prefix="clbproxy-notify-")
        testcase.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        testcase.addCleanup(self.sock.close)
        self.messages: list[list[str]] = []

    def read(self) -> list[list[str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode("utf-8").split("\n"))

    def states(self) -> list[str]:
        """The state field of each message so far (``READY=1``, ``RELOADING=1``, ...)."""
        return [message[0] for message in self.read()]


class Process:
    """A command in a child process (stdout and stderr in one file), ended in cleanup."""

    def __init__(self, testcase: unittest.TestCase, workers: int = 1, bind: str = "") -> None:
        self.testcase = testcase
        self.directory = os.path.abspath(testcase.mktemp())
        os.makedirs(self.directory)
        self.config = os.path.join(self.directory, "tap.conf")
        self.port = free_port()
        with open(self.config, "w") as f:
            f.write(
                TAP.format(workers=workers, bind=bind or f"tcp:{self.port}:interface=127.0.0.1")
            )
        self.log_path = os.path.join(self.directory, "out.log")
        self.process = None

    def twistd(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            TWISTD,
            "-n",
            "--pidfile=",
            "clbproxy",
            "--config",
            self.config,
        ]

    def start(self, command: list[str], **env: str) -> None:
        log_file = open(self.log_path, "w")
        self.testcase.addCleanup(log_file.close)
        self.process = subprocess.Popen(
            command,
            cwd=self.directory,
            env={**os.environ, "PYTHONPATH": ROOT, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        self.testcase.addCleanup(self._end)

    def _end(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    @defer.inlineCallbacks
    def wait_for(self, predicate, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.testcase.fail(f"timed out waiting; log:\n{self.log()[-3000:]}")
            yield task.deferLater(reactor, 0.05, lambda: None)


class NotifyTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_ready_once_serving_then_reloading_and_ready_around_a_sighup(self):
        systemd = NotifySocket(self)
        proxy = Process(self)
        proxy.start(proxy.twistd(), NOTIFY_SOCKET=systemd.path)

        yield proxy.wait_for(lambda: systemd.states() == ["READY=1"])
        answer = yield raw_request(
            proxy.port, b"GET /fixed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        self.assertIn(b"200", answer.split(b"\r\n", 1)[0])

        proxy.process.send_signal(signal.SIGHUP)
        yield proxy.wait_for(lambda: len(systemd.states()) == 3)
        self.assertEqual(systemd.states(), ["READY=1", "RELOADING=1", "READY=1"])
        self.assertIn("STATUS=serving; reload applied", systemd.messages[2])
        self.assertIn("reloaded", proxy.log())

        proxy.process.send_signal(signal.SIGTERM)
        yield proxy.wait_for(lambda: "STOPPING=1" in systemd.states())

    @defer.inlineCallbacks
    def test_with_workers_ready_comes_once_every_worker_serves(self):
        systemd = NotifySocket(self)
        proxy = Process(self, workers=2)
        proxy.start(proxy.twistd(), NOTIFY_SOCKET=systemd.path)

        yield proxy.wait_for(lambda: systemd.states() == ["READY=1"])
        self.assertIn("worker 1 serving", proxy.log())
        self.assertIn("worker 2 serving", proxy.log())
        self.assertIn("STATUS=serving with 2 worker(s)", systemd.messages[0])

        proxy.process.send_signal(signal.SIGHUP)
        yield proxy.wait_for(lambda: len(systemd.states()) == 3)
        self.assertEqual(systemd.states(), ["READY=1", "RELOADING=1", "READY=1"])


class SocketActivationTests(unittest.TestCase):
    if SOCKET_ACTIVATE is None:
        skip = "systemd-socket-activate is not installed (Debian: apt-get install systemd)"

    @defer.inlineCallbacks
    def activated(self, workers: int):
        """twistd under systemd-socket-activate, a ``systemd:`` bind; fires with an answer."""
        proxy = Process(self, workers=workers, bind="systemd:domain=INET:index=0")
        systemd = NotifySocket(self)
        # --fdname: Twisted only takes inherited descriptors that have names
        # (LISTEN_FDNAMES), as systemd itself always gives them.
        proxy.start(
            [
                SOCKET_ACTIVATE,
                "--listen",
                f"127.0.0.1:{proxy.port}",
                "--fdname=web",
                f"--setenv=PYTHONPATH={ROOT}",
                f"--setenv=NOTIFY_SOCKET={systemd.path}",
                *proxy.twistd(),
            ]
        )
        yield proxy.wait_for(lambda: f"Listening on 127.0.0.1:{proxy.port}" in proxy.log())
        # The first connection makes systemd-socket-activate start twistd, which serves it.
        answer = yield raw_request(
            proxy.port, b"GET /fixed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        yield proxy.wait_for(lambda: "READY=1" in systemd.states())
        return answer

    @defer.inlineCallbacks
    def test_a_systemd_bind_serves_on_the_socket_systemd_socket_activate_passed(self):
        answer = yield self.activated(workers=1)

        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertTrue(answer.endswith(b"fixed"), answer)

    @defer.inlineCallbacks
    def test_workers_serve_on_the_socket_systemd_passed_to_the_supervisor(self):
        answer = yield self.activated(workers=2)

        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertTrue(answer.endswith(b"fixed"), answer)
