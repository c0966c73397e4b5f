"""Tests for :meth:`DirectTCPEndpoint.connect_calling`: the connect's Deferred as two plain calls.

Each outcome is the one :meth:`DirectTCPEndpoint.connect`'s Deferred has in the
same case (``test_direct_endpoint``): the same protocol, the same failures.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from clbproxy.net.endpoints import ConnectOutcome, DirectTCPEndpoint

ADDR = IPv4Address("TCP", "10.0.0.1", 9000)


class ConnectCallingTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.endpoint = DirectTCPEndpoint(self.reactor, "10.0.0.1", 9000, 2.5)
        self.told = []
        self.outcome = ConnectOutcome(
            lambda protocol: self.told.append(("connected", protocol)),
            lambda failure: self.told.append(("failed", failure)),
        )

    def connect(self, factory=None):
        self.endpoint.connect_calling(factory or Factory.forProtocol(Protocol), self.outcome)
        return self.reactor.tcpClients[-1][2]

    def test_connects_to_the_address_with_the_timeout(self):
        self.connect()
        ((host, port, _, timeout, _),) = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("10.0.0.1", 9000, 2.5))

    def test_the_built_protocol_is_told_once(self):
        protocol = self.connect().buildProtocol(ADDR)
        self.assertIs(type(protocol), Protocol)
        self.assertEqual(self.told, [("connected", protocol)])

    def test_a_failed_connect_is_told_its_reason(self):
        self.connect().clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        ((what, failure),) = self.told
        self.assertEqual(what, "failed")
        failure.trap(error.ConnectionRefusedError)

    def test_a_factory_that_builds_nothing_is_a_failure(self):
        nothing = Factory()
        nothing.buildProtocol = lambda addr: None
        self.assertIsNone(self.connect(nothing).buildProtocol(ADDR))
        ((what, failure),) = self.told
        self.assertEqual(what, "failed")
        failure.trap(error.NoProtocol)

    def test_cancelling_stops_connecting_and_is_told_as_cancelled(self):
        self.connect()
        self.outcome.cancel()
        ((what, failure),) = self.told
        self.assertEqual(what, "failed")
        failure.trap(error.ConnectingCancelledError)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_cancelling_after_the_connect_ended_does_nothing(self):
        protocol = self.connect().buildProtocol(ADDR)
        self.outcome.cancel()
        self.assertEqual(self.told, [("connected", protocol)])
        self.assertFalse(self.reactor.connectors[0].stoppedConnecting)

    def test_a_connect_that_raises_at_once_is_told_at_once(self):
        def refuse(*args, **kwargs):
            raise error.ConnectError("no")

        self.reactor.connectTCP = refuse
        self.endpoint.connect_calling(Factory.forProtocol(Protocol), self.outcome)
        ((what, failure),) = self.told
        self.assertEqual(what, "failed")
        failure.trap(error.ConnectError)
        self.outcome.cancel()  # nothing left to cancel
        self.assertEqual(len(self.told), 1)
