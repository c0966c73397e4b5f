""":class:`clbproxy.net.endpoints.DirectTCPEndpoint` on the real reactor: its own connector."""

from __future__ import annotations

from twisted.internet import defer, error, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from clbproxy.net.endpoints import DirectConnectFactory, DirectTCPEndpoint, _DirectConnector


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


class FakeClient:
    """A connection attempt that never completes by itself."""

    def __init__(self) -> None:
        self.failures: list = []

    def failIfNotConnected(self, reason) -> None:
        self.failures.append(reason)


class UnansweredConnector(_DirectConnector):
    def _makeTransport(self):
        return FakeClient()


class DirectConnectTimeoutTests(unittest.TestCase):
    def connector(self):
        clock = task.Clock()
        connector = UnansweredConnector(
            "127.0.0.1", 9, DirectConnectFactory(Factory.forProtocol(Protocol)), 2.0, None, clock
        )
        connector.connect()
        return clock, connector

    def test_a_connect_that_never_completes_fails_with_a_timeout_after_the_timeout(self) -> None:
        clock, connector = self.connector()
        clock.advance(1.9)
        self.assertEqual(connector.transport.failures, [])
        clock.advance(0.1)
        (reason,) = connector.transport.failures
        self.assertIsInstance(reason, error.TimeoutError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_connection_made_in_time_cancels_the_timeout(self) -> None:
        clock, connector = self.connector()
        connector.buildProtocol(None)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(5)
        self.assertEqual(connector.transport.failures, [])
