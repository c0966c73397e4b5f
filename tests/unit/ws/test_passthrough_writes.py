"""A handshake written at once names the TCP connection it went to, for its hop to write to."""

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


class WriteNowTests(unittest.TestCase):
    def test_a_transport_over_no_socket_is_written_as_usual_and_names_none(self) -> None:
        transport = StringTransport()
        self.assertIsNone(write_now(transport, b"HTTP/1.1 101 \r\n\r\n"))
        self.assertEqual(transport.value(), b"HTTP/1.1 101 \r\n\r\n")

    def test_a_tcp_connection_written_to_directly_is_named(self) -> None:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        theirs.settimeout(2)
        connection = tcp.Connection(ours, Protocol(), reactor=MemoryReactorClock())
        connection.connected = 1
        self.assertIs(write_now(connection, b"HTTP/1.1 101 \r\n\r\n"), connection)
        self.assertEqual(theirs.recv(100), b"HTTP/1.1 101 \r\n\r\n")

    def test_a_hop_given_no_connection_writes_its_frames_through_its_transport(self) -> None:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        connection = tcp.Connection(ours, Protocol(), reactor=MemoryReactorClock())
        connection.connected = 1
        hop = Hop(connection, FakeSession(), Side.CLIENT, FrameScanner(masked=True), out=None)
        hop.peer = Hop(StringTransport(), hop.session, Side.BACKEND, FrameScanner(masked=False))
        hop.sendPing(b"")
        self.assertEqual(
            bytes(connection.dataBuffer) + b"".join(connection._tempDataBuffer), b"\x89\x00"
        )

    def test_a_hop_given_its_connection_writes_its_frames_there_at_once(self) -> None:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        theirs.settimeout(2)
        connection = tcp.Connection(ours, Protocol(), reactor=MemoryReactorClock())
        connection.connected = 1
        transport = StringTransport()
        hop = Hop(transport, FakeSession(), Side.CLIENT, FrameScanner(masked=True), out=connection)
        hop.peer = Hop(StringTransport(), hop.session, Side.BACKEND, FrameScanner(masked=False))
        hop.sendPing(b"")
        self.assertEqual(theirs.recv(100), b"\x89\x00")
        self.assertEqual(transport.value(), b"")
