"""WebSocket over HTTP/2 (RFC 8441) over real sockets on 127.0.0.1, to the demo backend.

A Python ``h2`` client over TLS (ALPN ``h2``) opens the demo's echo as an
extended CONNECT stream and exchanges text and binary messages; headless
Chromium loads the demo page over HTTP/2 and, with ``websocket_over_http2``,
runs its WebSockets as streams of that connection (the proxy's access log says
``HTTP/2.0`` for the sessions), without it over HTTP/1.1 connections.
"""

from __future__ import annotations

import json
import os

import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset
from twisted.internet import defer, reactor, task, threads
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import DemoBackendConfig
from clbproxy.demo.backend import ChatRoom, demo_service
from clbproxy.observability.accesslog import is_access_event
from tests.integration import test_rebalance_browser
from tests.integration.test_http2 import open_tls
from tests.integration.test_status_page import CHROMIUM
from tests.support.network import Listening
from tests.support.tls import certificate_files, tls_config

TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


def masked(opcode: int, payload: bytes) -> bytes:
    """A client's frame (zero mask key, payload under 64 KiB)."""
    if len(payload) < 126:
        head = bytes((0x80 | opcode, 0x80 | len(payload)))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + len(payload).to_bytes(2, "big")
    return head + b"\x00" * 4 + payload


def read_frame(data: bytes):
    """``(opcode, payload, rest)`` of the first complete server frame in ``data``, or None."""
    if len(data) < 2:
        return None
    length, at = data[1] & 0x7F, 2
    if length == 126:
        length, at = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        length, at = int.from_bytes(data[2:10], "big"), 10
    if len(data) < at + length:
        return None
    return data[0] & 0x0F, data[at : at + length], data[at + length :]


def echo_over_http2(port: int, messages) -> dict:
    """Open the echo as an extended CONNECT, send ``messages``, close (blocking)."""
    sock = open_tls(port, ["h2"])
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    seen: dict = {"settings": None, "headers": {}, "frames": [], "ended": False}
    buffer = b""

    def read() -> None:
        nonlocal buffer
        data = sock.recv(65536)
        if not data:
            raise AssertionError("the proxy closed the connection")
        for event in client.receive_data(data):
            if isinstance(event, ResponseReceived):
                seen["headers"] = dict(event.headers)
            elif isinstance(event, DataReceived):
                buffer += event.data
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (StreamEnded, StreamReset)):
                seen["ended"] = True
        sock.sendall(client.data_to_send())

    try:
        while not client.remote_settings.get(8):  # SETTINGS_ENABLE_CONNECT_PROTOCOL
            read()
        stream_id = client.get_next_available_stream_id()
        client.send_headers(
            stream_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":authority", b"a.example.com"),
                (b":path", b"/echo"),
                (b"sec-websocket-version", b"13"),
                (b"sec-websocket-protocol", b"echo.v1"),
            ],
        )
        sock.sendall(client.data_to_send())
        while not seen["headers"]:
            read()
        for opcode, payload in (*messages, (CLOSE, b"\x03\xe8")):
            client.send_data(stream_id, masked(opcode, payload))
            sock.sendall(client.data_to_send())
            while True:
                found = read_frame(buffer)
                if found is not None:
                    got_opcode, got, buffer = found
                    seen["frames"].append((got_opcode, got))
                    break
                read()
        while not seen["ended"]:
            read()
    finally:
        sock.close()
    return seen


class ProxyTestCase(unittest.TestCase):
    """A proxy on an HTTPS listener with ``http2 = true`` in front of a demo backend."""

    def setUp(self) -> None:
        self.net = Listening(self)
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.certificate = certificate_files(self.dir, trustme.CA(), "a.example.com")
        self.events: list = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    @defer.inlineCallbacks
    def proxy(self, **options):
        demo = demo_service(
            DemoBackendConfig("demo-a", "tcp:0:interface=127.0.0.1"), ChatRoom(reactor), reactor
        )
        demo.startService()
        self.addCleanup(demo.stopService)
        backend = (yield demo.whenListening()).getHost().port
        options.setdefault("tls", tls_config(self.certificate))
        port = yield self.net.proxy([backend], protocol="https", http2=True, **options)
        return port

    def sessions(self) -> list:
        return [e for e in self.events if is_access_event(e) and e["type"] == "websocket"]


class WebSocketOverHTTP2Tests(ProxyTestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_text_and_binary_echo_over_an_http2_stream(self):
        port = yield self.proxy(websocket_over_http2=True)
        seen = yield threads.deferToThread(
            echo_over_http2, port, [(TEXT, "héllo".encode()), (BINARY, bytes(range(256)) * 4)]
        )
        self.assertEqual(
            (seen["headers"][b":status"], seen["headers"].get(b"sec-websocket-protocol")),
            (b"200", b"echo.v1"),
        )
        self.assertEqual(
            seen["frames"],
            [(TEXT, "héllo".encode()), (BINARY, bytes(range(256)) * 4), (CLOSE, b"\x03\xe8")],
        )
        for _ in range(50):
            if self.sessions():
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        (record,) = self.sessions()
        self.assertEqual(
            (record["protocol"], record["status"], record["client_close_code"]),
            ("HTTP/2.0", 101, 1000),
        )


class BrowserTests(ProxyTestCase):
    """Headless Chromium on the demo page, served over HTTP/2 (a test certificate)."""

    timeout = 90
    open_page = test_rebalance_browser.RelievedPageTests.open_page

    def setUp(self) -> None:
        if CHROMIUM is None:
            raise unittest.SkipTest("chromium is not installed (apt-get install chromium)")
        super().setUp()
        flags = (*test_rebalance_browser.CHROMIUM_FLAGS, "--ignore-certificate-errors")
        self.patch(test_rebalance_browser, "CHROMIUM_FLAGS", flags)

    @defer.inlineCallbacks
    def page_echo(self, port: int):
        """Open the page, echo one text message, close the echo: the page's echo log."""
        devtools = yield self.open_page(f"https://127.0.0.1:{port}/")
        states = None
        for _ in range(200):
            states = json.loads((yield devtools.evaluate(test_rebalance_browser.STATES)) or "null")
            if states and states[0][0] == "open":
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(states[0][0], "open", states)
        yield devtools.evaluate(
            "document.getElementById('echo-text').value = 'over h2';"
            "document.getElementById('echo-text-form').requestSubmit(); 1"
        )
        for _ in range(200):
            states = json.loads((yield devtools.evaluate(test_rebalance_browser.STATES)) or "null")
            if "back in" in states[0][2]:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        yield devtools.evaluate("document.getElementById('echo-toggle').click(); 1")
        for _ in range(200):
            if self.sessions():
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        return states[0][2]

    def page_requests(self) -> set:
        return {e["protocol"] for e in self.events if is_access_event(e) and e["type"] == "http"}

    @defer.inlineCallbacks
    def test_the_pages_websocket_is_a_stream_of_its_http2_connection(self):
        port = yield self.proxy(websocket_over_http2=True)
        log = yield self.page_echo(port)
        self.assertIn("“over h2”", log)
        self.assertEqual(self.page_requests(), {"HTTP/2.0"})
        self.assertEqual(
            [(record["path"], record["protocol"]) for record in self.sessions()],
            [("/echo", "HTTP/2.0")],
        )

    @defer.inlineCallbacks
    def test_without_it_the_pages_websocket_opens_over_http11(self):
        port = yield self.proxy()
        log = yield self.page_echo(port)
        self.assertIn("“over h2”", log)
        self.assertEqual(self.page_requests(), {"HTTP/2.0"})
        self.assertEqual(
            [(record["path"], record["protocol"]) for record in self.sessions()],
            [("/echo", "HTTP/1.1")],
        )
