"""Switching a connection's protocol when the caller already knows the socket under it."""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.net.transports import switch_protocol
from tests.unit.net.test_transports import _wrapped


class KnownSocketTests(unittest.TestCase):
    def test_the_wrapper_over_the_given_socket_delivers_to_the_new_protocol(self):
        old, new = Protocol(), Protocol()
        received = []
        new.dataReceived = received.append
        socket = StringTransport()
        wrapper = _wrapped(old, socket)
        self.assertTrue(switch_protocol(old, new, socket))
        wrapper.dataReceived(b"after")
        self.assertEqual(received, [b"after"])

    def test_a_socket_delivering_to_the_old_protocol_delivers_to_the_new_one(self):
        old, new = Protocol(), Protocol()
        socket = StringTransport()
        old.makeConnection(socket)
        socket.protocol = old
        self.assertTrue(switch_protocol(old, new, socket))
        self.assertIs(socket.protocol, new)

    def test_a_given_socket_with_no_link_to_the_old_protocol_is_reported(self):
        old = Protocol()
        socket = StringTransport()
        old.makeConnection(socket)
        socket.protocol = Protocol()
        self.assertFalse(switch_protocol(old, Protocol(), socket))
