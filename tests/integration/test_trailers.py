"""Trailer fields through a whole listener over real sockets, in both directions."""

from __future__ import annotations

from typing import List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from tests.support.network import Listening, raw_request


def read_chunked(data: bytes) -> Optional[Tuple[bytes, List[bytes], bytes]]:
    """``(body, trailer lines, rest)`` of a complete chunked body at the start of ``data``."""
    body = b""
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return None
        size = int(data[position:end].split(b";")[0], 16)
        position = end + 2
        if size == 0:
            break
        if len(data) < position + size + 2:
            return None
        body += data[position : position + size]
        assert data[position + size : position + size + 2] == b"\r\n", data
        position += size + 2
    trailers = []
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return None
        line = data[position:end]
        position = end + 2
        if not line:
            return body, trailers, data[position:]
        trailers.append(line)


class _RecordingBackend(Protocol):
    """A raw HTTP/1.1 backend: records each request's head, body and trailers.

    Every request is answered with ``factory.response``; the connection is kept.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = [tuple(line.split(b": ", 1)) for line in lines[1:]]
            names = {name.lower(): value for name, value in headers}
            if names.get(b"transfer-encoding") == b"chunked":
                parsed = read_chunked(rest)
                if parsed is None:
                    return
                body, trailers, rest = parsed
            else:
                length = int(names.get(b"content-length", b"0"))
                if len(rest) < length:
                    return
                body, trailers, rest = rest[:length], [], rest[length:]
            self.buffer = rest
            self.factory.seen.append((lines[0], headers, body, trailers))
            self.transport.write(self.factory.response)


class _BackendFactory(Factory):
    protocol = _RecordingBackend

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.connections: List[_RecordingBackend] = []
        self.seen: List[tuple] = []


class _KeepAliveClient(Protocol):
    """Sends requests one after another on one connection; collects all it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.waiting: Optional[Tuple[bytes, Deferred]] = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.waiting is not None and self.received.endswith(self.waiting[0]):
            d = self.waiting[1]
            self.waiting = None
            d.callback(self.received)

    def send(self, request: bytes, until: bytes) -> Deferred:
        d: Deferred = Deferred()
        self.waiting = (until, d)
        self.transport.write(request)
        return d.addTimeout(5, reactor)


CHUNKED_OK = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Status, Set-Cookie\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Status: done\r\nSet-Cookie: a=1\r\n"
    b"Content-Length: 99\r\nX-Checksum: c0ffee\r\n\r\n"
)
SIMPLE_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class TrailerTests(TestCase):
    timeout = 30

    async def start(self, response: bytes) -> None:
        self.net = Listening(self)
        self.backend = _BackendFactory(response)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.backend)
        self.addCleanup(port.stopListening)
        self.addCleanup(self._close_backends)
        self.port = await self.net.proxy([port.getHost().port])

    def _close_backends(self) -> None:
        for connection in self.backend.connections:
            connection.transport.abortConnection()

    async def test_request_trailers_reach_the_backend_without_forbidden_fields(self) -> None:
        await self.start(SIMPLE_OK)
        await raw_request(
            self.port,
            b"POST /up HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum, Host\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nContent-Length: 5\r\n"
            b"Host: evil.test\r\nX-Forwarded-For: 6.6.6.6\r\nAuthorization: x\r\n"
            b"X-Checksum: def\r\n\r\n",
        ).addTimeout(10, reactor)
        line, headers, body, trailers = self.backend.seen[0]
        self.assertEqual(line, b"POST /up HTTP/1.1")
        self.assertIn((b"Transfer-Encoding", b"chunked"), headers)
        self.assertIn((b"Trailer", b"X-Checksum"), headers)
        self.assertNotIn(b"Content-Length", [name for name, _ in headers])
        self.assertEqual(body, b"hello world")
        self.assertEqual(trailers, [b"X-Checksum: abc", b"X-Checksum: def"])

    async def test_response_trailers_reach_an_http11_client(self) -> None:
        await self.start(CHUNKED_OK)
        response = await raw_request(
            self.port, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        ).addTimeout(10, reactor)
        head, _, rest = response.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
        self.assertIn(b"\r\nTrailer: X-Status", head)
        self.assertNotIn(b"Set-Cookie", head)
        self.assertEqual(
            read_chunked(rest), (b"hello world", [b"X-Status: done", b"X-Checksum: c0ffee"], b"")
        )

    async def test_response_trailers_are_dropped_for_an_http10_client(self) -> None:
        await self.start(CHUNKED_OK)
        response = await raw_request(
            self.port, b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n"
        ).addTimeout(10, reactor)
        head, _, rest = response.partition(b"\r\n\r\n")
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertNotIn(b"Trailer", head)
        self.assertEqual(rest, b"hello world")

    async def test_te_trailers_is_passed_on_alone(self) -> None:
        await self.start(SIMPLE_OK)
        await raw_request(
            self.port,
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n"
            b"TE: deflate;q=0.5, trailers\r\n\r\n",
        ).addTimeout(10, reactor)
        _, headers, _, _ = self.backend.seen[0]
        self.assertEqual([value for name, value in headers if name == b"TE"], [b"trailers"])

    async def test_trailers_both_ways_on_reused_connections(self) -> None:
        await self.start(CHUNKED_OK)
        client = _KeepAliveClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        self.addCleanup(client.transport.abortConnection)
        for number in range(3):
            await client.send(
                b"PUT /%d HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\nX-Part: %d\r\n\r\n" % (number, number),
                until=b"0\r\nX-Status: done\r\nX-Checksum: c0ffee\r\n\r\n",
            )
        self.assertEqual(
            [(body, trailers) for _, _, body, trailers in self.backend.seen],
            [(b"abc", [b"X-Part: %d" % number]) for number in range(3)],
        )
        self.assertEqual(len(self.backend.connections), 1)
        self.assertEqual(client.received.count(b"X-Status: done"), 3)

    async def test_large_chunked_upload_with_trailers_arrives_whole(self) -> None:
        await self.start(SIMPLE_OK)
        chunk = b"z" * 65536
        request = (
            b"POST / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + (b"10000\r\n" + chunk + b"\r\n") * 64
            + b"0\r\nX-Digest: end\r\n\r\n"
        )
        response = await raw_request(self.port, request).addTimeout(20, reactor)
        self.assertTrue(response.startswith(b"HTTP/1.1 200"), response[:100])
        _, _, body, trailers = self.backend.seen[0]
        self.assertEqual((len(body), trailers), (64 * 65536, [b"X-Digest: end"]))
