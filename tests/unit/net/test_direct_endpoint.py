"""Tests for :class:`clbproxy.net.endpoints.DirectTCPEndpoint` and ``relay_endpoint``."""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from clbproxy.net.endpoints import DirectTCPEndpoint, relay_endpoint

ADDR = IPv4Address("TCP", "10.0.0.1", 9000)


class DirectTCPEndpointTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.endpoint = DirectTCPEndpoint(self.reactor, "10.0.0.1", 9000, 2.5)

    def test_connects_to_the_address_with_the_timeout(self):
        self.endpoint.connect(Factory.forProtocol(Protocol))
        ((host, port, _, timeout, _),) = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("10.0.0.1", 9000, 2.5))

    def test_the_connection_gets_the_factorys_own_protocol_and_the_deferred_fires_with_it(self):
        connected = self.endpoint.connect(Factory.forProtocol(Protocol))
        factory = self.reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(ADDR)
        self.assertIs(type(protocol), Protocol)
        self.assertIs(self.successResultOf(connected), protocol)

    def test_a_failed_connect_fails_the_deferred_with_its_reason(self):
        connected = self.endpoint.connect(Factory.forProtocol(Protocol))
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        self.failureResultOf(connected, error.ConnectionRefusedError)

    def test_a_factory_that_builds_nothing_fails_the_deferred(self):
        nothing = Factory()
        nothing.buildProtocol = lambda addr: None
        connected = self.endpoint.connect(nothing)
        self.assertIsNone(self.reactor.tcpClients[0][2].buildProtocol(ADDR))
        self.failureResultOf(connected, error.NoProtocol)

    def test_cancelling_stops_connecting(self):
        connected = self.endpoint.connect(Factory.forProtocol(Protocol))
        connected.cancel()
        self.failureResultOf(connected, error.ConnectingCancelledError)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)


class RelayEndpointTests(unittest.TestCase):
    def test_an_ip_literal_is_connected_directly(self):
        endpoint = relay_endpoint(MemoryReactorClock(), "::1", 80, 1.0)
        self.assertIsInstance(endpoint, DirectTCPEndpoint)

    def test_a_name_is_resolved_on_every_connection(self):
        endpoint = relay_endpoint(MemoryReactorClock(), "backend.example", 80, 1.0)
        self.assertIsInstance(endpoint, HostnameEndpoint)
