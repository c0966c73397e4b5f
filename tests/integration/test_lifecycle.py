"""Reload, drain and ``twistd`` stop on real sockets (127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import treq
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from clbproxy.config import load_config
from clbproxy.ops.drain import drain
from clbproxy.ops.reload import Reloader
from clbproxy.ops.services import build_service
from tests.support.network import (
    Listening,
    abort_sessions,
    raw_request,
    spawn_twistd,
)

CONFIG = """
drain_timeout = {drain}
{top}
[[listener]]
name = "{name}"
bind = "{bind}"
  [[listener.rule]]
  target_group = "pool"
{extra}
[target_group.pool]
backends = ["127.0.0.1:{backend}"]
"""

SECOND_LISTENER = """
[[listener]]
name = "second"
bind = "tcp:0:interface=127.0.0.1:backlog=20"
  [[listener.rule]]
  target_group = "pool"
"""


BIND = "tcp:0:interface=127.0.0.1"


def config_text(backend, name="web", extra="", drain_timeout=5, top="", bind=BIND) -> str:
    """tap.conf with one listener ``name`` on ``bind`` (plus ``extra``) to one backend."""
    return CONFIG.format(
        backend=backend, name=name, extra=extra, drain=drain_timeout, top=top, bind=bind
    )


def port_of(service) -> int:
    return service.limiter.port.getHost().port


class ProxyProcess(Listening):
    """A whole proxy built from a tap.conf file, as twistd builds it, on this reactor."""

    def __init__(self, testcase):
        super().__init__(testcase)
        self.path = testcase.mktemp()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def write(self, backend, name="web", extra="", drain_timeout=5, top="", bind=BIND):
        with open(self.path, "w") as f:
            f.write(config_text(backend, name, extra, drain_timeout, top, bind))

    def start(self):
        self.root = build_service(load_config(self.path), reactor)
        self.root.privilegedStartService()
        self.root.startService()
        self.testcase.addCleanup(self._stop)
        self.reloader = Reloader(self.path, self.root, reactor)

    def _stop(self):
        if self.root.running:
            abort_sessions(self.root.listener_services())
            return self.root.stopService()

    def listener(self, name="web"):
        return self.root.getServiceNamed(f"listener:{name}")

    def messages(self, text):
        return [event for event in self.events if text in (event.get("log_format") or "")]


class ReloadTests(unittest.TestCase):
    @defer.inlineCallbacks
    def open_session(self, proxy, name="web"):
        client = proxy.client(port_of(proxy.listener(name)))
        yield client.opened
        client.protocol = client.built[0]
        client.protocol.sendMessage(b"before")
        yield client.wait_messages(1)
        return client

    @defer.inlineCallbacks
    def test_valid_reload_swaps_groups_and_listeners_while_a_session_lives_on(self):
        proxy = ProxyProcess(self)
        old_backend, old_port = proxy.backend()
        new_backend, new_port = proxy.backend()
        old_port = yield old_port
        new_port = yield new_port
        proxy.write(old_port)
        proxy.start()
        web_port = port_of(proxy.listener())
        client = yield self.open_session(proxy)

        proxy.write(new_port, extra=SECOND_LISTENER)
        applied = yield proxy.reloader.reload()

        self.assertTrue(applied)
        self.assertEqual(port_of(proxy.listener()), web_port)
        client.protocol.sendMessage(b"after")
        messages = yield client.wait_messages(2)
        self.assertEqual([payload for payload, _ in messages], [b"before", b"after"])
        self.assertEqual(len(old_backend.opened), 1)
        for port in (web_port, port_of(proxy.listener("second"))):
            fresh = proxy.client(port)
            yield fresh.opened
        self.assertEqual(len(new_backend.opened), 2)
        self.assertEqual(len(old_backend.opened), 1)
        client.protocol.sendClose(1000)
        wasClean, code, _ = yield client.closed
        self.assertEqual((wasClean, code), (True, 1000))

    @defer.inlineCallbacks
    def assert_retired_session_echoes_then_drains_with_1001(self, proxy, client, port):
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)
        client.protocol.sendMessage(b"after")
        messages = yield client.wait_messages(2)
        self.assertEqual([payload for payload, _ in messages], [b"before", b"after"])

        yield proxy.root.stopService()

        wasClean, code, reason = yield client.closed
        self.assertEqual((wasClean, code, reason), (True, 1001, "proxy shutting down"))

    @defer.inlineCallbacks
    def test_a_removed_listener_refuses_connections_and_its_session_lives_until_the_drain(self):
        proxy = ProxyProcess(self)
        _, backend_port = proxy.backend()
        backend_port = yield backend_port
        proxy.write(backend_port, extra=SECOND_LISTENER)
        proxy.start()
        removed = port_of(proxy.listener("second"))
        client = yield self.open_session(proxy, "second")

        proxy.write(backend_port)
        applied = yield proxy.reloader.reload()

        self.assertTrue(applied)
        self.assertEqual([s.name for s in proxy.root.listener_services()], ["listener:web"])
        [event] = proxy.messages("reloaded {path}")
        self.assertEqual((event["kept"], event["added"], event["removed"]), (1, 0, 1))
        yield self.assert_retired_session_echoes_then_drains_with_1001(proxy, client, removed)

    @defer.inlineCallbacks
    def test_a_new_bind_moves_the_listener_and_its_old_session_lives_until_the_drain(self):
        proxy = ProxyProcess(self)
        _, backend_port = proxy.backend()
        backend_port = yield backend_port
        proxy.write(backend_port)
        proxy.start()
        old_port = port_of(proxy.listener())
        client = yield self.open_session(proxy)

        proxy.write(backend_port, bind=f"{BIND}:backlog=20")
        applied = yield proxy.reloader.reload()

        self.assertTrue(applied)
        new_port = port_of(proxy.listener())
        self.assertNotEqual(new_port, old_port)
        fresh = proxy.client(new_port)
        yield fresh.opened
        yield self.assert_retired_session_echoes_then_drains_with_1001(proxy, client, old_port)
        self.assertEqual((yield fresh.closed)[:2], (True, 1001))

    @defer.inlineCallbacks
    def test_invalid_reload_is_logged_per_problem_and_the_old_config_keeps_serving(self):
        proxy = ProxyProcess(self)
        backend, port = proxy.backend()
        port = yield port
        proxy.write(port)
        proxy.start()
        client = yield self.open_session(proxy)
        with open(proxy.path, "a") as f:
            f.write('bogus = 1\n[target_group.other]\nbackends = ["127.0.0.1:70000"]\n')

        applied = yield proxy.reloader.reload()

        self.assertFalse(applied)
        problems = [e["problem"] for e in proxy.messages("reload refused: {problem}")]
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(all(problem.startswith(proxy.path) for problem in problems))
        client.protocol.sendMessage(b"after")
        messages = yield client.wait_messages(2)
        self.assertEqual(messages[-1][0], b"after")
        fresh = proxy.client(port_of(proxy.listener()))
        yield fresh.opened
        self.assertEqual(len(backend.opened), 2)

    @defer.inlineCallbacks
    def test_reload_whose_new_socket_cannot_be_bound_changes_nothing(self):
        proxy = ProxyProcess(self)
        backend, port = proxy.backend()
        port = yield port
        proxy.write(port)
        proxy.start()
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        with open(proxy.path, "a") as f:
            f.write(SECOND_LISTENER.replace("tcp:0:", f"tcp:{busy}:"))

        applied = yield proxy.reloader.reload()

        self.assertFalse(applied)
        self.assertEqual([s.name for s in proxy.root.listener_services()], ["listener:web"])
        self.assertTrue(proxy.messages("reload refused: {service}: {error}"))

    @defer.inlineCallbacks
    def test_reload_hooks_get_the_config_in_effect_even_when_refused(self):
        proxy = ProxyProcess(self)
        _, port = proxy.backend()
        port = yield port
        proxy.write(port)
        proxy.start()
        seen = []
        proxy.reloader.hooks.append(seen.append)
        with open(proxy.path, "a") as f:
            f.write("bogus = 1\n")
        yield proxy.reloader.reload()
        self.assertEqual(seen, [proxy.root.config])


GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLOSE = "Connection: close\r\n\r\n"


def logged_listeners(path: str) -> list[str]:
    """The ``listener=`` field of each line of a plain access log."""
    with open(path) as f:
        return [line.split(" listener=")[1].split()[0] for line in f.read().splitlines()]


class SideServiceReloadTests(unittest.TestCase):
    """A reload applies tap.conf's access logs, admin listener and demo backends too."""

    @defer.inlineCallbacks
    def started(self, extra):
        proxy = ProxyProcess(self)
        _, port = proxy.backend()
        proxy.backend_port = yield port
        proxy.write(proxy.backend_port, extra=extra)
        proxy.start()
        return proxy

    @defer.inlineCallbacks
    def test_access_logs_follow_new_listeners_and_new_paths(self):
        first, second = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp())
        proxy = yield self.started(f'[access_log]\npath = "{first}"\n')
        yield raw_request(port_of(proxy.listener()), GET)

        proxy.write(proxy.backend_port, extra=f'[access_log]\npath = "{first}"\n{SECOND_LISTENER}')
        self.assertTrue((yield proxy.reloader.reload()))
        yield raw_request(port_of(proxy.listener("second")), GET)
        self.assertEqual(logged_listeners(first), ["web", "second"])

        proxy.write(
            proxy.backend_port,
            extra=f'[access_log]\npath = "{second}"\nformat = "json"\n{SECOND_LISTENER}',
        )
        self.assertTrue((yield proxy.reloader.reload()))
        for name in ("web", "second"):
            yield raw_request(port_of(proxy.listener(name)), GET)
        self.assertEqual(logged_listeners(first), ["web", "second"])
        with open(second) as f:
            lines = [json.loads(line) for line in f.read().splitlines()]
        self.assertEqual([line["listener"] for line in lines], ["web", "second"])
        self.assertEqual(len(proxy.root.observability.access_logs), 1)

    @defer.inlineCallbacks
    def test_an_access_log_that_cannot_be_opened_refuses_the_reload(self):
        kept = os.path.abspath(self.mktemp())
        proxy = yield self.started(f'[access_log]\npath = "{kept}"\n')
        missing = os.path.join(os.path.abspath(self.mktemp()), "no-such-dir", "access.log")
        proxy.write(proxy.backend_port, extra=f'[access_log]\npath = "{missing}"\n')

        self.assertFalse((yield proxy.reloader.reload()))

        [event] = proxy.messages("reload refused: {error}")
        self.assertEqual(
            event["error"],
            f"{proxy.path}: access_log.path: cannot open {missing}: No such file or directory",
        )
        yield raw_request(port_of(proxy.listener()), GET)
        self.assertEqual(logged_listeners(kept), ["web"])

    @defer.inlineCallbacks
    def test_the_admin_listener_takes_a_new_metrics_path_and_a_new_bind(self):
        pool = HTTPConnectionPool(reactor, persistent=False)
        first, second = free_port(), free_port()
        admin = '[admin]\nbind = "tcp:{port}:interface=127.0.0.1"\nmetrics_path = "{path}"\n'
        proxy = yield self.started(admin.format(port=first, path="/metrics"))

        def get(port, path):
            return treq.get(f"http://127.0.0.1:{port}{path}", pool=pool)

        self.assertEqual((yield get(first, "/metrics")).code, 200)

        proxy.write(proxy.backend_port, extra=admin.format(port=first, path="/prometheus"))
        self.assertTrue((yield proxy.reloader.reload()))
        self.assertEqual((yield get(first, "/prometheus")).code, 200)
        self.assertEqual((yield get(first, "/metrics")).code, 404)

        proxy.write(proxy.backend_port, extra=admin.format(port=second, path="/prometheus"))
        self.assertTrue((yield proxy.reloader.reload()))
        response = yield get(second, "/api/status")
        self.assertEqual(json.loads((yield response.content()))["config"], proxy.path)
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", first).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)

        proxy.write(proxy.backend_port)
        self.assertTrue((yield proxy.reloader.reload()))
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", second).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)
        self.assertIsNone(proxy.root.namedServices.get("admin"))

    @defer.inlineCallbacks
    def test_an_admin_bind_in_use_refuses_the_reload_and_the_old_one_serves(self):
        pool = HTTPConnectionPool(reactor, persistent=False)
        first = free_port()
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        admin = '[admin]\nbind = "tcp:{port}:interface=127.0.0.1"\n'
        proxy = yield self.started(admin.format(port=first))

        proxy.write(proxy.backend_port, extra=admin.format(port=busy))
        self.assertFalse((yield proxy.reloader.reload()))

        [event] = proxy.messages("reload refused: {service}: {error}")
        self.assertEqual(event["service"], "admin")
        self.assertIn(f"cannot listen on 127.0.0.1:{busy}", event["error"])
        response = yield treq.get(f"http://127.0.0.1:{first}/api/status", pool=pool)
        self.assertEqual(response.code, 200)
        yield response.content()


class DrainTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_drain_sends_1001_to_clients_1000_to_backends_and_finishes_http(self):
        proxy = ProxyProcess(self)
        backend, ws_port = proxy.backend()
        ws_port = yield ws_port
        proxy.write(ws_port)
        proxy.start()
        service = proxy.listener()
        port = port_of(service)
        client = proxy.client(port)
        yield client.opened
        idle = raw_request(port, b"")
        yield task.deferLater(reactor, 0.05, lambda: None)
        started = time.monotonic()

        drained = yield drain([service], reactor, timeout=5)

        self.assertTrue(drained)
        self.assertLess(time.monotonic() - started, 5)
        wasClean, code, reason = yield client.closed
        self.assertEqual((wasClean, code, reason), (True, 1001, "proxy shutting down"))
        self.assertEqual(backend.closes[-1][:2], (True, 1000))
        self.assertEqual((yield idle), b"")
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)

    @defer.inlineCallbacks
    def test_request_under_way_finishes_with_connection_close(self):
        proxy = ProxyProcess(self)
        delayed = DelayedHTTPBackend(0.3)
        backend_port = yield proxy.listen(delayed)
        proxy.write(backend_port)
        proxy.start()
        service = proxy.listener()
        response = raw_request(port_of(service), b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        yield task.deferLater(reactor, 0.1, lambda: None)

        drained = yield drain([service], reactor, timeout=5)

        self.assertTrue(drained)
        data = yield response
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertIn(b"connection: close", data.lower())
        self.assertTrue(data.endswith(b"slow answer"))

    @defer.inlineCallbacks
    def test_drain_timeout_cuts_what_is_left(self):
        proxy = ProxyProcess(self)
        delayed = DelayedHTTPBackend(30)
        backend_port = yield proxy.listen(delayed)
        proxy.write(backend_port)
        proxy.start()
        service = proxy.listener()
        response = raw_request(port_of(service), b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        yield task.deferLater(reactor, 0.1, lambda: None)
        started = time.monotonic()

        drained = yield drain([service], reactor, timeout=0.3)

        self.assertFalse(drained)
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual((yield response), b"")
        delayed.cut()

    @defer.inlineCallbacks
    def test_a_connection_still_waiting_for_its_proxy_header_is_closed_at_once(self):
        proxy = ProxyProcess(self)
        _, ws_port = proxy.backend()
        proxy.write((yield ws_port), bind="haproxy:tcp:0:interface=127.0.0.1")
        proxy.start()
        service = proxy.listener()
        waiting = raw_request(port_of(service), b"PROXY TCP4 203.0.")
        yield task.deferLater(reactor, 0.1, lambda: None)
        started = time.monotonic()

        drained = yield drain([service], reactor, timeout=5)

        self.assertTrue(drained)
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual((yield waiting), b"")


class DelayedHTTPBackend(Factory):
    """Answers each request with ``200 slow answer`` after ``delay`` seconds."""

    def __init__(self, delay):
        self.delay = delay
        self.calls = []
        self.transports = []

    def buildProtocol(self, addr):
        backend = self

        class Delayed(Protocol):
            def connectionMade(self):
                backend.transports.append(self.transport)

            def dataReceived(self, data):
                if b"\r\n\r\n" in data:
                    backend.calls.append(reactor.callLater(backend.delay, self.answer))

            def answer(self):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nslow answer")

        return Delayed()

    def cut(self):
        for call in self.calls:
            if call.active():
                call.cancel()
        for transport in self.transports:
            transport.abortConnection()


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class Twistd:
    """``twistd -n clbproxy`` in a real process, its stdout and stderr in one file."""

    def __init__(self, testcase):
        self.testcase = testcase
        self.directory = os.path.abspath(testcase.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "tap.conf")
        self.log_path = os.path.join(self.directory, "out.log")
        self.process = None

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    @defer.inlineCallbacks
    def start(self):
        self.process = spawn_twistd(self.testcase, self.path, self.directory, self.log_path)
        self.testcase.addCleanup(self._end)
        yield self.wait_for(lambda: "starting on" in self.log() or self.process.poll() is not None)
        self.testcase.assertIsNone(self.process.poll(), self.log())

    def _end(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def kill(self, signum):
        os.kill(self.process.pid, signum)

    @defer.inlineCallbacks
    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.testcase.fail(f"timed out waiting; log:\n{self.log()[-3000:]}")
            yield task.deferLater(reactor, 0.05, lambda: None)

    def wait_for_log(self, text, count=1, timeout=10.0):
        return self.wait_for(lambda: self.log().count(text) >= count, timeout)

    def exited(self, timeout=10.0):
        return self.wait_for(lambda: self.process.poll() is not None, timeout)


class TwistdSignalTests(unittest.TestCase):
    """The real process: SIGHUP reloads, SIGTERM drains and exits, SIGUSR1 reopens logs."""

    @defer.inlineCallbacks
    def test_sigterm_sends_1001_and_exits_within_the_drain_timeout(self):
        listening = Listening(self)
        backend, backend_port = listening.backend()
        backend_port = yield backend_port
        port = free_port()
        twistd = Twistd(self)
        twistd.write(
            config_text(backend_port, drain_timeout=2, bind=f"tcp:{port}:interface=127.0.0.1")
        )
        yield twistd.start()
        client = listening.client(port)
        yield client.opened

        twistd.kill(signal.SIGHUP)
        yield twistd.wait_for_log("reloaded")

        started = time.monotonic()
        twistd.kill(signal.SIGTERM)
        wasClean, code, _ = yield client.closed
        self.assertEqual((wasClean, code), (True, 1001))
        yield twistd.exited(timeout=5)
        self.assertLess(time.monotonic() - started, 2 + 1)
        # twistd ends by re-raising the signal it stopped on, as daemons do.
        self.assertEqual(twistd.process.returncode, -signal.SIGTERM, twistd.log())
        self.assertIn("drained in", twistd.log())
        self.assertIn("Server Shut Down", twistd.log())
        self.assertEqual(backend.closes[-1][:2], (True, 1000))

    @defer.inlineCallbacks
    def test_sighup_removing_a_listener_keeps_its_session_until_sigterm_sends_1001(self):
        listening = Listening(self)
        _, backend_port = listening.backend()
        backend_port = yield backend_port
        kept, removed = free_port(), free_port()
        bind = f"tcp:{kept}:interface=127.0.0.1"
        second = SECOND_LISTENER.replace("tcp:0:", f"tcp:{removed}:")
        twistd = Twistd(self)
        twistd.write(config_text(backend_port, drain_timeout=2, bind=bind, extra=second))
        yield twistd.start()
        client = listening.client(removed)
        protocol = yield client.opened

        twistd.write(config_text(backend_port, drain_timeout=2, bind=bind))
        twistd.kill(signal.SIGHUP)
        yield twistd.wait_for_log("reloaded")

        self.assertIn("1 listener(s) kept, 0 started, 1 stopped", twistd.log())
        attempt = TCP4ClientEndpoint(reactor, "127.0.0.1", removed).connect(Factory())
        yield self.assertFailure(attempt, ConnectionRefusedError)
        protocol.sendMessage(b"still here")
        messages = yield client.wait_messages(1)
        self.assertEqual(messages, [(b"still here", False)])
        twistd.kill(signal.SIGTERM)
        wasClean, code, _ = yield client.closed
        self.assertEqual((wasClean, code), (True, 1001))
        yield twistd.exited()
        self.assertIn("drained in", twistd.log())

    @defer.inlineCallbacks
    def test_an_access_log_on_stdout_stays_plain_lines_after_sigusr1_and_sighup(self):
        listening = Listening(self)
        backend_port = yield listening.raw_backend(OK)
        port = free_port()
        bind = f"tcp:{port}:interface=127.0.0.1"
        twistd = Twistd(self)
        twistd.write(config_text(backend_port, bind=bind, top='[access_log]\npath = "-"\n'))
        yield twistd.start()

        def request(path):
            return raw_request(
                port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )

        def lines_with(text):
            return [line for line in twistd.log().splitlines() if text in line]

        yield request("/at-start")
        twistd.kill(signal.SIGUSR1)
        yield twistd.wait_for_log("log files reopened")
        yield request("/after-sigusr1")
        twistd.write(
            config_text(backend_port, bind=bind, top='[access_log]\npath = "-"\nformat = "json"\n')
        )
        twistd.kill(signal.SIGHUP)
        yield twistd.wait_for_log("reloaded")
        yield request("/after-sighup")
        yield twistd.wait_for(lambda: lines_with('"/after-sighup"'))

        for path in ("/at-start", "/after-sigusr1"):
            [line] = lines_with(f'"GET {path} HTTP/1.1"')
            self.assertRegex(
                line,
                r"^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
                f'"GET {path} HTTP/1.1" 200 2 "-" "-" type=http listener=web ',
            )
        [line] = lines_with('"/after-sighup"')
        record = json.loads(line)
        self.assertEqual((record["path"], record["status"]), ("/after-sighup", 200))
        self.assertEqual(lines_with("[stdout#"), [])

    @defer.inlineCallbacks
    def test_sighup_while_draining_is_ignored_and_the_drain_ends_normally(self):
        listening = Listening(self)
        held = DelayedHTTPBackend(30)
        self.addCleanup(held.cut)
        backend_port = yield listening.listen(held)
        port = free_port()
        twistd = Twistd(self)
        bind = f"tcp:{port}:interface=127.0.0.1"
        twistd.write(config_text(backend_port, drain_timeout=30, bind=bind))
        yield twistd.start()
        response = raw_request(port, b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        yield twistd.wait_for(lambda: held.calls)

        twistd.kill(signal.SIGTERM)
        yield twistd.wait_for_log("draining: 1 connection(s)")
        twistd.kill(signal.SIGHUP)
        yield twistd.wait_for_log("reload ignored while draining")
        twistd.kill(signal.SIGUSR1)
        yield twistd.wait_for_log("log files reopened")

        self.assertIsNone(twistd.process.poll(), twistd.log())
        self.assertNotIn("reloading", twistd.log())
        for call in held.calls:
            call.reset(0)
        data = yield response
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertTrue(data.endswith(b"slow answer"), data)
        yield twistd.exited()
        self.assertEqual(twistd.process.returncode, -signal.SIGTERM, twistd.log())
        self.assertIn("drained in", twistd.log())
        self.assertEqual(twistd.log().count("reload ignored while draining"), 1)

    @defer.inlineCallbacks
    def test_sigusr1_reopens_the_access_log_file_logrotate_moved(self):
        listening = Listening(self)
        backend_port = yield listening.raw_backend(OK)
        port = free_port()
        twistd = Twistd(self)
        access_log = os.path.join(twistd.directory, "access.log")
        twistd.write(
            config_text(
                backend_port,
                bind=f"tcp:{port}:interface=127.0.0.1",
                top=f'[access_log]\npath = "{access_log}"\n',
            )
        )
        yield twistd.start()

        def request(path):
            return raw_request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{CLOSE}".encode())

        def paths(name):
            with open(name) as f:
                return [line.split('"GET ')[1].split()[0] for line in f.read().splitlines()]

        yield request("/before")
        yield twistd.wait_for(lambda: os.path.getsize(access_log) > 0)
        os.rename(access_log, access_log + ".1")
        yield request("/moved")

        twistd.kill(signal.SIGUSR1)
        yield twistd.wait_for_log("log files reopened")
        yield request("/reopened")

        yield twistd.wait_for(lambda: os.path.exists(access_log) and paths(access_log))
        self.assertEqual(paths(access_log + ".1"), ["/before", "/moved"])
        self.assertEqual(paths(access_log), ["/reopened"])
