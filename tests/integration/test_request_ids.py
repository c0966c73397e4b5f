"""Request IDs and trace context over real sockets: backend, client, access log, error lines."""

from __future__ import annotations

import json
import re

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import RuleConfig
from tests.support.handshakes import upgrade_request
from tests.support.network import raw_request
from tests.support.observed import Observed, parse_plain, wait_for_lines

NEW_ID = re.compile(r"[0-9a-f]{32}\Z")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
MADE_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-00\Z")


class RecordingBackend(Protocol):
    """Answers 200 "hello" to one request and keeps the request's bytes."""

    def dataReceived(self, data):
        self.factory.received.append(data)
        if b"\r\n\r\n" in b"".join(self.factory.received):
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: backend-own\r\n"
                b"Connection: close\r\n\r\nhello"
            )
            self.transport.loseConnection()


def head_fields(message: bytes) -> list[tuple[str, str]]:
    """``(lower-case name, value)`` of each header line of an HTTP message, in order."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
    ]


def header(message: bytes, name: str) -> list[str]:
    return [value for key, value in head_fields(message) if key == name]


class _Fixture:
    log_format = "plain"
    listener_options: dict = {}
    rules = None

    @defer.inlineCallbacks
    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.net = Observed(self)
        factory = Factory.forProtocol(RecordingBackend)
        factory.received = []
        self.backend_received = factory.received
        self.backend, ws_port = self.net.backend()
        self.ws_port = yield ws_port
        self.http_port = yield self.http_backend(factory)
        self.log_path = self.mktemp()
        self.port = yield self.net.start(
            [self.http_port, self.ws_port],
            log_path=self.log_path,
            log_format=self.log_format,
            rules=self.rules,
            **self.listener_options,
        )

    def http_backend(self, factory):
        return self.net.listen(factory)

    def only(self, port):
        group = self.net.groups["pool"]
        for other in (self.http_port, self.ws_port):
            group.set_state(f"127.0.0.1:{other}", "ready" if other == port else "maint")

    def get(self, extra: bytes = b"", path: bytes = b"/hello"):
        self.only(self.http_port)
        return raw_request(
            self.port,
            b"GET "
            + path
            + b" HTTP/1.1\r\nHost: app.example\r\n"
            + extra
            + b"Connection: close\r\n\r\n",
        )

    def backend_request(self) -> bytes:
        return b"".join(self.backend_received)

    @defer.inlineCallbacks
    def access_line(self) -> dict:
        (line,) = yield wait_for_lines(self.log_path, 1)
        return json.loads(line) if self.log_format == "json" else parse_plain(line)

    def lines_about(self, request_id: str) -> list[dict]:
        """The main-log events (not access events) that name ``request_id``."""
        return [
            event
            for event in self.events
            if event.get("request_id") == request_id
            and event.get("log_namespace") != "clbproxy.access"
        ]


class HTTPRequestIdTests(_Fixture, unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_request_gets_an_id_the_backend_the_client_and_the_log_see(self):
        response = yield self.get()
        self.assertIn(b"hello", response)
        (sent,) = header(self.backend_request(), "x-request-id")
        self.assertRegex(sent, NEW_ID)
        self.assertEqual(header(response, "x-request-id"), [sent])
        fields = yield self.access_line()
        self.assertEqual(fields["request_id"], sent)

    @defer.inlineCallbacks
    def test_an_untrusted_clients_id_is_replaced(self):
        response = yield self.get(b"X-Request-Id: client-chosen\r\n")
        (sent,) = header(self.backend_request(), "x-request-id")
        self.assertRegex(sent, NEW_ID)
        self.assertEqual(header(response, "x-request-id"), [sent])

    @defer.inlineCallbacks
    def test_the_underscore_spelling_of_the_id_header_does_not_reach_the_backend(self):
        yield self.get(b"X_Request_Id: client-chosen\r\n")
        self.assertNotIn(b"client-chosen", self.backend_request())

    @defer.inlineCallbacks
    def test_a_traceparent_value_passes_byte_for_byte_and_is_logged(self):
        odd = b"traceparent:  \t" + TRACEPARENT.encode() + b"\r\ntracestate: a=1,b=2\r\n"
        yield self.get(odd)
        self.assertEqual(header(self.backend_request(), "traceparent"), [TRACEPARENT])
        self.assertEqual(header(self.backend_request(), "tracestate"), ["a=1,b=2"])
        fields = yield self.access_line()
        self.assertEqual(
            (fields["trace_id"], fields["parent_id"]),
            ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        )

    @defer.inlineCallbacks
    def test_a_malformed_traceparent_passes_unchanged_without_trace(self):
        yield self.get(b"traceparent: 00-NOT-VALID-01\r\ntracestate: a=1\r\n")
        self.assertEqual(header(self.backend_request(), "traceparent"), ["00-NOT-VALID-01"])
        self.assertEqual(header(self.backend_request(), "tracestate"), ["a=1"])
        fields = yield self.access_line()
        self.assertEqual((fields["trace_id"], fields["parent_id"]), ("-", "-"))

    @defer.inlineCallbacks
    def test_a_proxy_error_carries_the_id_in_its_header_json_body_log_lines_and_access_line(self):
        group = self.net.groups["pool"]
        group.set_state(f"127.0.0.1:{self.http_port}", "maint")
        group.set_state(f"127.0.0.1:{self.ws_port}", "maint")
        response = yield raw_request(
            self.port,
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 503"), response)
        (request_id,) = header(response, "x-request-id")
        body = json.loads(response.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(body["request_id"], request_id)
        fields = yield self.access_line()
        self.assertEqual((fields["status"], fields["request_id"]), ("503", request_id))

    @defer.inlineCallbacks
    def test_a_request_whose_line_is_refused_gets_a_new_id(self):
        response = yield raw_request(self.port, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 505"), response)
        (request_id,) = header(response, "x-request-id")
        self.assertRegex(request_id, NEW_ID)
        (line,) = self.lines_about(request_id)
        self.assertIn(f"request_id={request_id}", formatEvent(line))

    @defer.inlineCallbacks
    def test_a_request_refused_by_the_parser_in_its_headers_gets_an_id_and_a_log_line(self):
        response = yield raw_request(
            self.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine\r\n folded\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 400"), response)
        (request_id,) = header(response, "x-request-id")
        self.assertRegex(request_id, NEW_ID)
        self.assertEqual(len(self.lines_about(request_id)), 1)


class TrustedHTTPRequestIdTests(_Fixture, unittest.TestCase):
    listener_options = {"trusted_proxies": ("127.0.0.1/32",)}

    @defer.inlineCallbacks
    def test_a_trusted_proxys_id_is_kept_everywhere(self):
        response = yield self.get(b"X-Request-Id: upstream-42\r\n")
        self.assertEqual(header(self.backend_request(), "x-request-id"), ["upstream-42"])
        self.assertEqual(header(response, "x-request-id"), ["upstream-42"])
        fields = yield self.access_line()
        self.assertEqual(fields["request_id"], "upstream-42")

    @defer.inlineCallbacks
    def test_a_malformed_id_from_a_trusted_proxy_is_replaced(self):
        response = yield self.get(b"X-Request-Id: two words\r\n")
        (sent,) = header(self.backend_request(), "x-request-id")
        self.assertRegex(sent, NEW_ID)
        self.assertEqual(header(response, "x-request-id"), [sent])

    @defer.inlineCallbacks
    def test_a_parser_refusal_keeps_a_trusted_proxys_id(self):
        response = yield raw_request(
            self.port, b"GET / HTTP/1.1\r\nX-Request-Id: upstream-9\r\nHost: a\r\n folded\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 400"), response)
        self.assertEqual(header(response, "x-request-id"), ["upstream-9"])
        (line,) = self.lines_about("upstream-9")
        self.assertIn("request_id=upstream-9", formatEvent(line))


class NoBackendTests(_Fixture, unittest.TestCase):
    listener_options = {"trusted_proxies": ("127.0.0.1/32",)}

    @defer.inlineCallbacks
    def http_backend(self, factory):
        """A port nothing listens on any more: connections to it are refused."""
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        number = port.getHost().port
        yield port.stopListening()
        return number

    @defer.inlineCallbacks
    def test_a_502_carries_the_id_in_the_response_the_error_line_and_the_access_line(self):
        response = yield self.get(b"X-Request-Id: upstream-502\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 502"), response)
        self.assertEqual(header(response, "x-request-id"), ["upstream-502"])
        warnings = [e for e in self.lines_about("upstream-502") if "outcome" in e]
        self.assertEqual([e["outcome"] for e in warnings], ["answered 502"])
        fields = yield self.access_line()
        self.assertEqual((fields["status"], fields["request_id"]), ("502", "upstream-502"))


class NoRuleTests(_Fixture, unittest.TestCase):
    rules = (RuleConfig(target_group="pool", path="/api"),)

    @defer.inlineCallbacks
    def test_a_404_without_a_rule_carries_the_id(self):
        response = yield self.get(path=b"/elsewhere")
        self.assertTrue(response.startswith(b"HTTP/1.1 404"), response)
        (request_id,) = header(response, "x-request-id")
        fields = yield self.access_line()
        self.assertEqual((fields["status"], fields["request_id"]), ("404", request_id))


class JSONAccessLogTests(_Fixture, unittest.TestCase):
    log_format = "json"

    @defer.inlineCallbacks
    def test_the_json_line_has_the_id_and_trace_fields(self):
        response = yield self.get(b"traceparent: " + TRACEPARENT.encode() + b"\r\n")
        (request_id,) = header(response, "x-request-id")
        record = yield self.access_line()
        self.assertEqual(
            (record["request_id"], record["trace_id"], record["parent_id"]),
            (request_id, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        )


class TraceTests(_Fixture, unittest.TestCase):
    listener_options = {"trace": True}

    @defer.inlineCallbacks
    def test_a_malformed_traceparent_is_replaced_and_its_tracestate_dropped(self):
        yield self.get(b"traceparent: 00-NOT-VALID-01\r\ntracestate: a=1\r\n")
        (sent,) = header(self.backend_request(), "traceparent")
        match = MADE_TRACEPARENT.match(sent)
        self.assertIsNotNone(match, sent)
        self.assertEqual(header(self.backend_request(), "tracestate"), [])
        fields = yield self.access_line()
        self.assertEqual((fields["trace_id"], fields["parent_id"]), match.groups())

    @defer.inlineCallbacks
    def test_a_missing_traceparent_is_made(self):
        yield self.get()
        (sent,) = header(self.backend_request(), "traceparent")
        self.assertRegex(sent, MADE_TRACEPARENT)

    @defer.inlineCallbacks
    def test_a_valid_traceparent_passes_unchanged(self):
        yield self.get(b"traceparent: " + TRACEPARENT.encode() + b"\r\ntracestate: a=1\r\n")
        self.assertEqual(header(self.backend_request(), "traceparent"), [TRACEPARENT])
        self.assertEqual(header(self.backend_request(), "tracestate"), ["a=1"])


class _WebSocketTests(_Fixture):
    @defer.inlineCallbacks
    def session(self, headers=None):
        """One echoed message, then the client closes."""
        self.only(self.ws_port)
        client = self.net.client(self.port, "/echo", headers=headers or {})
        protocol = yield client.opened
        protocol.sendMessage(b"one")
        yield client.wait_messages(1)
        protocol.sendClose(1000)
        yield client.closed
        return client

    @defer.inlineCallbacks
    def test_a_session_gets_an_id_the_backend_the_101_and_the_log_see(self):
        client = yield self.session({"X-Request-Id": "client-chosen"})
        (request,) = self.backend.requests
        sent = request.headers["x-request-id"]
        self.assertRegex(sent, NEW_ID)
        self.assertEqual(client.response.headers["x-request-id"], sent)
        fields = yield self.access_line()
        self.assertEqual((fields["status"], fields["request_id"]), ("101", sent))
        lines = " | ".join(e["log_format"] for e in self.lines_about(sent))
        self.assertIn(") open request_id=", lines)
        self.assertIn("closed after", lines)

    @defer.inlineCallbacks
    def test_a_malformed_traceparent_is_replaced_on_the_upgrade(self):
        yield self.session({"traceparent": "00-NOT-VALID-01", "tracestate": "a=1"})
        (request,) = self.backend.requests
        match = MADE_TRACEPARENT.match(request.headers["traceparent"])
        self.assertIsNotNone(match)
        self.assertNotIn("tracestate", request.headers)
        fields = yield self.access_line()
        self.assertEqual((fields["trace_id"], fields["parent_id"]), match.groups())

    @defer.inlineCallbacks
    def test_a_refused_upgrade_carries_the_id(self):
        self.only(self.ws_port)
        response = yield raw_request(self.port, upgrade_request("/deny?status=403", host="h"))
        self.assertTrue(response.startswith(b"HTTP/1.1 403"), response)
        (request_id,) = header(response, "x-request-id")
        self.assertRegex(request_id, NEW_ID)
        fields = yield self.access_line()
        self.assertEqual((fields["status"], fields["request_id"]), ("403", request_id))
        (line,) = [e for e in self.lines_about(request_id) if "status" in e]
        self.assertIn("handshake refused", line["log_format"])

    @defer.inlineCallbacks
    def test_a_malformed_upgrade_carries_the_id(self):
        self.only(self.ws_port)
        response = yield raw_request(self.port, upgrade_request("/echo", host="h", version="8"))
        self.assertTrue(response.startswith(b"HTTP/1.1 426"), response)
        (request_id,) = header(response, "x-request-id")
        fields = yield self.access_line()
        self.assertEqual((fields["status"], fields["request_id"]), ("426", request_id))

    @defer.inlineCallbacks
    def test_an_upgrade_without_a_backend_gets_503_with_the_id(self):
        group = self.net.groups["pool"]
        for port in (self.http_port, self.ws_port):
            group.set_state(f"127.0.0.1:{port}", "maint")
        response = yield raw_request(self.port, upgrade_request("/echo", host="h"))
        self.assertTrue(response.startswith(b"HTTP/1.1 503"), response)
        (request_id,) = header(response, "x-request-id")
        fields = yield self.access_line()
        self.assertEqual((fields["status"], fields["request_id"]), ("503", request_id))


class PassThroughWebSocketTests(_WebSocketTests, unittest.TestCase):
    listener_options = {"trace": True}


class PerHopWebSocketTests(_WebSocketTests, unittest.TestCase):
    listener_options = {"trace": True, "websocket_deflate": "per_hop"}


class TrustedWebSocketTests(_Fixture, unittest.TestCase):
    listener_options = {"trusted_proxies": ("127.0.0.1/32",), "websocket_deflate": "per_hop"}

    @defer.inlineCallbacks
    def test_a_trusted_proxys_id_is_kept_for_the_session(self):
        self.only(self.ws_port)
        client = self.net.client(self.port, "/echo", headers={"X-Request-Id": "upstream-ws"})
        protocol = yield client.opened
        protocol.sendClose(1000)
        yield client.closed
        (request,) = self.backend.requests
        self.assertEqual(request.headers["x-request-id"], "upstream-ws")
        self.assertEqual(client.response.headers["x-request-id"], "upstream-ws")
        fields = yield self.access_line()
        self.assertEqual(fields["request_id"], "upstream-ws")


class HeaderTimeoutTests(_Fixture, unittest.TestCase):
    listener_options = {"header_timeout": 0.3, "trusted_proxies": ("127.0.0.1/32",)}

    @defer.inlineCallbacks
    def test_a_408_carries_the_id_read_before_the_timeout(self):
        response = yield raw_request(
            self.port, b"GET / HTTP/1.1\r\nX-Request-Id: upstream-408\r\nHost: x\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 408"), response)
        self.assertEqual(header(response, "x-request-id"), ["upstream-408"])
        (line,) = self.lines_about("upstream-408")
        self.assertIn("408 request_id=upstream-408", formatEvent(line))

    @defer.inlineCallbacks
    def test_a_408_in_the_request_line_gets_a_new_id(self):
        response = yield raw_request(self.port, b"GET / HT")
        self.assertTrue(response.startswith(b"HTTP/1.1 408"), response)
        (request_id,) = header(response, "x-request-id")
        self.assertRegex(request_id, NEW_ID)
