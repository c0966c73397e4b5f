"""The two framework baselines the benchmark measures clbproxy against, in the same run.

Usage: ``python bench/calibration.py {autobahn|splice|http} LISTEN_PORT BACKEND_PORT [lean|stock]``
(``bench/run.py`` starts them pinned to the proxy CPU; rows ``calib-autobahn``,
``calib-autobahn-deflate``, ``calib-splice``, ``calib-splice-stock`` and ``calib-http``).

``lean`` (the default) dispatches socket events as clbproxy does
(:mod:`clbproxy.net.dispatch`), so that the ratio of clbproxy to a baseline is
what clbproxy's own code costs; ``stock`` keeps Twisted's own dispatch (the
``-stock`` row: the issue's "minimal Twisted splice").

``autobahn``: the least a WebSocket proxy built on Autobahn does.  Autobahn's own
server parses the client's handshake (no twisted.web, no routing, no forwarded
headers), ``onConnect`` opens an Autobahn client connection to the backend and
answers the client once the backend's handshake is done, and each message is
relayed with ``onMessage`` -> ``sendMessage``.  Clients that offer
permessage-deflate get it on their hop (the backend is offered none): the
``-deflate`` row is what clbproxy's Autobahn path (``websocket_deflate =
"per_hop"``) does, with nothing else around it.

``splice``: the least any Twisted proxy does.  Each accepted connection opens
one to the backend, and bytes are copied both ways, the handshake included,
without reading them.  Its handshakes per CPU-second are the Twisted reactor's
own cost of accepting, connecting and closing.

``http``: the least an HTTP/1.1 keep-alive reverse proxy built on Twisted does
(the HTTP scenarios' floor).  Each accepted connection opens one to the backend
(nothing is read from the client until it is there); requests and responses are
framed by ``httptools`` (llhttp): the head is rebuilt from the parsed method,
target, version and fields, unchanged and in order (no header added, removed or
rewritten, no routing), and bodies are passed on as the parser delivers them,
``Content-Length`` as they come and chunked re-chunked, with backpressure both
ways.  No HEAD/1xx special cases, no upgrade, no pipelining guarantees beyond
what one backend connection per client gives for free.

None of them checks anything, logs anything, or has any limit or timeout: they are
yardsticks, not proxies.  Per session they make what clbproxy makes at the
least: the protocols and a small object linking a client to its backend
connection; the factories are shared and quiet.
"""

from __future__ import annotations

import sys

import httptools
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.internet import defer, protocol, reactor

from clbproxy.net.dispatch import lean_dispatch


class BackendHop(WebSocketClientProtocol):
    front: FrontHop

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        super().connectionMade()

    def onOpen(self) -> None:
        self.front.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.front.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code, reason) -> None:
        front = self.front
        if not front.opened.called:
            front.opened.errback(ConnectionError(reason or "backend refused"))
        else:
            front.sendClose(code if code in (1000, 1001) else 1000)


class _Builder(protocol.ClientFactory):
    """One client's connection to the backend, built by the process's shared factory.

    As clbproxy does it: one factory with the options, and per session only
    this small object saying whose connection it is.
    """

    noisy = False

    def __init__(self, shared: protocol.Factory, front) -> None:
        self.shared = shared
        self.front = front

    def buildProtocol(self, addr):
        hop = self.shared.buildProtocol(addr)
        self.front.backend_built(hop)
        return hop

    def clientConnectionFailed(self, connector, reason) -> None:
        self.front.backend_failed(reason)


class FrontHop(WebSocketServerProtocol):
    backend = None
    connector = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        super().connectionMade()

    def onConnect(self, request) -> defer.Deferred:
        self.opened = defer.Deferred()
        factory = self.factory
        self.connector = reactor.connectTCP(
            "127.0.0.1", factory.backend_port, _Builder(factory.backends, self)
        )
        return self.opened

    def backend_built(self, hop: BackendHop) -> None:
        hop.front, self.backend = self, hop

    def backend_failed(self, reason) -> None:
        if not self.opened.called:
            self.opened.errback(reason)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.backend.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code, reason) -> None:
        backend = self.backend
        if backend is None:
            if self.connector is not None:
                self.connector.disconnect()  # the client left while the backend was connecting
        elif backend.state == backend.STATE_OPEN:
            backend.sendClose(code if code in (1000, 1001) else 1000)


def _accept_deflate(offers):
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class Splice(protocol.Protocol):
    """One side of a byte splice; the client's side connects the other."""

    peer = None

    def __init__(self, backend_port: int = 0) -> None:
        self.backend_port = backend_port

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        if self.backend_port:
            self.transport.pauseProducing()  # nothing is read until the backend is there
            reactor.connectTCP("127.0.0.1", self.backend_port, _Builder(_SPLICE_SIDE, self))
        else:
            self.peer.transport.resumeProducing()

    def backend_built(self, other: Splice) -> None:
        other.peer, self.peer = self, other

    def backend_failed(self, reason) -> None:
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def connectionLost(self, reason=None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.loseConnection()


class _SpliceSide(protocol.Factory):
    """Builds the backend's side of a splice (``_Builder`` links it to the client's)."""

    noisy = False

    def buildProtocol(self, addr):
        return Splice()


_SPLICE_SIDE = _SpliceSide()


class _Framing:
    """The part of an HTTP hop both directions share: rebuild a head, pass a body on."""

    transport = None
    peer = None
    chunked = False

    def on_message_begin(self) -> None:
        self.fields = []
        self.chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append(b"%s: %s\r\n" % (name, value))
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            self.chunked = True

    def send_head(self, first_line: bytes) -> None:
        self.fields.insert(0, first_line)
        self.fields.append(b"\r\n")
        self.peer.transport.write(b"".join(self.fields))

    def on_body(self, body: bytes) -> None:
        if self.chunked:
            self.peer.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.peer.transport.write(body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.peer.transport.write(b"0\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.loseConnection()


class HttpFront(_Framing, protocol.Protocol):
    """The client's side: parses requests, connects the backend's side."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.parser = httptools.HttpRequestParser(self)
        self.url = []

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.transport.pauseProducing()
        reactor.connectTCP("127.0.0.1", self.backend_port, _Builder(_HTTP_SIDE, self))

    def backend_built(self, back: HttpBack) -> None:
        back.peer, self.peer = self, back

    def backend_failed(self, reason) -> None:
        self.transport.loseConnection()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.url = []

    def on_url(self, url: bytes) -> None:
        self.url.append(url)

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.send_head(
            b"%s %s HTTP/%s\r\n"
            % (parser.get_method(), b"".join(self.url), parser.get_http_version().encode())
        )


class HttpBack(_Framing, protocol.Protocol):
    """The backend's side: parses responses."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        front = self.peer
        # Each side stops reading while the other's write buffer is full.
        front.transport.registerProducer(self.transport, True)
        self.transport.registerProducer(front.transport, True)
        front.transport.resumeProducing()

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.send_head(
            b"HTTP/%s %d %s\r\n"
            % (parser.get_http_version().encode(), parser.get_status_code(), self.reason)
        )


class _HttpSide(protocol.Factory):
    """Builds the backend's side of an HTTP hop (``_Builder`` links it to the client's)."""

    noisy = False

    def buildProtocol(self, addr):
        return HttpBack()


_HTTP_SIDE = _HttpSide()


def main(argv: list[str]) -> int:
    kind, port, backend_port = argv[0], int(argv[1]), int(argv[2])
    dispatch = argv[3] if len(argv) > 3 else "lean"
    if kind == "autobahn":
        factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}/")
        factory.protocol = FrontHop
        factory.setProtocolOptions(perMessageCompressionAccept=_accept_deflate)
        backends = WebSocketClientFactory(f"ws://127.0.0.1:{backend_port}/")
        backends.protocol = BackendHop
        backends.noisy = False
        factory.backends = backends
        factory.backend_port = backend_port
    elif kind == "splice":
        factory = protocol.Factory.forProtocol(lambda: Splice(backend_port))
    elif kind == "http":
        factory = protocol.Factory.forProtocol(lambda: HttpFront(backend_port))
    else:
        print(f"calibration.py: unknown kind {kind!r} (autobahn, splice or http)", file=sys.stderr)
        return 2
    if dispatch == "lean":
        lean_dispatch(reactor)
    elif dispatch != "stock":
        print(f"calibration.py: unknown dispatch {dispatch!r} (lean or stock)", file=sys.stderr)
        return 2
    reactor.listenTCP(port, factory, backlog=1024, interface="127.0.0.1")
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
