"""Real-socket fixtures on 127.0.0.1 for relay tests: backends, a proxy, clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from autobahn.twisted.websocket import (
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, reactor, task, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.listener.service import listener_service
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.ws.deflate import accept_first_deflate_offer
from clbproxy.ws.hops import cancel_close_timer
from tests.support.websocket import QuietClientFactory, QuietClientProtocol


class BackendProtocol(WebSocketServerProtocol):
    """A scriptable backend: the request path says how it behaves.

    ``/echo`` echoes; ``/push?n=N`` sends N messages on open; ``/close?code=C&reason=R``
    closes with that code on the first message; ``/headers`` answers the first message
    with the handshake's request headers as JSON; ``/drop`` drops TCP on the first message;
    ``/deny?status=S`` refuses the handshake; ``/flood?n=N`` sends N 64 KiB messages on open.
    """

    def onConnect(self, request):
        self.factory.requests.append(request)
        self.query = parse_qs(urlsplit(self.http_request_uri).query)
        self.path = request.path
        if self.path == "/deny":
            raise ConnectionDeny(int(self.query.get("status", ["403"])[0]), "denied")
        chosen = None
        for protocol in request.protocols:
            if protocol in self.factory.subprotocols:
                chosen = protocol
                break
        return (chosen, {"Set-Cookie": ["a=1; Path=/", "b=2; Path=/"]})

    def onOpen(self):
        self.factory.opened.append(self)
        if self.path == "/push":
            for index in range(int(self.query.get("n", ["3"])[0])):
                self.sendMessage(f"push {index}".encode())
        elif self.path == "/flood":
            chunk = b"x" * 65536
            for _ in range(int(self.query.get("n", ["64"])[0])):
                self.sendMessage(chunk, isBinary=True)

    def onMessage(self, payload, isBinary):
        if self.path == "/close":
            code = int(self.query.get("code", ["1000"])[0])
            reason = self.query.get("reason", [""])[0]
            self.sendClose(code, reason or None)
        elif self.path == "/headers":
            headers = dict(self.http_headers)
            self.sendMessage(json.dumps(headers).encode())
        elif self.path == "/drop":
            self.transport.abortConnection()
        else:
            self.sendMessage(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        cancel_close_timer(self)
        self.factory.closes.append((wasClean, code, reason))
        if self.factory.closed is not None and not self.factory.closed.called:
            self.factory.closed.callback((wasClean, code, reason))


class _Tracking:
    """Factories that remember their protocols, so a cleanup can cut their connections."""

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.built = [*getattr(self, "built", []), protocol]
        return protocol


class BackendFactory(_Tracking, WebSocketServerFactory):
    protocol = BackendProtocol

    def __init__(self, subprotocols=(), deflate=True, deflate_accept=None):
        super().__init__()
        self.requests = []
        self.opened = []
        self.closes = []
        self.closed: Optional[defer.Deferred] = None
        self.subprotocols = tuple(subprotocols)
        options = {"failByDrop": False, "closeHandshakeTimeout": 1}
        if deflate:
            options["perMessageCompressionAccept"] = deflate_accept or accept_first_deflate_offer
        self.setProtocolOptions(**options)


class _TrackingFactory(_Tracking, Factory):
    pass


class RawResponder(Protocol):
    """A backend that answers any request with fixed bytes, then optionally closes."""

    def dataReceived(self, data):
        if getattr(self, "_answered", False):
            return
        self._answered = True
        self.transport.write(self.factory.response)
        if self.factory.close_after:
            self.transport.loseConnection()


#: ``python -c TWISTD ...`` runs twistd in a child process.
TWISTD = "from twisted.scripts.twistd import run; run()"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sends_at_once(transport) -> bool:
    """Whether the TCP socket under ``transport`` (and its TLS or other wrappers) has
    Nagle's algorithm off (TCP_NODELAY)."""
    while not isinstance(transport, tcp.Connection):
        transport = transport.transport
    return bool(transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def hops_without_no_delay(session) -> list[str]:
    """The hops of a relay session whose TCP socket still delays small writes (Nagle)."""
    hops = (("client", session.front), ("backend", session.backend))
    return [name for name, hop in hops if not sends_at_once(hop.transport)]


def spawn_twistd(
    testcase, config_path: str, directory: str, log_path: str, preexec_fn=None
) -> subprocess.Popen:
    """``twistd -n clbproxy --config config_path`` in a child; its output goes to ``log_path``.

    ``preexec_fn`` runs in the child before twistd (to lower its limits, say)."""
    log_file = open(log_path, "w")
    testcase.addCleanup(log_file.close)
    return subprocess.Popen(
        [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "clbproxy", "--config", config_path],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )


def abort_sessions(listener_services) -> None:
    """Cut both TCP connections of every relayed session of these listener services."""
    for service in listener_services:
        for session in list(service.relay.sessions):
            for hop in (session.front, session.backend):
                if hop is not None and getattr(hop.transport, "connected", False):
                    hop.transport.abortConnection()


class Listening:
    """Starts listeners, and in the test's cleanup stops them and cuts every connection."""

    def __init__(self, testcase):
        self.testcase = testcase
        self.connections = []
        testcase.addCleanup(self._cut_connections)

    @defer.inlineCallbacks
    def _cut_connections(self):
        service = getattr(self, "service", None)
        if service is not None:
            abort_sessions([service])
        for factory in self.connections:
            for protocol in getattr(factory, "built", []):
                if protocol.transport is not None and protocol.transport.connected:
                    protocol.transport.abortConnection()
        yield task.deferLater(reactor, 0.01, lambda: None)

    @defer.inlineCallbacks
    def listen(self, factory):
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.testcase.addCleanup(port.stopListening)
        return port.getHost().port

    def backend(self, **kwargs):
        factory = BackendFactory(**kwargs)
        self.connections.append(factory)
        return factory, self.listen(factory)

    def raw_backend(self, response: bytes, close_after=True):
        factory = _TrackingFactory.forProtocol(RawResponder)
        self.connections.append(factory)
        factory.response = response
        factory.close_after = close_after
        return self.listen(factory)

    def client(self, port, path="/echo", **kwargs):
        """Open a WebSocket client to the proxy; returns the factory (see its Deferreds)."""
        factory = connect_client(port, path, **kwargs)
        self.connections.append(factory)
        return factory

    @defer.inlineCallbacks
    def proxy(self, backend_ports, *, group_options=None, rules=None, **listener_options):
        group = TargetGroupConfig(
            name="pool",
            backends=tuple(BackendConfig("127.0.0.1", port) for port in backend_ports),
            **(group_options or {}),
        )
        listener = ListenerConfig(
            name="test",
            bind=listener_options.pop("bind", "tcp:0:interface=127.0.0.1"),
            rules=rules or (RuleConfig(target_group="pool"),),
            **listener_options,
        )
        service = listener_service(listener, {"pool": TargetGroup(group, reactor)}, reactor)
        ready = defer.Deferred()

        def listening(port):
            ready.callback(port)
            return port

        service.startService()
        service._waitingForPort.addCallback(listening)
        self.testcase.addCleanup(service.stopService)
        self.service = service
        port = yield ready
        return port.getHost().port


class ClientProtocol(QuietClientProtocol):
    def onConnect(self, response):
        self.factory.response = response

    def onMessage(self, payload, isBinary):
        self.factory.messages.append((payload, isBinary))
        waiting, self.factory.waiting = self.factory.waiting, []
        for count, d in waiting:
            if len(self.factory.messages) >= count:
                d.callback(list(self.factory.messages))
            else:
                self.factory.waiting.append((count, d))


class ClientFactory(_Tracking, QuietClientFactory):
    protocol = ClientProtocol

    def __init__(self, url, deflate=False, deflate_offer=None, **kwargs):
        options = {}
        if deflate:
            options["perMessageCompressionOffers"] = [deflate_offer or PerMessageDeflateOffer()]
            options["perMessageCompressionAccept"] = lambda response: (
                PerMessageDeflateResponseAccept(response)
                if isinstance(response, PerMessageDeflateResponse)
                else None
            )
        super().__init__(url, close_timeout=2, options=options, **kwargs)
        self.messages = []
        self.waiting = []
        self.response = None

    def wait_messages(self, count):
        d = defer.Deferred()
        if len(self.messages) >= count:
            d.callback(list(self.messages))
        else:
            self.waiting.append((count, d))
        return d


def connect_client(port, path="/echo", **kwargs):
    """Open a WebSocket client to the proxy; returns the factory (see its Deferreds)."""
    factory = ClientFactory(f"ws://127.0.0.1:{port}{path}", **kwargs)
    TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5).connect(factory)
    return factory


class RawClient(Protocol):
    """Sends bytes and collects everything until the connection closes."""

    def connectionMade(self):
        self.received = b""
        self.transport.write(self.factory.request)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.factory.done.callback(self.received)


def raw_request(port, request: bytes) -> defer.Deferred:
    """Send raw bytes to 127.0.0.1:port; fires with all bytes received until close."""
    factory = Factory.forProtocol(RawClient)
    factory.request = request
    factory.done = defer.Deferred()
    TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5).connect(factory)
    return factory.done
