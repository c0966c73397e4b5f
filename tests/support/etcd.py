"""Real etcd members on 127.0.0.1 for the fleet tests: temporary data dirs, free ports.

Every member is a child process started here and stopped by its PID (SIGCONT
first, in case a test froze it with SIGSTOP); :meth:`EtcdCluster.stop_all` is
meant for ``addCleanup``.  Nothing here talks to an etcd it did not start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Optional

ETCD = shutil.which("etcd")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports of 127.0.0.1 that were free a moment ago."""
    probes, ports = [], []
    for _ in range(count):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        probes.append(probe)
        ports.append(probe.getsockname()[1])
    for probe in probes:
        probe.close()
    return ports


class Member:
    """One etcd member: its name, ports, data dir and process (None while stopped)."""

    def __init__(
        self, name: str, client: int, peer: int, data_dir: str, log_path: str, scheme="http"
    ) -> None:
        self.scheme = scheme
        self.name = name
        self.client = client
        self.peer = peer
        self.data_dir = data_dir
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None
        self.started_once = False

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client}"


class EtcdCluster:
    """``size`` etcd members on 127.0.0.1, each in its own temporary data dir."""

    def __init__(
        self,
        size: int = 3,
        directory: Optional[str] = None,
        context: Optional[ssl.SSLContext] = None,
        **flags: str,
    ) -> None:
        """``context``: the members serve https (``flags`` name their files) and the
        health checks use this client context."""
        self.context = context
        self.directory = directory or tempfile.mkdtemp(prefix="clbproxy-etcd-")
        os.makedirs(self.directory, exist_ok=True)
        self.flags = flags
        self.token = f"clbproxy-test-{os.getpid()}-{time.monotonic_ns()}"
        ports = free_ports(2 * size)
        self.members = [
            Member(
                f"m{index}",
                ports[2 * index],
                ports[2 * index + 1],
                os.path.join(self.directory, f"m{index}"),
                os.path.join(self.directory, f"m{index}.log"),
                "https" if context is not None else "http",
            )
            for index in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [member.url for member in self.members]

    def _args(self, member: Member) -> list[str]:
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer}" for m in self.members)
        args = [
            ETCD,
            "--name",
            member.name,
            "--data-dir",
            member.data_dir,
            "--listen-client-urls",
            member.url,
            "--advertise-client-urls",
            member.url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{member.peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{member.peer}",
            "--initial-cluster",
            initial,
            "--initial-cluster-token",
            self.token,
            "--initial-cluster-state",
            "existing" if member.started_once else "new",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ]
        for flag, value in self.flags.items():
            args.append(f"--{flag.replace('_', '-')}={value}")
        return args

    def start(self, member: Member) -> None:
        log = open(member.log_path, "ab")
        try:
            member.process = subprocess.Popen(
                self._args(member), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        member.started_once = True

    def start_all(self, timeout: float = 20.0) -> None:
        for member in self.members:
            if member.process is None:
                self.start(member)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 20.0, members: Optional[list[Member]] = None) -> None:
        """Block until a linearizable read succeeds on each of ``members`` (default: all)."""
        deadline = time.monotonic() + timeout
        for member in members or self.members:
            while True:
                try:
                    post(
                        member.url,
                        "/v3/kv/range",
                        {"key": "aGVhbHRo"},
                        timeout=1.0,
                        context=self.context,
                    )
                    break
                except urllib.error.HTTPError as error:
                    if error.code in (400, 401):
                        break  # authentication is on: the member answers
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"etcd {member.name} not healthy") from error
                    time.sleep(0.1)
                except OSError as error:
                    if time.monotonic() > deadline:
                        message = f"etcd {member.name} not healthy; see {member.log_path}"
                        raise RuntimeError(message) from error
                    time.sleep(0.1)

    def stop(self, member: Member) -> None:
        process, member.process = member.process, None
        if process is None:
            return
        try:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            process.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def freeze(self, member: Member) -> None:
        os.kill(member.process.pid, signal.SIGSTOP)

    def thaw(self, member: Member) -> None:
        os.kill(member.process.pid, signal.SIGCONT)

    def stop_all(self) -> None:
        for member in self.members:
            self.stop(member)

    def remove(self) -> None:
        self.stop_all()
        shutil.rmtree(self.directory, ignore_errors=True)


def post(
    base: str, path: str, body: dict, timeout: float = 3.0, context: Optional[ssl.SSLContext] = None
) -> dict:
    """One JSON call to an etcd gateway, blocking (for test set-up and checks)."""
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return json.loads(response.read())
