"""The lean backend client against real backends on 127.0.0.1, plain and TLS."""

from __future__ import annotations

import os

import trustme
from twisted.internet import defer, reactor, ssl
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial import unittest

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.http.upstream_client import UpstreamPool
from clbproxy.net.tls_client import BackendConnector
from tests.support.tls import write

RESPONSES = {
    b"/hello": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"6\r\nchunks\r\n5\r\n with\r\n9\r\n trailers\r\n0\r\nX-Sum: 20\r\n\r\n"
    ),
}


class RawBackend(Protocol):
    """A keep-alive backend: answers each GET by its path; echoes a POST's Content-Length body."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.factory.live.append(self)
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].split(b" ")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            if method == b"POST":
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length)
                self.transport.write(body)
            else:
                self.transport.write(RESPONSES[path])


class BackendFactory(Factory):
    protocol = RawBackend
    noisy = False

    def __init__(self) -> None:
        self.connections = 0
        self.live: list[RawBackend] = []


class Collect:
    """A sink that fires ``done`` with (status, body, trailers) or the failure."""

    def __init__(self) -> None:
        self.done: defer.Deferred = defer.Deferred()
        self.ready: defer.Deferred = defer.Deferred()
        self.body = b""
        self.status = None

    def connected(self, exchange) -> None:
        self.ready.callback(exchange)

    def interim(self, status, fields) -> None:
        pass

    def response_head(self, head) -> None:
        self.status = head.status

    def response_data(self, data) -> None:
        self.body += data

    def response_complete(self, trailers) -> None:
        self.done.callback((self.status, self.body, trailers))

    def response_failed(self, status, reason, retryable) -> None:
        self.done.callback(("failed", status, reason, retryable))

    def body_paused(self) -> None:
        pass

    def body_resumed(self) -> None:
        pass


class UpstreamClientTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def start(self, tls: bool = False, **group_options):
        self.backend = BackendFactory()
        if tls:
            ca = trustme.CA()
            directory = self.mktemp()
            os.makedirs(directory)
            cert = ca.issue_cert("backend.internal")
            options = ssl.PrivateCertificate.loadPEM(
                cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
            ).options()
            endpoint = SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
            ca_file = write(directory, "ca.pem", ca.cert_pem.bytes())
            group_options.update(tls=True, ca_file=ca_file, server_name="backend.internal")
        else:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(self.backend)
        self.addCleanup(port.stopListening)
        self.target = BackendConfig("127.0.0.1", port.getHost().port)
        group = TargetGroupConfig("g", (self.target,), **group_options)
        connector = BackendConnector(reactor)
        self.pool = UpstreamPool(reactor, group, lambda b: connector.endpoint(b, group))
        self.addCleanup(self.pool.close)

    def get(self, path: bytes = b"/hello") -> defer.Deferred:
        sink = Collect()
        self.pool.send(
            self.target,
            b"GET %s HTTP/1.1\r\nHost: backend.internal\r\n\r\n" % path,
            sink,
            method=b"GET",
            body=False,
            response_timeout=10,
        )
        return sink.done

    @defer.inlineCallbacks
    def test_hundreds_of_requests_reuse_one_connection(self):
        yield self.start()
        for _ in range(300):
            result = yield self.get()
            self.assertEqual(result, (200, b"hello", []))
        self.assertEqual(self.backend.connections, 1)

    @defer.inlineCallbacks
    def test_backend_connections_send_small_writes_at_once(self):
        yield self.start()
        yield self.get()
        (connection,) = self.pool._idle[("127.0.0.1", self.target.port)]
        self.assertTrue(connection.transport.getTcpNoDelay())

    @defer.inlineCallbacks
    def test_a_chunked_response_gives_its_body_and_trailers(self):
        yield self.start()
        result = yield self.get(b"/chunked")
        self.assertEqual(result, (200, b"chunks with trailers", [(b"X-Sum", b"20")]))

    @defer.inlineCallbacks
    def test_a_streamed_request_body_is_echoed(self):
        yield self.start()
        sink = Collect()
        body = b"x" * 300_000
        exchange = self.pool.send(
            self.target,
            b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body),
            sink,
            method=b"POST",
            body=True,
            response_timeout=10,
        )
        self.assertIs((yield sink.ready), exchange)
        for at in range(0, len(body), 65536):
            exchange.write_body(body[at : at + 65536])
        exchange.finish_body()
        status, echoed, _ = yield sink.done
        self.assertEqual((status, len(echoed)), (200, len(body)))

    @defer.inlineCallbacks
    def test_a_backend_that_stops_reading_pauses_the_body_until_it_reads_again(self):
        yield self.start()
        sink = Collect()
        events = []
        sink.body_paused = lambda: events.append("paused")
        resumed = defer.Deferred()
        sink.body_resumed = lambda: (events.append("resumed"), resumed.callback(None))
        body = b"y" * (64 * 1024)
        length = 64 * len(body)
        exchange = self.pool.send(
            self.target,
            b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length,
            sink,
            method=b"POST",
            body=True,
            response_timeout=10,
        )
        yield sink.ready
        (server,) = self.backend.live
        server.transport.pauseProducing()
        for _ in range(64):  # far more than the socket buffers hold
            exchange.write_body(body)
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(events, ["paused"])
        server.transport.resumeProducing()
        yield resumed
        exchange.finish_body()
        status, echoed, _ = yield sink.done
        self.assertEqual((status, len(echoed)), (200, length))
        self.assertEqual(events, ["paused", "resumed"])

    @defer.inlineCallbacks
    def test_requests_over_tls_reuse_one_verified_connection(self):
        yield self.start(tls=True)
        for _ in range(100):
            result = yield self.get()
            self.assertEqual(result, (200, b"hello", []))
        result = yield self.get(b"/chunked")
        self.assertEqual(result, (200, b"chunks with trailers", [(b"X-Sum", b"20")]))
        self.assertEqual(self.backend.connections, 1)

    @defer.inlineCallbacks
    def test_a_refused_connection_is_a_retryable_502(self):
        yield self.start()
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
        closed = BackendConfig("127.0.0.1", port.getHost().port)
        yield port.stopListening()
        sink = Collect()
        self.pool.send(
            closed, b"GET / HTTP/1.1\r\n\r\n", sink, method=b"GET", body=False, response_timeout=10
        )
        failed, status, _, retryable = yield sink.done
        self.assertEqual((failed, status, retryable), ("failed", 502, True))
