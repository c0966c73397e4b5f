"""The admin listener against DNS rebinding and framing, in a real ``twistd clbproxy``.

A page on ``evil.example`` whose name the attacker rebinds to 127.0.0.1 is
"same-origin" with the admin listener: its requests reach it with
``Host: evil.example[:port]`` and a matching ``Origin``.  Before the fix they
could read ``/api/status`` and drain, disable or reweight backends.  Here each
process is a whole proxy started from a tap.conf (admin on an ephemeral port of
127.0.0.1), talked to over raw sockets so every header is exactly what a
browser (or an attacker) would send.  The supervisor of ``workers = 2`` is
checked too: it refuses foreign Hosts while its own requests to its workers'
private admin sockets keep working.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

from twisted.trial import unittest

from tests.hostile.catalog import LOG_ALARMS, REPOSITORY

TWISTD = "from twisted.scripts.twistd import run; run()"

TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

CONFIG = """
workers = {workers}
drain_timeout = 1
[[listener]]
name = "web"
bind = "tcp:{port}:interface=127.0.0.1"
  [[listener.rule]]
  target_group = "pool"
[target_group.pool]
backends = ["127.0.0.1:{backend}"]
[admin]
bind = "tcp:{admin}:interface=127.0.0.1"
{admin_keys}
"""

#: Seconds a proxy process has to start answering its admin listener.
START_TIMEOUT = 30.0


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class Answer:
    """An HTTP response read off the wire."""

    def __init__(self, status: int, headers: dict[str, list[str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self):
        return json.loads(self.body)


def ask(
    port: int,
    host: Optional[str],
    path: str = "/api/status",
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> Answer:
    """Send one HTTP/1.1 request with exactly these headers; read the answer to the close."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    if method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(raw)
        received = b""
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.setdefault(name.strip().lower(), []).append(value.strip())
    if "chunked" in (parsed.get("transfer-encoding") or [""])[-1]:
        rest = _unchunk(rest)
    return Answer(int(status_line.split()[1]), parsed, rest)


def _unchunk(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body


class AdminProcess:
    """``twistd -n clbproxy`` with an admin listener, from a tap.conf written for it."""

    def __init__(self, admin_keys: str = "", workers: int = 1) -> None:
        self.directory = tempfile.mkdtemp(prefix="clbproxy-admin-host-")
        self.admin = free_port()
        token_file = os.path.join(self.directory, "admin.token")
        with open(token_file, "w") as stream:
            stream.write(TOKEN + "\n")
        path = os.path.join(self.directory, "tap.conf")
        with open(path, "w") as stream:
            stream.write(
                CONFIG.format(
                    workers=workers,
                    port=free_port(),
                    backend=free_port(),
                    admin=self.admin,
                    admin_keys=admin_keys.format(token_file=token_file),
                )
            )
        self.log_path = os.path.join(self.directory, "twistd.log")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "clbproxy", "--config", path],
            cwd=self.directory,
            env={**os.environ, "PYTHONPATH": REPOSITORY},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_ready()

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as stream:
            return stream.read()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise AssertionError(f"the proxy exited at start:\n{self.log()[-3000:]}")
            try:
                answer = ask(self.admin, f"127.0.0.1:{self.admin}", "/api/status", headers=(
                    ("Authorization", f"Bearer {TOKEN}"),
                ))  # fmt: skip
            except OSError:
                time.sleep(0.1)
                continue
            if answer.status == 200 and all(w["up"] for w in answer.json().get("workers", [])):
                return
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the admin listener did not answer in time:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class AdminProcessTestCase(unittest.TestCase):
    """One proxy process per class, started by its first test, stopped when the run ends.

    (trial has no ``setUpClass``; the hostile catalogue shares its servers the same way.)
    """

    admin_keys = ""
    workers = 1
    proxy: AdminProcess

    def setUp(self) -> None:
        cls = type(self)
        if "proxy" not in cls.__dict__:
            cls.proxy = AdminProcess(cls.admin_keys, cls.workers)
            atexit.register(cls.proxy.stop)

    def tearDown(self) -> None:
        self.assertIsNone(self.proxy.process.poll(), "the proxy died")
        log = self.proxy.log()
        for alarm in LOG_ALARMS:
            self.assertNotIn(alarm, log)

    def ask(self, host: Optional[str], path: str = "/api/status", **kwargs) -> Answer:
        return ask(self.proxy.admin, host, path, **kwargs)

    def own(self) -> str:
        """The Host a browser sends for the admin page's own address."""
        return f"127.0.0.1:{self.proxy.admin}"

    def assertNotFramable(self, answer: Answer) -> None:
        self.assertEqual(answer.header("X-Frame-Options"), "DENY")
        self.assertIn("frame-ancestors 'none'", answer.header("Content-Security-Policy") or "")

    def backend_state(self, **kwargs) -> str:
        (group,) = self.ask(self.own(), **kwargs).json()["target_groups"]
        (backend,) = group["backends"]
        return backend["state"]


class RebindingTests(AdminProcessTestCase):
    admin_keys = 'allowed_hosts = ["admin.example.net"]'

    def foreign_hosts(self) -> list[str]:
        port = self.proxy.admin
        return [
            "evil.example",
            f"evil.example:{port}",
            f"EVIL.example.:{port}",
            f"127.0.0.1.evil.example:{port}",
            f"localhost.evil.example:{port}",
            f"admin.example.net.evil.example:{port}",
            f"x.admin.example.net:{port}",
        ]

    def test_a_foreign_host_is_refused_on_the_page_the_api_and_the_metrics(self) -> None:
        for path in ("/", "/index.html", "/api/status", "/metrics", "/nowhere"):
            for host in self.foreign_hosts():
                answer = self.ask(host, path)
                self.assertEqual(answer.status, 403, (path, host))
                self.assertNotIn(b"target_groups", answer.body)
                self.assertNotIn(b"clbproxy_", answer.body)
                self.assertNotFramable(answer)

    def test_a_missing_empty_or_malformed_host_is_refused(self) -> None:
        for host in (None, "", f"127.0.0.1:{self.proxy.admin}:1", "[::1", "a b"):
            self.assertEqual(self.ask(host).status, 403, host)

    def test_a_rebound_page_cannot_drain_disable_or_reweight_a_backend(self) -> None:
        port = self.proxy.admin
        for action, body in (("drain", b"{}"), ("disable", b"{}"), ("weight", b'{"weight": 0}')):
            answer = self.ask(
                f"evil.example:{port}",
                f"/api/backends/pool/127.0.0.1:{self.backend_port()}/{action}",
                method="POST",
                headers=(("Origin", f"http://evil.example:{port}"),),
                body=body,
            )
            self.assertEqual(answer.status, 403, action)
        self.assertEqual(self.backend_state(), "ready")

    def test_ip_and_localhost_hosts_are_answered_with_or_without_the_port(self) -> None:
        port = self.proxy.admin
        for host in (
            f"127.0.0.1:{port}",
            "127.0.0.1",
            f"localhost:{port}",
            "localhost",
            f"status.localhost:{port}",
            f"[::1]:{port}",
        ):
            answer = self.ask(host)
            self.assertEqual(answer.status, 200, host)
            self.assertIn("target_groups", answer.json())
            self.assertNotFramable(answer)

    def test_names_in_allowed_hosts_are_answered(self) -> None:
        for host in ("admin.example.net", f"Admin.Example.Net:{self.proxy.admin}"):
            self.assertEqual(self.ask(host).status, 200, host)
        self.assertEqual(self.ask("other.example.net").status, 403)

    def test_a_post_from_the_page_own_origin_still_works(self) -> None:
        path = f"/api/backends/pool/127.0.0.1:{self.backend_port()}"
        origin = (("Origin", f"http://{self.own()}"),)
        drained = self.ask(self.own(), f"{path}/drain", method="POST", headers=origin)
        self.assertEqual((drained.status, drained.json()["state"]), (200, "drain"))
        enabled = self.ask(self.own(), f"{path}/enable", method="POST", headers=origin)
        self.assertEqual((enabled.status, enabled.json()["state"]), (200, "ready"))

    def test_the_page_and_metrics_cannot_be_framed(self) -> None:
        for path in ("/", "/metrics", "/nowhere"):
            answer = self.ask(self.own(), path)
            self.assertIn(answer.status, (200, 404))
            self.assertNotFramable(answer)
        page = self.ask(self.own(), "/")
        self.assertIn("script-src 'unsafe-inline'", page.header("Content-Security-Policy"))

    def test_a_refusal_is_logged_naming_the_host(self) -> None:
        self.ask("logged.evil.example")
        deadline = time.monotonic() + 5
        while "'logged.evil.example'" not in self.proxy.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("refused a request for Host 'logged.evil.example'", self.proxy.log())

    def backend_port(self) -> int:
        (group,) = self.ask(self.own()).json()["target_groups"]
        (backend,) = group["backends"]
        return int(backend["address"].rsplit(":", 1)[1])


class TokenTests(AdminProcessTestCase):
    admin_keys = 'token_file = "{token_file}"'

    def bearer(self, token: str = TOKEN) -> tuple[tuple[str, str], ...]:
        return (("Authorization", f"Bearer {token}"),)

    def test_the_api_and_metrics_need_the_bearer_token(self) -> None:
        for path in ("/api/status", "/metrics"):
            for headers in ((), self.bearer("wrong"), self.bearer(TOKEN + "0"), self.bearer("")):
                answer = self.ask(self.own(), path, headers=headers)
                self.assertEqual(answer.status, 401, (path, headers))
                self.assertEqual(answer.header("WWW-Authenticate"), 'Bearer realm="clbproxy admin"')
                self.assertNotFramable(answer)
            self.assertEqual(self.ask(self.own(), path, headers=self.bearer()).status, 200, path)

    def test_an_action_without_the_token_changes_nothing(self) -> None:
        answer = self.ask(
            self.own(), "/api/backends/pool/127.0.0.1:1/drain", method="POST", body=b"{}"
        )
        self.assertEqual(answer.status, 401)
        self.assertEqual(self.backend_state(headers=self.bearer()), "ready")

    def test_the_page_loads_without_the_token_and_asks_for_it(self) -> None:
        answer = self.ask(self.own(), "/")
        self.assertEqual(answer.status, 200)
        self.assertIn(b'id="token-value"', answer.body)

    def test_a_foreign_host_is_refused_even_with_the_token(self) -> None:
        answer = self.ask(f"evil.example:{self.proxy.admin}", headers=self.bearer())
        self.assertEqual(answer.status, 403)


class SupervisorTests(AdminProcessTestCase):
    """``workers = 2``: the supervisor's admin listener asks its workers over private sockets."""

    workers = 2

    def test_the_supervisor_refuses_a_foreign_host(self) -> None:
        for path in ("/", "/api/status", "/metrics"):
            answer = self.ask(f"evil.example:{self.proxy.admin}", path)
            self.assertEqual(answer.status, 403, path)
            self.assertNotFramable(answer)

    def test_the_supervisor_still_reads_every_worker(self) -> None:
        answer = self.ask(self.own())
        self.assertEqual(answer.status, 200)
        workers = answer.json()["workers"]
        self.assertEqual([w["up"] for w in workers], [True, True])
        metrics = self.ask(self.own(), "/metrics")
        self.assertEqual(metrics.status, 200)
        self.assertIn(b"clbproxy_backend_admin_state", metrics.body)
        self.assertNotFramable(answer)


class ReloadTests(unittest.TestCase):
    """SIGHUP reads ``token_file`` and ``allowed_hosts`` again, on the running admin socket."""

    def test_a_reload_takes_a_new_token_and_new_allowed_hosts(self) -> None:
        proxy = AdminProcess('token_file = "{token_file}"')
        self.addCleanup(proxy.stop)
        config_path = os.path.join(proxy.directory, "tap.conf")
        with open(config_path) as stream:
            text = stream.read()
        with open(config_path, "w") as stream:
            stream.write(text + 'allowed_hosts = ["admin.example.net"]\n')
        with open(os.path.join(proxy.directory, "admin.token"), "w") as stream:
            stream.write("new-token\n")
        own = f"127.0.0.1:{proxy.admin}"
        proxy.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        new = (("Authorization", "Bearer new-token"),)
        while ask(proxy.admin, own, headers=new).status != 200:
            self.assertLess(time.monotonic(), deadline, proxy.log()[-3000:])
            time.sleep(0.05)
        old = (("Authorization", f"Bearer {TOKEN}"),)
        self.assertEqual(ask(proxy.admin, own, headers=old).status, 401)
        self.assertEqual(ask(proxy.admin, "admin.example.net", headers=new).status, 200)
