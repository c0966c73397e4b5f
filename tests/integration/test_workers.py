"""``workers = 2`` through the real ``twistd clbproxy``: every worker serves, crashes heal.

Each test starts its own supervisor on ports of 127.0.0.1 chosen by the OS (a
listener with ``max_connections = 1`` per worker, so a second connection must
go to the other worker), with an echo backend in this process.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time

import treq
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from tests.integration.test_lifecycle import free_port
from tests.integration.test_observability import sample, samples
from tests.support.handshakes import upgrade_request
from tests.support.network import ROOT, TWISTD, Listening, raw_request, spawn_twistd

CONFIG = """
workers = {workers}
drain_timeout = 2
{top}
[[listener]]
name = "web"
bind = "tcp:{port}:interface=127.0.0.1"
max_connections = 1
  [[listener.rule]]
  target_group = "pool"
{rules}
{listeners}
[target_group.pool]
backends = ["127.0.0.1:{backend}"]
[admin]
bind = "tcp:{admin}:interface=127.0.0.1"
"""

FIXED_RULE = """
  [[listener.rule]]
  path = "= /fixed"
  fixed_response = { status = 200, body = "fixed answer" }
"""

SECOND_LISTENER = """
[[listener]]
name = "second"
bind = "tcp:{second}:interface=127.0.0.1"
max_connections = 1
  [[listener.rule]]
  target_group = "pool"
"""

PROXIED_LISTENER = """
[[listener]]
name = "second"
bind = "haproxy:tcp:{second}:interface=127.0.0.1"
max_connections = 1
  [[listener.rule]]
  target_group = "pool"
"""


class _FirstAnswer(Protocol):
    """Sends its bytes, fires ``answered`` with the first bytes back, and stays open."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.answered = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        if not self.answered.called:
            self.answered.callback(data)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class WorkerGroup(Listening):
    """A ``twistd clbproxy`` supervisor with its workers, stopped and cleaned up after the test."""

    def __init__(self, testcase):
        super().__init__(testcase)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.port = free_port()
        self.admin = free_port()
        self.second = free_port()
        self.directory = os.path.abspath(testcase.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "tap.conf")
        self.log_path = os.path.join(self.directory, "out.log")
        self.process = None
        self.pids: set[int] = set()

    def write(
        self, backend: int, rules: str = "", listeners: str = "", workers: int = 2, top: str = ""
    ):
        with open(self.path, "w") as f:
            f.write(
                CONFIG.format(
                    workers=workers,
                    port=self.port,
                    admin=self.admin,
                    backend=backend,
                    rules=rules,
                    listeners=listeners.format(second=self.second),
                    top=top,
                )
            )

    @defer.inlineCallbacks
    def start(self, preexec_fn=None):
        self.process = spawn_twistd(
            self.testcase, self.path, self.directory, self.log_path, preexec_fn=preexec_fn
        )
        self.testcase.addCleanup(self._kill_everything)
        yield self.wait_for(
            lambda: self.log().count(" serving (pid ") >= 2 or self.process.poll() is not None
        )
        self.testcase.assertIsNone(self.process.poll(), self.log())
        yield self.status()

    def _kill_everything(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    @defer.inlineCallbacks
    def wait_for(self, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.testcase.fail(f"timed out waiting; log:\n{self.log()}")
            yield task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def status(self):
        response = yield treq.get(f"http://127.0.0.1:{self.admin}/api/status", pool=self.pool)
        status = json.loads((yield response.content()))
        self.pids.update(worker["pid"] for worker in status["workers"])
        return status

    @defer.inlineCallbacks
    def post(self, path: str, body: bytes = b"{}"):
        response = yield treq.post(
            f"http://127.0.0.1:{self.admin}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            pool=self.pool,
        )
        return response.code, json.loads((yield response.content()))

    @defer.inlineCallbacks
    def metrics(self):
        response = yield treq.get(f"http://127.0.0.1:{self.admin}/metrics", pool=self.pool)
        return samples((yield response.text()))

    @defer.inlineCallbacks
    def session(self, port=None):
        """An echo session through the proxy, checked with one message."""
        client = self.client(port or self.port)
        protocol = yield client.opened
        protocol.sendMessage(b"hello")
        yield client.wait_messages(1)
        client.protocol = protocol
        return client

    @defer.inlineCallbacks
    def echo(self, client, payload: bytes):
        count = len(client.messages) + 1
        client.protocol.sendMessage(payload)
        messages = yield client.wait_messages(count)
        return messages[-1][0]


class WorkerTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def group(self, preexec_fn=None, **write):
        group = WorkerGroup(self)
        _, backend = group.backend()
        group.backend_port = yield backend
        group.write(group.backend_port, **write)
        yield group.start(preexec_fn)
        return group

    @defer.inlineCallbacks
    def test_every_worker_holds_the_descriptor_budget_of_its_own_limit(self):
        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

        group = yield self.group(preexec_fn=low_limit, top="max_connections = 500")
        yield group.session()
        log = group.log()
        self.assertEqual(
            log.count(
                "max_connections = 500 is more than the descriptor budget of 112 connections "
                "per process (RLIMIT_NOFILE 256, 32 reserved, 2 per connection)"
            ),
            1,
            log,
        )
        self.assertEqual(
            log.count(
                "descriptor budget: 112 connections (RLIMIT_NOFILE 256); accepting pauses at 112"
            ),
            2,
            log,
        )

    @defer.inlineCallbacks
    def test_every_worker_serves_and_the_supervisor_shows_their_sum(self):
        group = yield self.group()
        yield group.session()
        yield group.session()

        status = yield group.status()
        metrics = yield group.metrics()

        workers = status["workers"]
        self.assertEqual([w["index"] for w in workers], [1, 2])
        self.assertEqual(len({w["pid"] for w in workers}), 2)
        self.assertEqual([(w["up"], w["sessions"]) for w in workers], [(True, 1), (True, 1)])
        self.assertEqual(status["listeners"][0]["sessions"], 2)
        self.assertEqual(status["target_groups"][0]["backends"][0]["sessions"], 2)
        self.assertEqual(sample(metrics, "clbproxy_workers"), 2)
        self.assertEqual(sample(metrics, "clbproxy_connections_total", listener="web"), 2)
        self.assertEqual(
            sample(
                metrics,
                "clbproxy_websocket_sessions_active",
                listener="web",
                group="pool",
                backend=f"127.0.0.1:{group.backend_port}",
            ),
            2,
        )

    @defer.inlineCallbacks
    def test_a_killed_worker_is_restarted_and_the_other_keeps_serving(self):
        group = yield self.group()
        first = yield group.session()
        second = yield group.session()
        status = yield group.status()
        victim = status["workers"][0]["pid"]

        os.kill(victim, signal.SIGKILL)
        yield group.wait_for(lambda: "restarting it in 0 s" in group.log())
        yield defer.DeferredList([first.closed, second.closed], fireOnOneCallback=True)
        survivor = second if first.closed.called else first
        self.assertEqual((yield group.echo(survivor, b"still here")), b"still here")

        @defer.inlineCallbacks
        def restarted():
            while True:
                status = yield group.status()
                worker = status["workers"][0]
                if worker["pid"] != victim and worker["up"]:
                    return status
                yield task.deferLater(reactor, 0.1, lambda: None)

        status = yield restarted()
        self.assertEqual(status["workers"][0]["restarts"], 1)
        self.assertFalse(alive(victim))
        fresh = yield group.session()
        self.assertEqual((yield group.echo(fresh, b"after")), b"after")
        metrics = yield group.metrics()
        self.assertEqual(sample(metrics, "clbproxy_worker_restarts_total"), 1)
        self.assertIn("was killed by SIGKILL", group.log())

    @defer.inlineCallbacks
    def test_sighup_reloads_every_worker_in_place_keeping_sessions(self):
        group = yield self.group()
        sessions = [(yield group.session()), (yield group.session())]
        pids = {w["pid"] for w in (yield group.status())["workers"]}
        group.write(group.backend_port, rules=FIXED_RULE)

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: group.log().count("1 listener(s) kept") == 2)

        for client in sessions:
            self.assertEqual((yield group.echo(client, b"kept")), b"kept")
            client.protocol.sendClose(1000)
            yield client.closed
        for _ in range(4):
            answer = yield raw_request(
                group.port, b"GET /fixed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            self.assertTrue(answer.endswith(b"fixed answer"), answer)
        self.assertEqual({w["pid"] for w in (yield group.status())["workers"]}, pids)
        metrics = yield group.metrics()
        self.assertEqual(sample(metrics, "clbproxy_config_reloads_total", result="success"), 1)

    @defer.inlineCallbacks
    def test_an_invalid_reload_is_logged_once_and_the_workers_keep_serving(self):
        group = yield self.group()
        with open(group.path, "a") as f:
            f.write("bogus = 1\n")

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: "the workers keep serving" in group.log())

        self.assertEqual(group.log().count("unknown key 'bogus'"), 1)
        self.assertFalse(
            [line for line in group.log().splitlines() if "[worker" in line and "reload" in line]
        )
        client = yield group.session()
        self.assertEqual((yield group.echo(client, b"fine")), b"fine")

    @defer.inlineCallbacks
    def sessions_per_worker(self, group):
        return [(w["up"], w["sessions"]) for w in (yield group.status())["workers"]]

    @defer.inlineCallbacks
    def test_a_reload_adding_a_listener_keeps_sessions_and_every_worker_serves_it(self):
        group = yield self.group()
        sessions = [(yield group.session()), (yield group.session())]
        pids = {w["pid"] for w in (yield group.status())["workers"]}
        group.write(group.backend_port, listeners=SECOND_LISTENER)

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: group.log().count("1 listener(s) kept, 1 started") == 2)
        yield group.wait_for(lambda: "supervisor: 2 worker(s) reloaded in place" in group.log())

        for client in sessions:
            self.assertEqual((yield group.echo(client, b"kept")), b"kept")
        # One connection per worker on "second" too: the second one must go to the other.
        new = [(yield group.session(group.second)), (yield group.session(group.second))]
        self.assertEqual((yield self.sessions_per_worker(group)), [(True, 2), (True, 2)])
        for client in new:
            self.assertEqual((yield group.echo(client, b"new port")), b"new port")
        status = yield group.status()
        self.assertEqual({w["pid"] for w in status["workers"]}, pids)
        self.assertEqual([listener["name"] for listener in status["listeners"]], ["web", "second"])
        metrics = yield group.metrics()
        self.assertEqual(sample(metrics, "clbproxy_config_reloads_total", result="success"), 1)
        self.assertNotIn("exited with status", group.log())

    @defer.inlineCallbacks
    def test_every_worker_reads_the_proxy_header_of_an_adopted_haproxy_socket(self):
        group = yield self.group(listeners=PROXIED_LISTENER)
        answers = []
        # max_connections = 1 per worker: the second connection goes to the other worker.
        for source in ("203.0.113.7", "203.0.113.8"):
            header = f"PROXY TCP4 {source} 127.0.0.1 5555 80\r\n".encode()
            protocol = yield connectProtocol(
                TCP4ClientEndpoint(reactor, "127.0.0.1", group.second),
                _FirstAnswer(header + upgrade_request(host="a.test")),
            )
            self.addCleanup(protocol.transport.abortConnection)
            answers.append((yield protocol.answered.addTimeout(10, reactor)).split(b" ")[1])
        self.assertEqual(answers, [b"101", b"101"])
        self.assertEqual((yield self.sessions_per_worker(group)), [(True, 1), (True, 1)])

    @defer.inlineCallbacks
    def test_a_worker_restarted_after_a_reload_gets_the_new_listener_socket(self):
        group = yield self.group()
        group.write(group.backend_port, listeners=SECOND_LISTENER)
        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: "supervisor: 2 worker(s) reloaded in place" in group.log())
        victim = (yield group.status())["workers"][0]["pid"]

        os.kill(victim, signal.SIGKILL)
        yield group.wait_for(lambda: group.log().count(" serving (pid ") >= 3)

        yield group.session(group.second)
        yield group.session(group.second)
        self.assertEqual((yield self.sessions_per_worker(group)), [(True, 1), (True, 1)])
        self.assertNotIn("not opened by the supervisor", group.log())

    @defer.inlineCallbacks
    def test_a_reload_removing_another_listener_keeps_sessions_and_closes_its_port(self):
        group = yield self.group(listeners=SECOND_LISTENER)
        sessions = [(yield group.session()), (yield group.session())]
        sessions.append((yield group.session(group.second)))
        group.write(group.backend_port)

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: "supervisor: 2 worker(s) reloaded in place" in group.log())

        self.assertEqual(group.log().count("1 listener(s) kept, 0 started, 1 stopped"), 2)
        for client in sessions:
            self.assertEqual((yield group.echo(client, b"kept")), b"kept")
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", group.second).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)
        self.assertIn("1 closed", group.log())

    @defer.inlineCallbacks
    def test_a_reload_changing_a_bind_keeps_the_sessions_on_the_old_one(self):
        group = yield self.group()
        sessions = [(yield group.session()), (yield group.session())]
        old_port, group.port = group.port, free_port()
        group.write(group.backend_port)

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: "supervisor: 2 worker(s) reloaded in place" in group.log())

        self.assertEqual(group.log().count("0 listener(s) kept, 1 started, 1 stopped"), 2)
        for client in sessions:
            self.assertEqual((yield group.echo(client, b"kept")), b"kept")
        yield group.session(group.port)
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", old_port).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)

    @defer.inlineCallbacks
    def test_a_reload_with_a_port_in_use_keeps_everything_and_logs_one_line(self):
        import socket

        group = yield self.group()
        client = yield group.session()
        pids = {w["pid"] for w in (yield group.status())["workers"]}
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        group.second = taken.getsockname()[1]
        group.write(group.backend_port, listeners=SECOND_LISTENER)

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: "reload refused" in group.log())

        refusals = [line for line in group.log().splitlines() if "reload refused" in line]
        self.assertEqual(len(refusals), 1, group.log())
        self.assertIn(
            f"reload refused: listener:second: cannot listen on 127.0.0.1:{group.second}: "
            "Address already in use; the workers keep serving",
            refusals[0],
        )
        self.assertNotIn("reloaded", group.log())
        self.assertEqual((yield group.echo(client, b"still")), b"still")
        status = yield group.status()
        self.assertEqual({w["pid"] for w in status["workers"]}, pids)
        self.assertEqual([listener["name"] for listener in status["listeners"]], ["web"])
        metrics = yield group.metrics()
        self.assertEqual(sample(metrics, "clbproxy_config_reloads_total", result="failure"), 1)

    @defer.inlineCallbacks
    def test_a_reload_with_fewer_workers_stops_the_extra_one_only(self):
        group = yield self.group()
        first = yield group.session()
        second = yield group.session()
        group.write(group.backend_port, workers=1)

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: "exited with status 0" in group.log())

        closed = yield defer.DeferredList([first.closed, second.closed], fireOnOneCallback=True)
        wasClean, code, _ = closed[0]
        self.assertEqual((wasClean, code), (True, 1001))
        survivor = second if first.closed.called else first
        self.assertEqual((yield group.echo(survivor, b"kept")), b"kept")
        status = yield group.status()
        self.assertEqual([w["index"] for w in status["workers"]], [1])

    @defer.inlineCallbacks
    def test_sigterm_drains_every_worker_and_exits(self):
        group = yield self.group()
        sessions = [(yield group.session()), (yield group.session())]
        pids = [w["pid"] for w in (yield group.status())["workers"]]

        started = time.monotonic()
        os.kill(group.process.pid, signal.SIGTERM)
        for client in sessions:
            wasClean, code, _ = yield client.closed
            self.assertEqual((wasClean, code), (True, 1001))
        yield group.wait_for(lambda: group.process.poll() is not None)

        self.assertLess(time.monotonic() - started, 2 + 5)
        self.assertEqual(group.process.returncode, -signal.SIGTERM, group.log())
        self.assertFalse([pid for pid in pids if alive(pid)])
        self.assertEqual(group.log().count("drained in"), 2)

    @defer.inlineCallbacks
    def test_sighup_while_the_workers_drain_is_ignored_and_the_group_exits_normally(self):
        from tests.integration.test_lifecycle import DelayedHTTPBackend

        group = WorkerGroup(self)
        held = DelayedHTTPBackend(30)
        self.addCleanup(held.cut)
        group.write((yield group.listen(held)))
        yield group.start()
        response = raw_request(group.port, b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        yield group.wait_for(lambda: held.calls)

        os.kill(group.process.pid, signal.SIGTERM)
        yield group.wait_for(lambda: "draining: 1 connection(s)" in group.log())
        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: "reload ignored while draining" in group.log())

        self.assertIsNone(group.process.poll(), group.log())
        for call in held.calls:
            call.reset(0)
        data = yield response
        self.assertTrue(data.endswith(b"slow answer"), data)
        yield group.wait_for(lambda: group.process.poll() is not None)
        self.assertEqual(group.process.returncode, -signal.SIGTERM, group.log())
        self.assertNotIn("reloading", group.log())

    @defer.inlineCallbacks
    def test_runtime_actions_reach_every_worker_and_a_restarted_one_too(self):
        group = yield self.group()
        backend = f"127.0.0.1:{group.backend_port}"

        code, answer = yield group.post(f"/api/backends/pool/{backend}/weight", b'{"weight": 30}')
        self.assertEqual((code, answer["weight"]), (200, 30))
        code, answer = yield group.post(f"/api/backends/pool/{backend}/disable")
        self.assertEqual((code, answer["state"]), (200, "maint"))
        code, answer = yield group.post("/api/backends/pool/127.0.0.1:1/disable")
        self.assertEqual(code, 404, answer)

        def views(status):
            return [
                (view["state"], view["weight"])
                for view in status["target_groups"][0]["backends"][0]["workers"]
            ]

        status = yield group.status()
        self.assertEqual(views(status), [("maint", 30), ("maint", 30)])
        victim = status["workers"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        yield group.wait_for(lambda: "2 runtime action(s) applied" in group.log())
        status = yield group.status()
        self.assertNotEqual(status["workers"][1]["pid"], victim)
        self.assertEqual(views(status), [("maint", 30), ("maint", 30)])
        answer = yield raw_request(
            group.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 503 "), answer)

    @defer.inlineCallbacks
    def test_sigusr1_makes_every_worker_reopen_the_access_log(self):
        group = WorkerGroup(self)
        backend = yield group.listen(_http_backend())
        access_log = os.path.join(group.directory, "access.log")
        group.write(backend, top=f'[access_log]\npath = "{access_log}"\n')
        yield group.start()
        request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        yield raw_request(group.port, request)
        os.rename(access_log, access_log + ".1")

        os.kill(group.process.pid, signal.SIGUSR1)
        yield group.wait_for(lambda: group.log().count("log files reopened") == 3)
        for _ in range(4):
            yield raw_request(group.port, request)

        yield group.wait_for(lambda: os.path.exists(access_log))
        with open(access_log + ".1") as f:
            self.assertEqual(len(f.read().splitlines()), 1)
        with open(access_log) as f:
            self.assertEqual(len(f.read().splitlines()), 4)

    @defer.inlineCallbacks
    def test_reloads_move_the_admin_listener_start_and_stop_demo_backends_and_access_logs(self):
        group = WorkerGroup(self)
        backend = yield group.listen(_http_backend())
        first = os.path.join(group.directory, "first.log")
        second = os.path.join(group.directory, "second.log")
        group.write(backend, top=f'[access_log]\npath = "{first}"\n')
        yield group.start()
        request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        yield raw_request(group.port, request)
        old_admin, demo = group.admin, free_port()
        group.admin = free_port()
        group.write(
            backend,
            top=(
                f'[access_log]\npath = "{second}"\n'
                f'[[demo_backend]]\nname = "demo"\nbind = "tcp:{demo}:interface=127.0.0.1"\n'
            ),
        )

        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: group.log().count("1 listener(s) kept") == 2)

        status = yield group.status()
        self.assertEqual(len(status["workers"]), 2)
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", old_admin).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)
        page = yield raw_request(demo, request)
        self.assertTrue(page.startswith(b"HTTP/1.1 200"), page[:200])
        for _ in range(2):
            yield raw_request(group.port, request)
        for path, count in ((first, 1), (second, 2)):
            with open(path) as f:
                self.assertEqual(len(f.read().splitlines()), count, path)

        # Once more: the admin listener the first reload started is the one replaced now.
        moved_admin = group.admin
        group.admin = free_port()
        group.write(backend)
        os.kill(group.process.pid, signal.SIGHUP)
        yield group.wait_for(lambda: group.log().count("1 listener(s) kept") == 4)

        self.assertEqual(len((yield group.status())["workers"]), 2)
        for gone in (moved_admin, demo):
            attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", gone).connect(Factory())
            yield self.assertFailure(attempt, ConnectionRefusedError)


def _http_backend(body: bytes = b"ok"):
    from twisted.web.resource import Resource
    from twisted.web.server import Site
    from twisted.web.static import Data

    root = Resource()
    root.putChild(b"", Data(body, "text/plain"))
    return Site(root)


class KeptOpen(Protocol):
    """Sends one keep-alive request and keeps the connection open after the answer."""

    def connectionMade(self):
        self.received = b""
        self.transport.write(self.factory.request)

    def dataReceived(self, data):
        self.received += data
        if b"backend-" in self.received and not self.factory.answered.called:
            self.factory.answered.callback(self.received)


class PersistenceAcrossWorkersTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_a_cookie_set_by_one_worker_is_honoured_by_the_other(self):
        group = WorkerGroup(self)
        a = yield group.listen(_http_backend(b"backend-a"))
        b = yield group.listen(_http_backend(b"backend-b"))
        group.write(a)
        with open(group.path) as f:
            text = f.read()
        with open(group.path, "w") as f:
            f.write(
                text.replace(f'["127.0.0.1:{a}"]', f'["127.0.0.1:{a}", "127.0.0.1:{b}"]')
                + '[target_group.pool.persistence]\ntype = "cookie"\n'
            )
        yield group.start()
        factory = Factory.forProtocol(KeptOpen)
        factory.request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        factory.answered = defer.Deferred()
        kept = yield TCP4ClientEndpoint(reactor, "127.0.0.1", group.port).connect(factory)
        self.addCleanup(kept.transport.abortConnection)
        first = yield factory.answered
        home = first[first.index(b"backend-") :][:9]
        cookie = [
            line.split(b":", 1)[1].split(b";")[0].strip()
            for line in first.split(b"\r\n")
            if line.lower().startswith(b"set-cookie:")
        ][0]

        answers = []
        for _ in range(4):
            answer = yield raw_request(
                group.port,
                b"GET / HTTP/1.1\r\nHost: x\r\nCookie: "
                + cookie
                + b"\r\nConnection: close\r\n\r\n",
            )
            answers.append(answer[-9:])

        self.assertEqual(answers, [home] * 4)
        totals = sorted(w["connections_total"] for w in (yield group.status())["workers"])
        self.assertEqual(totals, [1, 4])


class OrphanTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_workers_stop_when_the_supervisor_is_killed(self):
        group = WorkerGroup(self)
        group.write(free_port())
        yield group.start()
        pids = [w["pid"] for w in (yield group.status())["workers"]]

        group.process.kill()
        group.process.wait()

        yield group.wait_for(lambda: not [pid for pid in pids if alive(pid)])


class StartupTests(unittest.TestCase):
    def test_a_port_in_use_stops_the_supervisor_with_one_line(self):
        import socket

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        group = WorkerGroup(self)
        group.port = taken.getsockname()[1]
        group.write(free_port())

        result = subprocess.run(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "clbproxy", "--config", group.path],
            cwd=group.directory,
            env={**os.environ, "PYTHONPATH": ROOT},
            capture_output=True,
            text=True,
            timeout=30,
        )

        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("worker(s)", output)
        self.assertIn(
            f"clbproxy: listener:web: cannot listen on 127.0.0.1:{group.port}: "
            "Address already in use",
            output,
        )
