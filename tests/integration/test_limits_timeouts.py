"""Timeouts and limits on real sockets: 408, keep-alive idle, WebSocket idle and pings,
403/429 for HTTP and WebSocket handshakes alike, closes over the per-address
limit, and accept pausing."""

from __future__ import annotations

import socket
import time

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import RuleConfig
from tests.support.handshakes import upgrade_request
from tests.support.network import BackendFactory, BackendProtocol, Listening, raw_request
from tests.support.observed import Observed, sample, scrape

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class Held(Protocol):
    """A client connection the test keeps open and closes itself."""

    def connectionMade(self):
        self.received = b""
        self.factory.made.callback(self)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.factory.lost.callback(self.received)


def hold(port) -> defer.Deferred:
    factory = Factory.forProtocol(Held)
    factory.made, factory.lost = defer.Deferred(), defer.Deferred()
    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    return factory.made


class HTTPTimeoutTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_headers_not_complete_within_header_timeout_get_408(self):
        net = Listening(self)
        backend = yield net.raw_backend(OK, close_after=False)
        port = yield net.proxy([backend], header_timeout=0.3, client_timeout=30)
        started = time.monotonic()
        data = yield raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data)
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assertEqual(net.service.stats["header_timeouts"], 1)

    @defer.inlineCallbacks
    def test_a_connection_that_sends_nothing_is_closed_without_a_response(self):
        net = Listening(self)
        backend = yield net.raw_backend(OK, close_after=False)
        port = yield net.proxy([backend], header_timeout=0.2)
        self.assertEqual((yield raw_request(port, b"")), b"")

    @defer.inlineCallbacks
    def test_keepalive_connection_is_closed_after_keepalive_timeout(self):
        net = Listening(self)
        backend = yield net.raw_backend(OK, close_after=False)
        port = yield net.proxy([backend], keepalive_timeout=0.3, header_timeout=0.1)
        started = time.monotonic()
        data = yield raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        elapsed = time.monotonic() - started
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 1, data)
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 2)


class SilentPingBackend(BackendProtocol):
    def onPing(self, payload):
        pass


class WebSocketTimeoutTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_session_without_frames_is_closed_with_1001_on_both_hops(self):
        net = Listening(self)
        backend, backend_port = net.backend()
        port = yield net.proxy([(yield backend_port)], websocket_idle_timeout=0.3)
        client = net.client(port)
        yield client.opened
        wasClean, code, reason = yield client.closed
        self.assertEqual((wasClean, code, reason), (True, 1001, "idle timeout"))
        yield sleep(0.05)
        self.assertEqual(backend.closes[-1][:2], (True, 1001))
        self.assertEqual(net.service.stats["websocket_idle_closes"], 1)

    @defer.inlineCallbacks
    def test_backend_that_does_not_answer_pings_is_dropped_and_the_client_told_1011(self):
        net = Listening(self)
        backend = BackendFactory()
        backend.protocol = SilentPingBackend
        net.connections.append(backend)
        backend_port = yield net.listen(backend)
        port = yield net.proxy(
            [backend_port],
            websocket_idle_timeout=30,
            websocket_ping_interval=0.2,
            websocket_ping_timeout=0.2,
        )
        client = net.client(port)
        yield client.opened
        wasClean, code, reason = yield client.closed
        self.assertEqual((wasClean, code, reason), (True, 1011, "backend went away"))
        self.assertEqual(net.service.stats["websocket_ping_timeouts"], 1)

    @defer.inlineCallbacks
    def test_client_that_vanishes_silently_is_dropped_and_the_backend_told_1001(self):
        # No FIN, no RST: the client's socket stays open and its kernel keeps
        # acknowledging, but nothing reads it or answers the proxy's pings.
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        net = Listening(self)
        backend, backend_port = net.backend()
        backend.closed = defer.Deferred()
        port = yield net.proxy(
            [(yield backend_port)],
            websocket_idle_timeout=30,
            websocket_ping_interval=0.2,
            websocket_ping_timeout=0.2,
        )
        vanished = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(vanished.close)
        vanished.sendall(upgrade_request())
        wasClean, code, reason = yield backend.closed
        self.assertEqual((wasClean, code, reason), (True, 1001, "client went away"))
        self.assertEqual(net.service.stats["websocket_ping_timeouts"], 1)
        logged = [formatEvent(event) for event in events]
        self.assertIn("the client did not answer a ping within 0.2 s", " ".join(logged))

    @defer.inlineCallbacks
    def test_answered_pings_keep_a_silent_session_open_past_the_idle_timeout(self):
        net = Listening(self)
        _, backend_port = net.backend()
        port = yield net.proxy(
            [(yield backend_port)],
            websocket_idle_timeout=0.4,
            websocket_ping_interval=0.1,
            websocket_ping_timeout=0.3,
        )
        client = net.client(port)
        yield client.opened
        yield sleep(1.0)
        self.assertFalse(client.closed.called)
        client.built[0].sendClose(1000)
        yield client.closed


class AccessTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_denied_address_gets_403_for_http_and_for_websocket_handshakes(self):
        net = Listening(self)
        backend = yield net.raw_backend(OK)
        port = yield net.proxy([backend], deny=("127.0.0.0/8",))
        http = yield raw_request(port, GET)
        websocket = yield raw_request(port, upgrade_request())
        self.assertTrue(http.startswith(b"HTTP/1.1 403 Forbidden\r\n"), http)
        self.assertTrue(websocket.startswith(b"HTTP/1.1 403 Forbidden\r\n"), websocket)
        self.assertEqual(net.service.stats["denied_by_listener"], 2)

    @defer.inlineCallbacks
    def test_rule_allow_list_refuses_others_with_403_and_leaves_other_rules_open(self):
        net = Listening(self)
        backend = yield net.raw_backend(OK)
        rules = (
            RuleConfig(target_group="pool", path="/admin", allow=("10.0.0.0/8",)),
            RuleConfig(target_group="pool"),
        )
        port = yield net.proxy([backend], rules=rules)
        admin = yield raw_request(
            port, b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        other = yield raw_request(port, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(admin.startswith(b"HTTP/1.1 403 "), admin)
        self.assertTrue(other.startswith(b"HTTP/1.1 200 OK"), other)

    @defer.inlineCallbacks
    def test_connection_over_the_per_address_limit_is_closed_without_an_answer(self):
        net = Listening(self)
        backend = yield net.raw_backend(OK)
        port = yield net.proxy([backend], max_connections_per_ip=1)
        first = yield hold(port)
        self.addCleanup(first.transport.loseConnection)
        self.assertEqual((yield raw_request(port, GET)), b"")
        self.assertEqual((yield raw_request(port, upgrade_request())), b"")
        self.assertEqual(net.service.stats["closed_per_ip_connections"], 2)

    @defer.inlineCallbacks
    def test_websocket_handshakes_over_the_rate_get_429(self):
        net = Listening(self)
        _, backend_port = net.backend()
        port = yield net.proxy(
            [(yield backend_port)], websocket_handshake_rate=0.01, websocket_handshake_burst=1
        )
        first = net.client(port)
        yield first.opened
        refused = yield raw_request(port, upgrade_request())
        self.assertTrue(refused.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), refused)
        self.assertEqual(net.service.stats["refused_handshake_rate"], 1)
        first.built[0].sendClose(1000)
        yield first.closed

    @defer.inlineCallbacks
    def test_listener_at_max_connections_pauses_accepting_until_one_ends(self):
        net = Listening(self)
        backend = yield net.raw_backend(OK)
        port = yield net.proxy([backend], max_connections=1)
        first = yield hold(port)
        second = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        yield sleep(0.3)
        self.assertFalse(second.called)
        first.transport.loseConnection()
        data = yield second
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK"), data)
        # Paused when the first connection filled it, and again when the second did.
        self.assertEqual(net.service.stats["accept_paused"], 2)


class LimitMetricsTests(unittest.TestCase):
    """What the limits and timeouts did, scraped from the metrics page over HTTP."""

    @defer.inlineCallbacks
    def start(self, backend_port, **listener_options):
        self.net = Observed(self)
        return (yield self.net.start([backend_port], log_path=self.mktemp(), **listener_options))

    @defer.inlineCallbacks
    def test_refusals_and_closes_are_counted_by_reason_and_as_handshake_outcomes(self):
        _, backend_port = Listening(self).backend()
        rules = (
            RuleConfig(target_group="pool", path="/private", deny=("127.0.0.0/8",)),
            RuleConfig(target_group="pool"),
        )
        port = yield self.start(
            (yield backend_port),
            rules=rules,
            max_connections_per_ip=1,
            websocket_handshake_rate=0.01,
            websocket_handshake_burst=1,
        )
        private = b"GET /private HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        statuses = [(yield raw_request(port, private))[:12]]
        statuses.append((yield raw_request(port, upgrade_request("/private")))[:12])
        first = self.net.client(port)
        yield first.opened
        first.built[0].sendClose(1000)
        yield first.closed
        yield sleep(0.05)
        statuses.append((yield raw_request(port, upgrade_request()))[:12])
        held = yield hold(port)
        # Over the per-address limit: closed at accept, nothing answered.
        statuses.append((yield raw_request(port, GET))[:12])
        statuses.append((yield raw_request(port, upgrade_request()))[:12])
        held.transport.loseConnection()
        yield held.factory.lost
        yield sleep(0.05)
        # What stopping the proxy does to every listener, without closing its socket.
        self.net.service.admission.draining = True
        statuses.append((yield raw_request(port, upgrade_request()))[:12])
        self.assertEqual(
            statuses,
            [b"HTTP/1.1 403"] * 2 + [b"HTTP/1.1 429", b"", b"", b"HTTP/1.1 503"],
        )

        found = yield scrape(self.net)
        refusals = {
            (reason, status): sample(
                found, "clbproxy_limit_refusals_total", listener="web", reason=reason, status=status
            )
            for reason, status in (
                ("listener_deny", "403"),
                ("rule_deny", "403"),
                ("per_ip_closed", "none"),
                ("no_proxy_header", "none"),
                ("handshake_rate", "429"),
                ("shutting_down", "503"),
            )
        }
        self.assertEqual(
            refusals,
            {
                ("listener_deny", "403"): 0,
                ("rule_deny", "403"): 2,
                ("per_ip_closed", "none"): 2,
                ("no_proxy_header", "none"): 0,
                ("handshake_rate", "429"): 1,
                ("shutting_down", "503"): 1,
            },
        )
        handshakes = {
            status: sample(
                found, "clbproxy_websocket_handshakes_total", listener="web", status=status
            )
            for status in ("101", "403", "429", "503")
        }
        # A connection closed at accept never got as far as a handshake.
        self.assertEqual(handshakes, {"101": 1, "403": 1, "429": 1, "503": 1})

    @defer.inlineCallbacks
    def test_timeouts_and_accept_pauses_are_counted(self):
        _, backend_port = Listening(self).backend()
        port = yield self.start(
            (yield backend_port),
            header_timeout=0.3,
            websocket_idle_timeout=0.3,
            max_connections=1,
        )
        data = yield raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data)
        client = self.net.client(port)
        yield client.opened
        _, code, reason = yield client.closed
        self.assertEqual((code, reason), (1001, "idle timeout"))

        found = yield scrape(self.net)
        self.assertEqual(sample(found, "clbproxy_http_timeouts_total", listener="web"), 1)
        self.assertEqual(
            sample(found, "clbproxy_websocket_timeouts_total", listener="web", kind="idle"), 1
        )
        self.assertEqual(
            sample(found, "clbproxy_websocket_timeouts_total", listener="web", kind="ping"), 0
        )
        # Each of the two connections filled the listener's max_connections = 1.
        self.assertEqual(sample(found, "clbproxy_accept_paused_total", listener="web"), 2)

    @defer.inlineCallbacks
    def test_global_max_connections_pauses_every_listener_until_one_connection_ends(self):
        from tests.integration.test_lifecycle import SECOND_LISTENER, ProxyProcess, port_of

        proxy = ProxyProcess(self)
        backend = yield proxy.raw_backend(OK)
        proxy.write(backend, top="max_connections = 2", extra=SECOND_LISTENER)
        proxy.start()
        web, second = port_of(proxy.listener()), port_of(proxy.listener("second"))
        held_web = yield hold(web)
        yield hold(second)
        reached = "global max_connections {limit} reached: accepting paused"
        while not proxy.messages(reached):
            yield sleep(0.01)

        waiting = raw_request(web, GET)
        yield sleep(0.3)
        self.assertFalse(waiting.called)
        held_web.transport.loseConnection()
        data = yield waiting

        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK"), data)
        self.assertEqual([event["limit"] for event in proxy.messages(reached)], [2, 2])
