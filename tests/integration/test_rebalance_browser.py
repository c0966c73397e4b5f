"""Headless Chromium: the demo page's WebSockets, relieved by the proxy, reconnect and go on.

The page runs in real time (a reconnection is real network traffic), so the test
watches it through the DevTools protocol instead of dumping the DOM once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from clbproxy.config import DemoBackendConfig
from clbproxy.demo.backend import ChatRoom, demo_service
from clbproxy.ws.hops import cancel_close_timer
from tests.integration.test_status_page import CHROMIUM, CHROMIUM_FLAGS
from tests.support.observed import Observed

#: What the page says about its two WebSockets.
STATES = (
    "JSON.stringify(['echo', 'chat'].map((name) => {"
    " const s = document.getElementById(name + '-state');"
    " return [s.dataset.state, s.dataset.reconnects || '0',"
    " document.getElementById(name + '-log').textContent]; }))"
)


class Browser(protocol.ProcessProtocol):
    """Headless Chromium on one page, with its DevTools endpoint on an ephemeral port."""

    def __init__(self) -> None:
        self.listening = defer.Deferred()
        self.ended = defer.Deferred()
        self._stderr = b""

    def errReceived(self, data: bytes) -> None:
        self._stderr += data
        found = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self._stderr)
        if found and not self.listening.called:
            self.listening.callback(int(found.group(1)))

    def processEnded(self, reason) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(self._stderr.decode("utf-8", "replace")[-2000:]))
        self.ended.callback(None)


class DevTools(WebSocketClientProtocol):
    """Sends ``Runtime.evaluate`` requests and fires each answer's value."""

    def onOpen(self) -> None:
        self.waiting = {}
        self.number = 0
        self.factory.opened.callback(self)

    def evaluate(self, expression: str) -> defer.Deferred:
        self.number += 1
        self.waiting[self.number] = answered = defer.Deferred()
        request = {"id": self.number, "method": "Runtime.evaluate"}
        request["params"] = {"expression": expression, "returnByValue": True}
        self.sendMessage(json.dumps(request).encode())
        return answered

    def onMessage(self, payload, isBinary) -> None:
        message = json.loads(payload)
        answered = self.waiting.pop(message.get("id"), None)
        if answered is not None:
            answered.callback(message.get("result", {}).get("result", {}).get("value"))

    def onClose(self, wasClean, code, reason) -> None:
        cancel_close_timer(self)


class RelievedPageTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def setUp(self):
        if CHROMIUM is None:
            raise unittest.SkipTest("chromium is not installed (apt-get install chromium)")
        demo = demo_service(
            DemoBackendConfig("demo-a", "tcp:0:interface=127.0.0.1"), ChatRoom(reactor), reactor
        )
        demo.startService()
        self.addCleanup(demo.stopService)
        port = (yield demo.whenListening()).getHost().port
        self.net = Observed(self)
        yield self.net.start([port], log_path=self.mktemp())
        self.group = self.net.groups["pool"]
        self.address = f"127.0.0.1:{port}"

    def relieve_the_first_sessions(self, count: int) -> None:
        """Shed the page's first ``count`` sessions as soon as they are open."""
        rebalancer = self.group.rebalancer
        rebalancer.start()
        self.addCleanup(rebalancer.stop)

        def shed() -> None:
            if rebalancer.relieved[self.address, "shed"] < count:
                rebalancer.shed(self.address, 1.0, 0)

        loop = task.LoopingCall(shed)
        loop.start(0.01)
        self.addCleanup(lambda: loop.running and loop.stop())

    @defer.inlineCallbacks
    def open_page(self, url: str):
        """Chromium showing ``url``; a DevTools connection to that page."""
        profile = tempfile.mkdtemp(prefix="clbproxy-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        browser = Browser()
        flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]
        process = reactor.spawnProcess(
            browser,
            CHROMIUM,
            [CHROMIUM, *flags, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
            env={"HOME": profile, "PATH": os.environ.get("PATH", "")},
        )

        def stop():
            if browser.ended.called:
                return None
            process.signalProcess("KILL")
            return browser.ended

        self.addCleanup(stop)
        devtools_port = yield browser.listening
        pool = HTTPConnectionPool(reactor, persistent=False)
        pages = []
        for _ in range(100):
            response = yield treq.get(f"http://127.0.0.1:{devtools_port}/json/list", pool=pool)
            pages = [p for p in (yield response.json()) if p.get("type") == "page"]
            if pages:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        factory = WebSocketClientFactory(pages[0]["webSocketDebuggerUrl"])
        factory.protocol = DevTools
        factory.opened = defer.Deferred()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", devtools_port)
        connected = yield endpoint.connect(factory)
        self.addCleanup(lambda: connected.transport.abortConnection())
        devtools = yield factory.opened
        return devtools

    @defer.inlineCallbacks
    def test_the_page_reconnects_after_a_rebalance_close_and_carries_on(self):
        self.relieve_the_first_sessions(2)
        devtools = yield self.open_page(f"http://127.0.0.1:{self.net.port}/")
        states = None
        for _ in range(300):
            value = yield devtools.evaluate(STATES)
            states = json.loads(value) if value else None
            # Open again after one reconnect, and the chat's second join shown (it comes in
            # a message after the socket opened).
            if (
                states
                and all(state == ["open", "1"] for state in (s[:2] for s in states))
                and states[1][2].count("joined the room through") == 2
            ):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual([s[:2] for s in states], [["open", "1"], ["open", "1"]], states)
        echo_log, chat_log = states[0][2], states[1][2]
        for log in (echo_log, chat_log):
            self.assertIn('code 1001 (going away), reason "rebalance"', log)
            self.assertIn("the proxy asked to reconnect (rebalance)", log)
        # Carries on: the echo connects again, the chat joins the room again.
        self.assertEqual(echo_log.count("connected"), 2, echo_log)
        self.assertEqual(chat_log.count("joined the room through"), 2, chat_log)
        self.assertEqual(self.group.rebalancer.relieved[self.address, "shed"], 2)
