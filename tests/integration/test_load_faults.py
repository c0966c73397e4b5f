"""Signals under load: a real ``twistd clbproxy`` with hundreds of busy sessions (127.0.0.1).

Two faults an operator causes while traffic flows:

- SIGHUP with a broken tap.conf (a half-written file): the problem is logged once,
  as one line, and no session is cut, no message lost or reordered, no HTTP
  request fails; the next SIGHUP with a valid file (new weights) applies to new
  sessions while the old ones go on.
- SIGTERM: every WebSocket client gets 1001, HTTP requests under way complete, and
  the process exits within ``drain_timeout`` without a traceback.
"""

from __future__ import annotations

import os
import signal
import time

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.hostile.catalog import LOG_ALARMS
from tests.integration.test_lifecycle import free_port
from tests.support.network import Listening, raw_request, spawn_twistd
from tests.support.websocket import QuietClientFactory, QuietClientProtocol

#: Sessions kept busy at once; each has one sequence-numbered message in flight.
SESSIONS = 200
#: HTTP clients looping over requests at once.
HTTP_CLIENTS = 10

CONFIG = """
drain_timeout = {drain}
[[listener]]
name = "web"
bind = "tcp:{port}:interface=127.0.0.1"
  [[listener.rule]]
  path = "/api/"
  target_group = "http"
  [[listener.rule]]
  target_group = "ws"
[target_group.ws]
backends = [
  {{ address = "127.0.0.1:{a}", weight = {weight_a} }},
  {{ address = "127.0.0.1:{b}", weight = {weight_b} }},
]
[target_group.http]
backends = ["127.0.0.1:{http}"]
"""


class SlowResource(Resource):
    """Answers ``/api/...`` after ``delay`` seconds with a body naming the path."""

    isLeaf = True

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.pending = []

    def render_GET(self, request):
        body = b"answer for " + request.path

        def answer():
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()

        call = reactor.callLater(self.delay, answer)
        self.pending.append(call)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return NOT_DONE_YET


class Session(QuietClientProtocol):
    """Sends sequence-numbered messages, one in flight, and checks every echo."""

    def send_next(self):
        if not self.factory.running:
            return
        sent = self.factory.sent
        payload = b"%d:%d:" % (self.factory.sid, sent) + b"x" * (sent % 7 * 100)
        self.factory.sent += 1
        self.sendMessage(payload, isBinary=sent % 2 == 0)

    def onMessage(self, payload, isBinary):
        factory = self.factory
        expected = b"%d:%d:" % (factory.sid, factory.received)
        if not payload.startswith(expected) or isBinary != (factory.received % 2 == 0):
            factory.problems.append(f"session {factory.sid}: got {payload[:20]!r}")
        factory.received += 1
        self.send_next()


class SessionFactory(QuietClientFactory):
    protocol = Session

    def __init__(self, port: int, sid: int) -> None:
        super().__init__(
            f"ws://127.0.0.1:{port}/echo",
            close_timeout=5,
            options={"openHandshakeTimeout": 10},
        )
        self.sid = sid
        self.sent = self.received = 0
        self.running = False
        self.problems: list[str] = []

    def start(self, protocol) -> None:
        self.protocol_instance = protocol
        self.running = True
        protocol.send_next()

    def stop(self) -> None:
        self.running = False


class HTTPLoop:
    """``clients`` loops of ``GET /api/N`` on fresh connections; counts answers and failures."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.running = True
        self.answered = 0
        self.failures: list[str] = []
        self.done = defer.DeferredList([self._loop(i) for i in range(clients)])

    @defer.inlineCallbacks
    def _loop(self, index: int):
        count = 0
        while self.running:
            path = b"/api/%d/%d" % (index, count)
            count += 1
            response = yield raw_request(
                self.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            if response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"answer for " + path):
                self.answered += 1
            else:
                self.failures.append(f"{path.decode()}: {response[:80]!r}")


class LoadFaultTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.net = Listening(self)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "tap.conf")
        self.log_path = os.path.join(self.directory, "proxy.log")
        self.port = free_port()
        self.sessions: list[SessionFactory] = []
        self.addCleanup(self._cut_sessions)

    def _cut_sessions(self):
        for factory in self.sessions:
            factory.stop()
            protocol = getattr(factory, "protocol_instance", None)
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abortConnection()

    def write_config(self, weights=(10, 10), drain=10, text=None):
        with open(self.path, "w") as f:
            f.write(
                text
                if text is not None
                else CONFIG.format(
                    drain=drain,
                    port=self.port,
                    a=self.ports[0],
                    b=self.ports[1],
                    http=self.ports[2],
                    weight_a=weights[0],
                    weight_b=weights[1],
                )
            )

    @defer.inlineCallbacks
    def start_backends(self, http_delay: float):
        self.a, a_port = self.net.backend(deflate=False)
        self.b, b_port = self.net.backend(deflate=False)
        self.http = SlowResource(http_delay)
        http_port = self.net.listen(Site(self.http))
        self.ports = [(yield a_port), (yield b_port), (yield http_port)]
        self.addCleanup(lambda: [c.cancel() for c in self.http.pending if c.active()])

    @defer.inlineCallbacks
    def start_proxy(self):
        self.process = spawn_twistd(self, self.path, self.directory, self.log_path)
        self.addCleanup(self.process.wait)
        self.addCleanup(lambda: self.process.poll() is None and self.process.kill())
        yield self.wait_for(lambda: "starting on" in self.log() or self.process.poll() is not None)
        self.assertIsNone(self.process.poll(), self.log())

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @defer.inlineCallbacks
    def wait_for(self, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting; log:\n{self.log()[-2000:]}")
            yield task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def open_sessions(self, count: int):
        """``count`` more busy sessions, opened 50 at a time."""
        fresh = []
        for first in range(0, count, 50):
            batch = []
            for sid in range(len(self.sessions), len(self.sessions) + min(50, count - first)):
                factory = SessionFactory(self.port, sid)
                self.sessions.append(factory)
                batch.append(factory)
                TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=10).connect(factory)
            protocols = yield defer.gatherResults([f.opened for f in batch])
            for factory, protocol in zip(batch, protocols):
                factory.start(protocol)
            fresh += batch
        return fresh

    def received(self) -> int:
        return sum(f.received for f in self.sessions)

    @defer.inlineCallbacks
    def run_for(self, seconds: float):
        """Let the traffic run; fails if messages stopped flowing."""
        before = self.received()
        yield task.deferLater(reactor, seconds, lambda: None)
        self.assertGreater(self.received(), before + len(self.sessions), "traffic stalled")

    def assert_no_alarm(self):
        text = self.log()
        for alarm in LOG_ALARMS:
            self.assertNotIn(alarm, text, text[-3000:])

    @defer.inlineCallbacks
    def test_broken_config_on_sighup_under_load_cuts_nothing_and_a_valid_one_applies(self):
        yield self.start_backends(http_delay=0.05)
        self.write_config(weights=(10, 10))
        good = open(self.path).read()
        yield self.start_proxy()
        yield self.open_sessions(SESSIONS)
        http = HTTPLoop(self.port, HTTP_CLIENTS)
        yield self.run_for(1.0)

        # A half-written file, as an editor saving over tap.conf leaves it.
        self.write_config(text=good[: good.index("weight = 10") + 9])
        os.kill(self.process.pid, signal.SIGHUP)
        yield self.wait_for(lambda: "keeps serving" in self.log())
        yield self.run_for(1.0)

        opened_a, opened_b = len(self.a.opened), len(self.b.opened)
        self.write_config(weights=(0, 10))
        os.kill(self.process.pid, signal.SIGHUP)
        yield self.wait_for(lambda: "reloaded" in self.log())
        yield self.open_sessions(50)
        yield self.run_for(1.0)

        http.running = False
        yield http.done
        for factory in self.sessions:
            factory.stop()
        yield self.wait_for(lambda: all(f.received == f.sent for f in self.sessions))
        self.assertEqual([p for f in self.sessions for p in f.problems], [])
        self.assertEqual([f.sid for f in self.sessions if f.closed.called], [])
        self.assertEqual(http.failures, [])
        self.assertGreater(http.answered, HTTP_CLIENTS)
        # Weight 0 takes no new sessions: all 50 went to b, a kept its own.
        self.assertEqual((len(self.a.opened), len(self.b.opened)), (opened_a, opened_b + 50))
        self.assertEqual(len(self.a.closes), 0)

        text = self.log()
        lines = [line for line in text.splitlines() if f"reload refused: {self.path}: " in line]
        self.assertEqual(len(lines), 1, text[-3000:])
        self.assertIn("reload refused: 1 problem(s); the running configuration keeps serving", text)
        self.assertEqual(text.count("reloaded "), 1)
        self.assert_no_alarm()

        for factory in self.sessions:
            factory.protocol_instance.sendClose(1000)
        closes = yield defer.gatherResults([f.closed for f in self.sessions])
        self.assertEqual({(clean, code) for clean, code, _ in closes}, {(True, 1000)})

    @defer.inlineCallbacks
    def test_sigterm_under_load_sends_1001_finishes_http_and_exits_within_drain_timeout(self):
        drain_timeout = 5
        yield self.start_backends(http_delay=2.0)
        self.write_config(drain=drain_timeout)
        yield self.start_proxy()
        yield self.open_sessions(SESSIONS)
        http = HTTPLoop(self.port, HTTP_CLIENTS)
        yield self.run_for(1.0)
        # A slow request with at least a second to go is under way on every HTTP client.
        yield self.wait_for(
            lambda: (
                sum(
                    1
                    for call in self.http.pending
                    if call.active() and call.getTime() - reactor.seconds() > 1.0
                )
                >= HTTP_CLIENTS
            )
        )
        answered = http.answered

        started = time.monotonic()
        os.kill(self.process.pid, signal.SIGTERM)
        http.running = False
        closes = yield defer.gatherResults([f.closed for f in self.sessions])
        yield http.done
        yield self.wait_for(lambda: self.process.poll() is not None, timeout=drain_timeout + 2)
        elapsed = time.monotonic() - started

        self.assertEqual(
            {(clean, code, reason) for clean, code, reason in closes},
            {(True, 1001, "proxy shutting down")},
        )
        self.assertEqual([p for f in self.sessions for p in f.problems], [])
        self.assertEqual(http.failures, [])
        self.assertEqual(http.answered - answered, HTTP_CLIENTS)
        self.assertGreater(elapsed, 1.0)
        self.assertLess(elapsed, drain_timeout)
        self.assertEqual(self.process.returncode, -signal.SIGTERM)
        text = self.log()
        self.assertIn("drained in", text)
        self.assertNotIn("drain timeout", text)
        self.assert_no_alarm()
        self.assertEqual({code for _, code, _ in self.a.closes + self.b.closes}, {1000})
