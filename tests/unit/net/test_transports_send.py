"""Bytes written straight to a TCP socket when nothing is queued before them."""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.net.transports import send_now, send_parts_now


class SendPartsNowTests(unittest.TestCase):
    def connection(self, sndbuf: int = 0):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        if sndbuf:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        ours.setblocking(False)
        theirs.settimeout(2)
        connection = tcp.Connection(ours, Protocol(), reactor=MemoryReactorClock())
        connection.connected = 1
        return connection, theirs

    def received(self, connection, theirs, size: int) -> bytes:
        """Everything the peer reads, the connection's queue flushed as the socket drains."""
        got = b""
        while len(got) < size:
            if connection.dataBuffer or connection._tempDataLen:
                connection.doWrite()
            got += theirs.recv(1 << 20)
        return got

    def test_pieces_go_to_the_socket_at_once_when_nothing_is_queued(self) -> None:
        connection, theirs = self.connection()
        send_parts_now(connection, (b"5\r\n", b"hello", b"\r\n"))
        self.assertEqual(theirs.recv(100), b"5\r\nhello\r\n")
        self.assertEqual(connection._tempDataLen, 0)

    def test_pieces_wait_behind_queued_bytes_in_order(self) -> None:
        connection, theirs = self.connection()
        connection.write(b"first;")
        send_parts_now(connection, (b"a", b"b"))
        send_now(connection, b";last")
        self.assertEqual(self.received(connection, theirs, 13), b"first;ab;last")

    def test_what_the_socket_does_not_take_is_queued_in_order(self) -> None:
        connection, theirs = self.connection(sndbuf=4096)
        body = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes at once
        parts = (b"%x\r\n" % len(body), body, b"\r\n")
        send_parts_now(connection, parts)
        self.assertGreater(connection._tempDataLen, 0)
        send_now(connection, b"0\r\n\r\n")
        expected = b"".join(parts) + b"0\r\n\r\n"
        self.assertEqual(self.received(connection, theirs, len(expected)), expected)

    def test_a_closing_connection_queues_the_pieces(self) -> None:
        connection, theirs = self.connection()
        connection.disconnecting = True
        send_parts_now(connection, (b"a", b"b"))
        self.assertEqual(connection._tempDataLen, 2)

    def test_an_aborted_connection_sends_nothing_more(self) -> None:
        connection, theirs = self.connection()
        connection.abortConnection()  # its close waits for the reactor's next turn
        send_now(connection, b"late")
        send_parts_now(connection, (b"a", b"b"))
        theirs.setblocking(False)
        with self.assertRaises(BlockingIOError):
            theirs.recv(100)
