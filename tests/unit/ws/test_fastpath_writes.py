"""Frames and handshakes the proxy writes itself go to the socket at once when nothing waits."""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from clbproxy.ws.closecodes import Side
from clbproxy.ws.fastpath import Hop
from clbproxy.ws.frames import FrameScanner
from clbproxy.ws.passthrough import write_now
from tests.unit.ws.test_fastpath import FakeSession

CLOSE_1001 = b"\x88\x02\x03\xe9"


class ImmediateWriteTests(unittest.TestCase):
    def connection(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        theirs.settimeout(2)
        connection = tcp.Connection(ours, Protocol(), reactor=MemoryReactorClock())
        connection.connected = 1
        return connection, theirs

    def test_a_close_frame_to_the_client_leaves_without_waiting_for_the_reactor(self) -> None:
        connection, theirs = self.connection()
        session = FakeSession()
        front = Hop(connection, session, Side.CLIENT, FrameScanner(masked=True))
        back = Hop(StringTransport(), session, Side.BACKEND, FrameScanner(masked=False))
        front.peer, back.peer = back, front
        front.sendCloseFrame(code=1001)
        self.assertEqual(theirs.recv(100), CLOSE_1001)
        self.assertEqual(front.octets_out, len(CLOSE_1001))
        self.assertFalse(connection.dataBuffer)

    def test_a_handshake_goes_to_the_socket_at_once_and_behind_queued_bytes_in_order(self):
        connection, theirs = self.connection()
        write_now(connection, b"HTTP/1.1 101 ")
        self.assertEqual(theirs.recv(100), b"HTTP/1.1 101 ")
        connection.write(b"queued ")
        write_now(connection, b"then this")
        connection.doWrite()
        self.assertEqual(theirs.recv(100), b"queued then this")

    def test_a_transport_over_no_socket_is_written_as_usual(self) -> None:
        transport = StringTransport()
        write_now(transport, b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(transport.value(), b"GET / HTTP/1.1\r\n\r\n")
