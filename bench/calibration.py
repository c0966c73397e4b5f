"""The two framework baselines the benchmark measures clbproxy against, in the same run.

Usage: ``python bench/calibration.py {autobahn|splice} LISTEN_PORT BACKEND_PORT``
(``bench/run.py`` starts both, pinned to the proxy CPU; rows ``calib-autobahn``,
``calib-autobahn-deflate`` and ``calib-splice``).

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

Neither checks anything, logs anything, or has any limit or timeout: they are
yardsticks, not proxies.
"""

from __future__ import annotations

import sys

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.internet import defer, protocol, reactor


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


class FrontHop(WebSocketServerProtocol):
    backend = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        super().connectionMade()

    def onConnect(self, request) -> defer.Deferred:
        self.opened = defer.Deferred()
        factory = WebSocketClientFactory(self.factory.backend_url)
        factory.protocol = BackendHop
        factory.setProtocolOptions(autoPingInterval=0)
        front = self

        class Builder(protocol.Factory):
            def buildProtocol(self, addr):
                hop = factory.buildProtocol(addr)
                hop.front = front
                front.backend = hop
                return hop

        reactor.connectTCP("127.0.0.1", self.factory.backend_port, _Adapter(Builder()))
        return self.opened

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.backend.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code, reason) -> None:
        backend = self.backend
        if backend is not None and backend.state == backend.STATE_OPEN:
            backend.sendClose(code if code in (1000, 1001) else 1000)


class _Adapter(protocol.ClientFactory):
    """A client factory around a plain factory, for ``connectTCP``."""

    def __init__(self, inner: protocol.Factory) -> None:
        self.inner = inner

    def buildProtocol(self, addr):
        return self.inner.buildProtocol(addr)


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
            self.transport.pauseProducing()
            front = self

            class Back(protocol.ClientFactory):
                def buildProtocol(self, addr):
                    back = Splice()
                    back.peer, front.peer = front, back
                    return back

                def clientConnectionFailed(self, connector, reason):
                    front.transport.loseConnection()

            reactor.connectTCP("127.0.0.1", self.backend_port, Back())
        else:
            peer = self.peer
            peer.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def connectionLost(self, reason=None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.loseConnection()


def main(argv: list[str]) -> int:
    kind, port, backend_port = argv[0], int(argv[1]), int(argv[2])
    if kind == "autobahn":
        factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}/")
        factory.protocol = FrontHop
        factory.backend_url = f"ws://127.0.0.1:{backend_port}/"
        factory.backend_port = backend_port
        factory.setProtocolOptions(perMessageCompressionAccept=_accept_deflate)
    elif kind == "splice":
        factory = protocol.Factory.forProtocol(lambda: Splice(backend_port))
    else:
        print(f"calibration.py: unknown kind {kind!r} (autobahn or splice)", file=sys.stderr)
        return 2
    reactor.listenTCP(port, factory, backlog=1024, interface="127.0.0.1")
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
