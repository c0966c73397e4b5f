""":class:`clbproxy.net.endpoints.DirectTCPEndpoint` on the real reactor: its own connector."""

from __future__ import annotations

from twisted.internet import defer, error, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from clbproxy.net.endpoints import DirectTCPEndpoint


class Greeting(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello")
        self.factory.served.append(self)


class Reader(Protocol):
    def __init__(self) -> None:
        self.received = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received.callback(data)


class DirectConnectTests(unittest.TestCase):
    timeout = 10

    @defer.inlineCallbacks
    def test_a_backend_at_an_ip_address_is_connected_and_talks_to_the_protocol(self) -> None:
        server = Factory.forProtocol(Greeting)
        server.served = []
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = DirectTCPEndpoint(reactor, "127.0.0.1", port.getHost().port, 5.0)
        protocol = yield endpoint.connect(Factory.forProtocol(Reader))
        data = yield protocol.received
        self.addCleanup(lambda: [p.transport.abortConnection() for p in server.served])
        self.addCleanup(protocol.transport.abortConnection)
        self.assertEqual(data, b"hello")
        self.assertEqual(protocol.transport.getPeer().port, port.getHost().port)

    @defer.inlineCallbacks
    def test_a_refused_connect_fails_the_deferred(self) -> None:
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        endpoint = DirectTCPEndpoint(reactor, "127.0.0.1", number, 5.0)
        with self.assertRaises(error.ConnectionRefusedError):
            yield endpoint.connect(Factory.forProtocol(Reader))
