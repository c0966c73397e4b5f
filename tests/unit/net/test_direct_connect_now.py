""":class:`clbproxy.net.endpoints.DirectTCPEndpoint` connects at once, with Twisted's outcomes."""

from __future__ import annotations

from twisted.internet import defer, error, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from clbproxy.net.endpoints import DirectTCPEndpoint


class Quiet(Protocol):
    pass


class Made(Protocol):
    """Tells its factory's ``made`` Deferred when it is connected."""

    def connectionMade(self) -> None:
        self.factory.made.callback(self)


class DirectConnectNowTests(unittest.TestCase):
    timeout = 10

    def listening(self):
        server = Factory.forProtocol(Quiet)
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def test_the_connect_waits_for_no_reactor_turn(self) -> None:
        factory = Factory.forProtocol(Made)
        factory.made = defer.Deferred()
        DirectTCPEndpoint(reactor, "127.0.0.1", self.listening(), 5.0).connect(factory)
        soon = [c for c in reactor.getDelayedCalls() if c.getTime() < reactor.seconds() + 1]
        self.assertEqual(soon, [])
        factory.made.addCallback(lambda protocol: protocol.transport.abortConnection())
        return factory.made

    @defer.inlineCallbacks
    def test_a_connected_backend_is_read_and_not_waited_on_for_writing(self) -> None:
        factory = Factory.forProtocol(Made)
        factory.made = defer.Deferred()
        DirectTCPEndpoint(reactor, "127.0.0.1", self.listening(), 5.0).connect(factory)
        protocol = yield factory.made
        self.addCleanup(protocol.transport.abortConnection)
        self.assertIn(protocol.transport, reactor.getReaders())
        self.assertNotIn(protocol.transport, reactor.getWriters())

    @defer.inlineCallbacks
    def test_a_connect_refused_after_it_began_fails_with_twisteds_error(self) -> None:
        port = reactor.listenTCP(0, Factory.forProtocol(Quiet), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        endpoint = DirectTCPEndpoint(reactor, "127.0.0.1", number, 5.0)
        with self.assertRaises(error.ConnectionRefusedError) as caught:
            yield endpoint.connect(Factory.forProtocol(Quiet))
        self.assertIn("Connection refused", str(caught.exception))
