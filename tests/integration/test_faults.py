"""Faults on either side of a WebSocket session, over real sockets on 127.0.0.1.

Each test breaks one thing (a backend that refuses, resets, stays silent, speaks
garbage, or a side that reads too slowly, or a client that disappears) and
asserts what the other side sees and that the proxy forgets the session.
"""

from __future__ import annotations

import socket
import struct

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import defer, reactor, task

from tests.integration.test_websocket_relay import RelayTestCase, _closed_port, _status
from tests.support.handshakes import upgrade_request
from tests.support.network import BackendFactory, raw_request


class _ResetMidMessage(WebSocketServerProtocol):
    """Sends the first 40 000 bytes of a 100 000-byte frame, then resets the connection."""

    def onOpen(self):
        header = bytes([0x82, 127]) + struct.pack("!Q", 100_000)
        self.transport.write(header + b"r" * 40_000)
        reactor.callLater(0.1, self.transport.abortConnection)


class _GarbageAfterOpen(WebSocketServerProtocol):
    """Accepts the handshake, then sends bytes that are no WebSocket frame."""

    def onOpen(self):
        self.transport.write(b"\xff\xff\xff\xff HTTP/1.1 200 OK\r\n\r\n")


class _NeverReads(WebSocketServerProtocol):
    def onOpen(self):
        self.factory.opened.append(self)
        self.transport.pauseProducing()


class FaultTests(RelayTestCase):
    @defer.inlineCallbacks
    def wait_sessions_gone(self):
        for _ in range(100):
            if not self.net.service.relay.sessions:
                return
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.fail(f"sessions left: {self.net.service.relay.sessions}")

    @defer.inlineCallbacks
    def custom_backend(self, protocol):
        factory = BackendFactory(deflate=False)
        factory.protocol = protocol
        self.net.connections.append(factory)
        port = yield self.net.listen(factory)
        proxy_port = yield self.net.proxy([port])
        return factory, proxy_port

    @defer.inlineCallbacks
    def test_backend_refusing_connections_gives_502_and_the_proxy_keeps_serving(self):
        dead = yield _closed_port(self.net)
        _, live = self.net.backend()
        live_port = yield live
        port = yield self.net.proxy([dead], group_options={"retries": 0})
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 502)
        yield self.wait_sessions_gone()
        other = yield self.net.proxy([live_port])
        client = self.net.client(other)
        protocol = yield client.opened
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_backend_reset_mid_message_closes_the_client_with_1011_and_no_partial_message(self):
        _, port = yield self.custom_backend(_ResetMidMessage)
        client = self.net.client(port)
        yield client.opened
        _, code, reason = yield client.closed
        self.assertEqual((code, reason), (1011, "backend went away"))
        self.assertEqual(client.messages, [])
        yield self.wait_sessions_gone()

    @defer.inlineCallbacks
    def test_backend_silent_after_accepting_tcp_gives_504_and_forgets_the_session(self):
        backend_port = yield self.net.raw_backend(b"", close_after=False)
        port = yield self.net.proxy([backend_port], group_options={"response_timeout": 0.3})
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 504)
        yield self.wait_sessions_gone()

    @defer.inlineCallbacks
    def test_backend_answering_garbage_instead_of_http_gives_502(self):
        for garbage in (b"\x16\x03\x01\x00\xa5\x01\x00", b"HTTP/9 999\r\n\r\n", b"\r\n\r\n"):
            backend_port = yield self.net.raw_backend(garbage)
            port = yield self.net.proxy([backend_port])
            response = yield raw_request(port, upgrade_request())
            self.assertEqual(_status(response), 502, garbage)
        yield self.wait_sessions_gone()

    @defer.inlineCallbacks
    def test_backend_sending_garbage_frames_after_the_handshake_closes_the_client_with_1011(self):
        _, port = yield self.custom_backend(_GarbageAfterOpen)
        client = self.net.client(port)
        yield client.opened
        _, code, reason = yield client.closed
        self.assertEqual(code, 1011)
        self.assertTrue(reason.startswith("backend error"), reason)
        yield self.wait_sessions_gone()

    @defer.inlineCallbacks
    def test_slow_backend_bounds_what_the_proxy_buffers_from_a_fast_client(self):
        factory, port = yield self.custom_backend(_NeverReads)
        factory.opened = []
        client = self.net.client(port)
        protocol = yield client.opened
        for _ in range(256):
            protocol.sendMessage(b"u" * 65536, isBinary=True)  # 16 MiB towards the backend
        peak = 0
        for _ in range(25):
            yield task.deferLater(reactor, 0.02, lambda: None)
            (session,) = self.net.service.relay.sessions
            peak = max(peak, session.buffered_bytes())
        buffer = self.net.service.relay.settings.listener.session_buffer
        self.assertLess(peak, 2 * buffer + 2 * 65536 + 16384)
        # The rest waits in the client's own send buffer: the proxy stopped reading it.
        unsent = len(protocol.transport.dataBuffer) + protocol.transport._tempDataLen
        self.assertGreater(unsent, 8 * 1024 * 1024)
        factory.opened[0].transport.resumeProducing()

    @defer.inlineCallbacks
    def test_client_reset_closes_the_backend_with_1001(self):
        backend, port = yield self.proxy_to_backend()
        backend.closed = defer.Deferred()
        sock = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(sock.close)
        sock.sendall(upgrade_request())
        yield task.deferLater(reactor, 0.2, lambda: None)
        # SO_LINGER 0: close() sends RST, not FIN, as a crashed or NAT-dropped peer would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        _, code, reason = yield backend.closed
        self.assertEqual((code, reason), (1001, "client went away"))
        yield self.wait_sessions_gone()
