"""Walking Twisted's protocol wrappers and transports, in the one module that knows them."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial import unittest

from clbproxy.net.transports import (
    buffered_bytes,
    host_address,
    innermost_protocol,
    innermost_transport,
    peer_ip,
    switch_protocol,
)


def _wrapped(protocol: Protocol, transport: StringTransport) -> ProtocolWrapper:
    """``protocol`` under a pass-through wrapper (as the connection limiter wraps it)."""
    wrapper = ProtocolWrapper(WrappingFactory(None), protocol)
    wrapper.makeConnection(transport)
    transport.protocol = wrapper
    return wrapper


class WalkTests(unittest.TestCase):
    def test_the_innermost_transport_is_the_socket_under_every_wrapper(self):
        socket = StringTransport()
        protocol = Protocol()
        wrapper = _wrapped(protocol, socket)
        self.assertIs(protocol.transport, wrapper)
        self.assertIs(innermost_transport(protocol.transport), socket)
        self.assertIs(innermost_transport(socket), socket)

    def test_the_innermost_protocol_is_the_one_every_wrapper_wraps(self):
        protocol = Protocol()
        wrapper = _wrapped(protocol, StringTransport())
        self.assertIs(innermost_protocol(wrapper), protocol)
        self.assertIs(innermost_protocol(protocol), protocol)

    def test_switch_protocol_makes_the_wrapper_deliver_to_the_new_protocol(self):
        old, new = Protocol(), Protocol()
        received = []
        new.dataReceived = received.append
        wrapper = _wrapped(old, StringTransport())
        self.assertTrue(switch_protocol(old, new))
        wrapper.dataReceived(b"after")
        self.assertEqual(received, [b"after"])

    def test_switch_protocol_says_so_when_it_finds_no_link(self):
        old = Protocol()
        old.makeConnection(StringTransport())
        self.assertFalse(switch_protocol(old, Protocol()))


class AddressTests(unittest.TestCase):
    def test_peer_and_host_addresses_or_a_dash(self):
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "10.0.0.1", 80),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 5000),
        )
        self.assertEqual(peer_ip(transport), "192.0.2.7")
        self.assertEqual(host_address(transport).port, 80)
        self.assertEqual(peer_ip(object()), "-")
        self.assertIsNone(host_address(object()))

    def test_buffered_bytes_of_no_transport_is_zero(self):
        self.assertEqual(buffered_bytes(None), 0)
