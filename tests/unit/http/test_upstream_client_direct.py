"""The backend client on a real TCP connection: the head and body go to the socket at once."""

from __future__ import annotations

import socket

from twisted.internet import tcp

from tests.unit.http.test_upstream_client import GET, A, PoolTestCase

POST = b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n"
CHUNKED = b"POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"


class DirectWriteTests(PoolTestCase):
    def accept(self):
        """The pending attempt connects over loopback TCP: its transport, the backend's end."""
        server = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(server.close)
        ours = socket.create_connection(server.getsockname(), timeout=2)
        theirs, _ = server.accept()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        theirs.settimeout(2)
        _, factory, d = self.endpoints.attempts[-1]
        protocol = factory.buildProtocol(None)
        connection = tcp.Connection(ours, protocol, reactor=self.clock)
        connection.connected = 1
        protocol.makeConnection(connection)
        d.callback(protocol)
        return connection, theirs

    def connect(self, head: bytes):
        """An exchange with a body, connected over TCP; the transport, the backend's end."""
        sink, _ = self.send(self.pool(), head=head, method=b"POST", body=True)
        connection, theirs = self.accept()
        return sink, connection, theirs

    def test_a_content_length_body_reaches_the_socket_before_the_reactor_turns(self):
        sink, connection, theirs = self.connect(POST)
        sink.exchange.write_body(b"01234")
        sink.exchange.write_body(b"56789")
        self.assertEqual(theirs.recv(1000), POST + b"0123456789")
        self.assertEqual(connection._tempDataLen, 0)

    def test_a_chunked_body_reaches_the_socket_framed_before_the_reactor_turns(self):
        sink, connection, theirs = self.connect(CHUNKED)
        sink.exchange.write_body(b"hello")
        self.assertEqual(theirs.recv(1000), CHUNKED + b"5\r\nhello\r\n")
        self.assertEqual(connection._tempDataLen, 0)

    def test_a_head_without_a_body_reaches_the_socket_at_once(self):
        self.send(self.pool(), head=GET, backend=A)
        connection, theirs = self.accept()
        self.assertEqual(theirs.recv(1000), GET)
        self.assertEqual(connection._tempDataLen, 0)
