"""Tests for clbproxy.http.forwarder over real sockets on 127.0.0.1.

Each test runs a twisted.web backend, a front site whose root resource calls
``HTTPForwarder.forward``, and a client (treq, or raw TCP when the bytes on the
wire matter).  The front is a listener's own connection
(:class:`clbproxy.listener.connection.ListenerSite`: strict parsing, streamed
request bodies, host checks) with the listener defaults, without its rules, on
the environment's parser back end (``CLBPROXY_HTTP_PARSER``; the default one
here, ``h11`` in :mod:`tests.integration.test_httpproxy_h11`).
"""

from __future__ import annotations

import hashlib
import socket
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import attrs
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.error import ConnectionClosed, ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from clbproxy.config import BackendConfig, ListenerConfig, TargetGroupConfig
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.forwarder import HTTPForwarder
from clbproxy.http.parsers import chosen
from clbproxy.listener.connection import ListenerConnection, ListenerSite
from clbproxy.upstream.balancer import TargetGroup

CHUNK = 64 * 1024


@attrs.frozen
class Seen:
    """A request as the backend received it."""

    method: bytes
    uri: bytes
    headers: Tuple[Tuple[bytes, bytes], ...]
    body: bytes

    def header(self, name: bytes) -> List[bytes]:
        return [value for key, value in self.headers if key == name.lower()]


Handler = Callable[[Request], object]


class RecordingBackend(Resource):
    """A backend application: records each request, answers with a handler chosen by path."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Seen] = []
        self.handlers: Dict[bytes, Handler] = {}

    def render(self, request: Request) -> object:
        headers = tuple(
            (name.lower(), value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        )
        self.seen.append(Seen(request.method, request.uri, headers, request.content.read()))
        handler = self.handlers.get(request.path)
        return handler(request) if handler is not None else b"hello world"


class _Tracked:
    """An HTTP server connection whose end can be awaited."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.lost: Deferred[None] = Deferred()
        self.factory.channels.append(self)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


class TrackedChannel(_Tracked, HTTPChannel):
    """A plain twisted.web connection (the backends')."""


class TrackedListenerConnection(_Tracked, ListenerConnection):
    """A listener's client connection (the front's)."""


class _TrackedSiteMixin:
    """A site that knows its connections, so a test can count and close them."""

    def close_connections(self) -> Deferred:
        for channel in self.channels:
            channel.transport.abortConnection()
        return gatherResults([channel.lost for channel in self.channels])


class TrackedSite(_TrackedSiteMixin, Site):
    """A backend's site."""

    protocol = TrackedChannel

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.channels: List[_Tracked] = []


class TrackedListenerSite(_TrackedSiteMixin, ListenerSite):
    """The front: the listener's connections, with the listener defaults."""

    protocol = TrackedListenerConnection

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource, ListenerConfig(name="front", bind="tcp:0", rules=()), reactor)
        self.channels: List[_Tracked] = []


class Forwarding(Resource):
    """The front site's root: every request goes to one target group."""

    isLeaf = True

    def __init__(self, forwarder: HTTPForwarder, group: TargetGroup) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._group = group

    def render(self, request: Request) -> object:
        return self._forwarder.forward(request, self._group)


class RawClient(Protocol):
    """A TCP client that records every byte and how the connection ended."""

    def __init__(self, on_data: Optional[Callable[[RawClient], None]] = None) -> None:
        self.received = bytearray()
        self.reason: Optional[Failure] = None
        self.closed: Deferred[None] = Deferred()
        self._on_data = on_data

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self._on_data is not None:
            self._on_data(self)

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason
        self.closed.callback(None)


@implementer(IPushProducer)
class EndlessBody:
    """A backend response body written as fast as the backend connection takes it.

    It stops at ``limit`` bytes; ``lost`` fires when the backend's request ends
    (an error when its connection was closed before the body was finished).
    """

    def __init__(self, request: Request, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.sent = 0
        self.paused = False
        self.first_pause: Deferred[None] = Deferred()
        self._stopped = False
        self._call = None
        self.lost = request.notifyFinish()
        self.lost.addBoth(self._ended)
        request.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        self._call = reactor.callLater(0, self._write)

    def _write(self) -> None:
        self._call = None
        if self.paused or self._stopped:
            return
        if self.sent >= self.limit:
            self.request.unregisterProducer()
            self.request.finish()
            return
        self.sent += CHUNK
        self.request.write(b"x" * CHUNK)
        self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True
        if not self.first_pause.called:
            self.first_pause.callback(None)

    def resumeProducing(self) -> None:
        self.paused = False
        if self._call is None and not self._stopped:
            self._schedule()

    def stopProducing(self) -> None:
        self._stopped = True

    def _ended(self, result: object) -> object:
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return result


def respond_with(*headers: Tuple[bytes, bytes], body: bytes = b"", code: int = 200) -> Handler:
    def handler(request: Request) -> bytes:
        request.setResponseCode(code)
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        return body

    return handler


def header_block(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[0]


class HTTPForwarderTests(TestCase):
    """A front site forwarding through HTTPForwarder to real backends."""

    async def setUp(self) -> None:
        self.backend = RecordingBackend()
        self.backend_site = TrackedSite(self.backend)
        self.backend_port = await self.listen(self.backend_site)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = HTTPClient(Agent(reactor, pool=pool))
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    async def listen(self, factory: Factory, description: str = "tcp:0:interface=127.0.0.1") -> int:
        port = await serverFromString(reactor, description).listen(factory)
        self.addCleanup(port.stopListening)
        if isinstance(factory, _TrackedSiteMixin):
            self.addCleanup(factory.close_connections)
        return port.getHost().port

    async def unused_port(self) -> int:
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Factory())
        number = port.getHost().port
        await port.stopListening()
        return number

    def live(self) -> BackendConfig:
        return BackendConfig("127.0.0.1", self.backend_port)

    def unresponsive(self) -> BackendConfig:
        """A backend whose connection attempts hang: its accept queue is full (Linux)."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(3):
            filler = socket.socket()
            self.addCleanup(filler.close)
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        return BackendConfig("127.0.0.1", listener.getsockname()[1])

    async def dead(self) -> BackendConfig:
        return BackendConfig("127.0.0.1", await self.unused_port())

    async def start_proxy(
        self,
        backends: Optional[Sequence[BackendConfig]] = None,
        *,
        retries: int = 1,
        connect_timeout: float = 2.0,
        response_timeout: float = 5.0,
        trusted: Sequence[str] = (),
        pool_factory=None,
        **group_options,
    ) -> str:
        """Start the front site and return its base URL."""
        group = TargetGroup(
            TargetGroupConfig(
                name="web",
                backends=tuple(backends if backends is not None else [self.live()]),
                connect_timeout=connect_timeout,
                response_timeout=response_timeout,
                retries=retries,
                **group_options,
            )
        )
        forwarder = HTTPForwarder(
            reactor,
            scheme="http",
            trusted=TrustedProxies.from_cidrs(trusted),
            pool_factory=pool_factory,
        )
        self.addCleanup(forwarder.close)
        self.front = TrackedListenerSite(Forwarding(forwarder, group))
        self.front_port = await self.listen(self.front)
        return f"http://127.0.0.1:{self.front_port}"

    async def get(self, url: str, **kwargs) -> Tuple[object, bytes]:
        response = await self.client.get(url, **kwargs)
        return response, await response.content()

    async def raw(self, request: bytes) -> Tuple[bytes, Failure]:
        """Send raw bytes to the front and return everything received and how it closed."""
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.front_port)
        await connectProtocol(endpoint, client)
        client.transport.write(request)
        await client.closed.addTimeout(5, reactor)
        return bytes(client.received), client.reason

    def proxy_warnings(self) -> List[dict]:
        return [
            event
            for event in self.events
            if event.get("log_namespace") == "clbproxy.http.forwarder"
            and event.get("log_level") == LogLevel.warn
        ]

    async def test_the_front_is_the_listeners_connection_on_the_chosen_parser(self) -> None:
        url = await self.start_proxy()
        await self.get(url + "/")
        (connection,) = self.front.channels
        self.assertIsInstance(connection, ListenerConnection)
        self.assertEqual(self.front.backend, chosen())

    # Passing requests and responses through

    async def test_get_relays_status_headers_and_body(self) -> None:
        def page(request: Request) -> bytes:
            request.setResponseCode(203, b"Borrowed Copy")
            request.responseHeaders.addRawHeader(b"Set-Cookie", b"a=1")
            request.responseHeaders.addRawHeader(b"Set-Cookie", b"b=2")
            request.responseHeaders.addRawHeader(b"X-App", b"yes")
            return b"page body"

        self.backend.handlers[b"/page"] = page
        url = await self.start_proxy()

        response, body = await self.get(url + "/page")

        self.assertEqual((response.code, response.phrase), (203, b"Borrowed Copy"))
        self.assertEqual(response.headers.getRawHeaders(b"set-cookie"), [b"a=1", b"b=2"])
        self.assertEqual(response.headers.getRawHeaders(b"x-app"), [b"yes"])
        self.assertEqual(body, b"page body")

    async def test_path_and_query_reach_backend(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/a/b?x=1&y=%20")

        self.assertEqual(self.backend.seen[0].uri, b"/a/b?x=1&y=%20")

    async def test_absolute_form_target_sends_only_path_and_query(self) -> None:
        await self.start_proxy()

        await self.raw(
            b"GET http://app.example.com/a/b?x=1 HTTP/1.1\r\n"
            b"Host: app.example.com\r\nConnection: close\r\n\r\n"
        )

        self.assertEqual(self.backend.seen[0].uri, b"/a/b?x=1")

    async def test_post_with_content_length_reaches_backend_intact(self) -> None:
        url = await self.start_proxy()
        payload = bytes(range(256)) * 1000

        response = await self.client.post(url + "/upload", data=payload)
        await response.content()

        seen = self.backend.seen[0]
        self.assertEqual((seen.method, seen.body), (b"POST", payload))
        self.assertEqual(seen.header(b"content-length"), [b"256000"])

    async def test_chunked_post_reaches_backend_intact(self) -> None:
        await self.start_proxy()

        await self.raw(
            b"POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )

        seen = self.backend.seen[0]
        self.assertEqual((seen.method, seen.body), (b"POST", b"hello world"))
        # Streamed on as it arrives: chunked to the backend too, never buffered to
        # learn its length.
        self.assertEqual(seen.header(b"transfer-encoding"), [b"chunked"])
        self.assertEqual(seen.header(b"content-length"), [])

    async def test_expect_100_continue_gets_continue_then_the_body_reaches_the_backend(
        self,
    ) -> None:
        await self.start_proxy()

        def send_body(client: RawClient) -> None:
            if client.received == b"HTTP/1.1 100 Continue\r\n\r\n":
                client.transport.write(b"hello")

        client = RawClient(send_body)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.front_port), client)
        client.transport.write(
            b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        await client.closed.addTimeout(5, reactor)

        interim, _, final = bytes(client.received).partition(b"\r\n\r\n")
        self.assertEqual(interim, b"HTTP/1.1 100 Continue")
        self.assertTrue(final.startswith(b"HTTP/1.1 200 "), final)
        self.assertTrue(final.endswith(b"hello world"), final)
        seen = self.backend.seen[0]
        self.assertEqual((seen.body, seen.header(b"expect")), (b"hello", []))

    async def test_get_without_body_sends_no_body(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/")

        seen = self.backend.seen[0]
        self.assertEqual(seen.header(b"content-length") + seen.header(b"transfer-encoding"), [])

    async def test_host_header_is_preserved(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/", headers={b"Host": [b"app.example.com:8080"]})

        self.assertEqual(self.backend.seen[0].header(b"host"), [b"app.example.com:8080"])

    async def test_absolute_form_authority_is_the_backends_host(self) -> None:
        await self.start_proxy()

        await self.raw(
            b"GET http://a.test:8080/x?y=1 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n"
        )

        seen = self.backend.seen[0]
        self.assertEqual(
            (seen.uri, seen.header(b"host"), seen.header(b"x-forwarded-host")),
            (b"/x?y=1", [b"a.test:8080"], [b"a.test:8080"]),
        )

    async def test_duplicate_host_is_400_and_reaches_no_backend(self) -> None:
        await self.start_proxy()

        response, _ = await self.raw(
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n"
        )

        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)
        self.assertIn(b"more than one Host header", response)
        self.assertEqual(self.backend.seen, [])

    async def test_missing_host_on_http_1_1_is_400_and_reaches_no_backend(self) -> None:
        await self.start_proxy()

        response, _ = await self.raw(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")

        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)
        self.assertIn(b"a Host header is required", response)
        self.assertEqual(self.backend.seen, [])

    async def test_http_1_0_without_host_is_forwarded(self) -> None:
        await self.start_proxy()

        response, _ = await self.raw(b"GET /old HTTP/1.0\r\n\r\n")

        self.assertTrue(response.startswith(b"HTTP/1.0 200 "), response)
        self.assertEqual(self.backend.seen[0].uri, b"/old")

    async def test_duplicate_request_headers_are_kept(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/", headers={b"X-Multi": [b"one", b"two"]})

        self.assertEqual(self.backend.seen[0].header(b"x-multi"), [b"one", b"two"])

    async def test_hop_by_hop_request_headers_are_removed(self) -> None:
        await self.start_proxy()

        await self.raw(
            b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\nConnection: X-Session-Hop\r\n"
            b"X-Session-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nTE: deflate\r\n"
            b"X-End-To-End: kept\r\n\r\n"
        )

        seen = self.backend.seen[0]
        for name in (b"connection", b"x-session-hop", b"keep-alive", b"proxy-authorization", b"te"):
            self.assertEqual(seen.header(name), [], name)
        self.assertEqual(seen.header(b"x-end-to-end"), [b"kept"])

    async def test_hop_by_hop_response_headers_are_removed(self) -> None:
        self.backend.handlers[b"/"] = respond_with(
            (b"Keep-Alive", b"timeout=5"),
            (b"Trailer", b"X-Checksum"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"X-Kept", b"yes"),
            body=b"ok",
        )
        await self.start_proxy()

        response, _ = await self.raw(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")

        head = header_block(response).lower()
        for name in (b"keep-alive", b"trailer", b"proxy-authenticate"):
            self.assertNotIn(b"\r\n" + name + b":", head)
        self.assertIn(b"\r\nx-kept: yes", head)

    async def test_proxy_request_headers_are_removed(self) -> None:
        await self.start_proxy()

        await self.raw(
            b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n"
            b"Proxy: http://attacker.test:3128\r\nProxy-Connection: keep-alive\r\n"
            b"Proxy-Custom: 1\r\nX-Proxyless: kept\r\n\r\n"
        )

        seen = self.backend.seen[0]
        for name in (b"proxy", b"proxy-connection", b"proxy-custom"):
            self.assertEqual(seen.header(name), [], name)
        self.assertEqual(seen.header(b"x-proxyless"), [b"kept"])

    async def test_response_headers_the_backend_names_in_connection_are_removed(self) -> None:
        class Answer(Protocol):
            def dataReceived(self, data: bytes) -> None:
                if b"\r\n\r\n" in data:
                    self.transport.write(
                        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\n"
                        b"Connection: X-Hop-Two\r\nX-Internal: secret\r\nX-Hop-Two: 2\r\n"
                        b"Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nTE: trailers\r\n"
                        b"Proxy-Status: backend\r\nX-Kept: yes\r\n"
                        b"Content-Length: 2\r\n\r\nok"
                    )

        port = await self.listen(Factory.forProtocol(Answer))
        await self.start_proxy([BackendConfig("127.0.0.1", port)])

        response, _ = await self.raw(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")

        head = header_block(response).lower()
        for name in (
            b"x-internal",
            b"x-hop-two",
            b"keep-alive",
            b"upgrade",
            b"te",
            b"proxy-status",
        ):
            self.assertNotIn(b"\r\n" + name + b":", head)
        self.assertIn(b"\r\nx-kept: yes", head)
        self.assertTrue(response.endswith(b"\r\n\r\nok"), response)

    async def test_backend_content_length_is_kept(self) -> None:
        self.backend.handlers[b"/"] = respond_with(body=b"twelve bytes")
        await self.start_proxy()

        response, _ = await self.raw(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")

        head = header_block(response).lower()
        self.assertIn(b"\r\ncontent-length: 12", head)
        self.assertNotIn(b"transfer-encoding", head)
        self.assertTrue(response.endswith(b"\r\n\r\ntwelve bytes"))

    async def test_head_response_has_headers_and_no_body(self) -> None:
        self.backend.handlers[b"/"] = respond_with(body=b"twelve bytes")
        await self.start_proxy()

        response, _ = await self.raw(b"HEAD / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")

        self.assertIn(b"\r\ncontent-length: 12", header_block(response).lower())
        self.assertTrue(response.endswith(b"\r\n\r\n"))

    async def test_no_content_response_has_no_body(self) -> None:
        self.backend.handlers[b"/"] = respond_with(code=204)
        await self.start_proxy()

        response, _ = await self.raw(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")

        self.assertTrue(response.startswith(b"HTTP/1.1 204 "))
        self.assertNotIn(b"transfer-encoding", header_block(response).lower())
        self.assertTrue(response.endswith(b"\r\n\r\n"))

    async def test_large_streamed_response_arrives_intact(self) -> None:
        payload = b"".join(hashlib.sha256(b"%d" % i).digest() * 2048 for i in range(32))

        def stream(request: Request) -> object:
            for offset in range(0, len(payload), CHUNK):
                request.write(payload[offset : offset + CHUNK])
            request.finish()
            return NOT_DONE_YET

        self.backend.handlers[b"/big"] = stream
        url = await self.start_proxy()

        _, body = await self.get(url + "/big")

        self.assertEqual(len(body), 2 * 1024 * 1024)
        self.assertEqual(hashlib.sha256(body).digest(), hashlib.sha256(payload).digest())

    async def test_close_delimited_backend_body_is_complete(self) -> None:
        class CloseDelimited(Protocol):
            def dataReceived(self, data: bytes) -> None:
                if b"\r\n\r\n" in data:
                    self.transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
                    self.transport.loseConnection()

        port = await self.listen(Factory.forProtocol(CloseDelimited))
        url = await self.start_proxy([BackendConfig("127.0.0.1", port)])

        response, body = await self.get(url + "/")

        self.assertEqual((response.code, body), (200, b"until close"))

    async def test_ipv6_backend(self) -> None:
        try:
            port = await self.listen(self.backend_site, "tcp6:0:interface=\\:\\:1")
        except Exception as error:
            raise self.skipTest(f"no IPv6 loopback: {error}") from error
        url = await self.start_proxy([BackendConfig("::1", port)])

        response, body = await self.get(url + "/")

        self.assertEqual((response.code, body), (200, b"hello world"))

    # Forwarding headers

    async def test_x_forwarded_for_appends_the_peer(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/", headers={b"X-Forwarded-For": [b"203.0.113.9"]})

        self.assertEqual(
            self.backend.seen[0].header(b"x-forwarded-for"), [b"203.0.113.9, 127.0.0.1"]
        )

    async def test_x_real_ip_is_the_untrusted_peer(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/", headers={b"X-Real-IP": [b"198.51.100.1"]})

        self.assertEqual(self.backend.seen[0].header(b"x-real-ip"), [b"127.0.0.1"])

    async def test_spoofed_x_forwarded_proto_from_untrusted_peer_is_replaced(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/", headers={b"X-Forwarded-Proto": [b"https"]})

        self.assertEqual(self.backend.seen[0].header(b"x-forwarded-proto"), [b"http"])

    async def test_trusted_peer_forwarding_headers_are_believed(self) -> None:
        url = await self.start_proxy(trusted=["127.0.0.0/8"])

        await self.get(
            url + "/",
            headers={b"X-Forwarded-For": [b"203.0.113.9"], b"X-Forwarded-Proto": [b"https"]},
        )

        seen = self.backend.seen[0]
        self.assertEqual(seen.header(b"x-real-ip"), [b"203.0.113.9"])
        self.assertEqual(seen.header(b"x-forwarded-proto"), [b"https"])

    # Choosing backends and failing over

    async def test_unreachable_backend_is_retried_on_the_next(self) -> None:
        url = await self.start_proxy([await self.dead(), self.live()], retries=1)

        response, body = await self.get(url + "/")

        self.assertEqual((response.code, body), (200, b"hello world"))

    async def test_connect_timeout_is_retried_on_the_next(self) -> None:
        url = await self.start_proxy(
            [self.unresponsive(), self.live()], retries=1, connect_timeout=0.2
        )

        response, body = await self.get(url + "/")

        self.assertEqual((response.code, body), (200, b"hello world"))
        [event] = self.proxy_warnings()
        self.assertIn("TimeoutError", event["reason"])

    async def test_connection_failure_is_logged_with_backend_group_and_reason(self) -> None:
        dead = await self.dead()
        url = await self.start_proxy([dead, self.live()], retries=1)

        await self.get(url + "/")

        [event] = self.proxy_warnings()
        self.assertEqual((event["backend"], event["group"]), (dead.address, "web"))
        self.assertIn("ConnectionRefusedError", event["reason"])

    async def test_all_backends_unreachable_is_502(self) -> None:
        url = await self.start_proxy([await self.dead(), await self.dead()], retries=1)

        response, body = await self.get(url + "/")

        self.assertEqual(response.code, 502)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"]
        )
        self.assertIn(b"502 Bad Gateway", body)

    async def test_retries_are_bounded_by_the_group(self) -> None:
        backends = [await self.dead(), await self.dead(), self.live()]
        url = await self.start_proxy(backends, retries=1)

        response, _ = await self.get(url + "/")

        self.assertEqual((response.code, self.backend.seen), (502, []))

    async def test_group_without_weight_is_503(self) -> None:
        url = await self.start_proxy([BackendConfig("127.0.0.1", self.backend_port, weight=0)])

        response, body = await self.get(url + "/")

        self.assertEqual(response.code, 503)
        self.assertIn(b"no backend available in target group web", body)

    async def test_slow_backend_is_504(self) -> None:
        self.backend.handlers[b"/slow"] = lambda request: NOT_DONE_YET
        url = await self.start_proxy(response_timeout=0.2)

        response, body = await self.get(url + "/slow")

        self.assertEqual(response.code, 504)
        self.assertIn(b"504 Gateway Timeout", body)

    async def test_backend_reset_before_response_is_502(self) -> None:
        def reset(request: Request) -> object:
            request.channel.transport.abortConnection()
            return NOT_DONE_YET

        self.backend.handlers[b"/reset"] = reset
        url = await self.start_proxy()

        response, _ = await self.get(url + "/reset")

        self.assertEqual(response.code, 502)

    async def test_unexpected_error_is_502_and_logged(self) -> None:
        class Broken:
            persistent = True

            def idle_count(self, backend: object) -> int:
                return 0

            def send(self, *args: object, **kwargs: object) -> None:
                raise RuntimeError("pool bug")

            def retire(self) -> Deferred:
                return succeed(None)

        url = await self.start_proxy(pool_factory=lambda reactor, group, connect: Broken())

        response, _ = await self.get(url + "/")

        self.assertEqual(response.code, 502)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    # Streaming, failures mid-body, flow control

    async def test_backend_dying_mid_body_aborts_the_client_connection(self) -> None:
        def die(request: Request) -> object:
            request.write(b"partial " * 1000)
            request.loseConnection()
            return NOT_DONE_YET

        self.backend.handlers[b"/die"] = die
        await self.start_proxy()

        response, reason = await self.raw(b"GET /die HTTP/1.1\r\nHost: app\r\n\r\n")

        self.assertNotIn(b"\r\n0\r\n\r\n", response)
        self.assertIsNone(reason.check(ConnectionDone), reason)

    async def test_backend_dying_mid_body_fails_the_clients_read(self) -> None:
        def die(request: Request) -> object:
            request.write(b"partial " * 1000)
            request.loseConnection()
            return NOT_DONE_YET

        self.backend.handlers[b"/die"] = die
        url = await self.start_proxy()

        with self.assertRaises(ResponseFailed):
            await self.get(url + "/die")

    async def test_slow_client_pauses_the_backend(self) -> None:
        bodies: List[EndlessBody] = []

        def endless(request: Request) -> object:
            bodies.append(EndlessBody(request, limit=256 * 1024 * 1024))
            return NOT_DONE_YET

        self.backend.handlers[b"/endless"] = endless
        await self.start_proxy()
        client = RawClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.front_port), client)
        client.transport.pauseProducing()
        client.transport.write(b"GET /endless HTTP/1.1\r\nHost: app\r\n\r\n")

        previous = -1
        while not bodies or bodies[0].sent != previous:
            previous = bodies[0].sent if bodies else -1
            await deferLater(reactor, 0.2)

        self.assertTrue(bodies[0].paused)
        self.assertLess(bodies[0].sent, 64 * 1024 * 1024)
        client.transport.abortConnection()
        await client.closed
        with self.assertRaises(ConnectionClosed):
            await bodies[0].lost.addTimeout(5, reactor)

    async def test_client_disconnect_mid_body_closes_the_backend_connection(self) -> None:
        bodies: List[EndlessBody] = []

        def endless(request: Request) -> object:
            bodies.append(EndlessBody(request, limit=1024 * 1024 * 1024))
            return NOT_DONE_YET

        def hang_up_after_some_body(client: RawClient) -> None:
            if len(client.received) > 256 * 1024 and client.transport.connected:
                client.transport.abortConnection()

        self.backend.handlers[b"/endless"] = endless
        await self.start_proxy()
        client = RawClient(on_data=hang_up_after_some_body)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.front_port), client)
        client.transport.write(b"GET /endless HTTP/1.1\r\nHost: app\r\n\r\n")
        await client.closed.addTimeout(5, reactor)

        with self.assertRaises(ConnectionClosed):
            await bodies[0].lost.addTimeout(5, reactor)
        self.assertLess(bodies[0].sent, bodies[0].limit)

    async def test_client_disconnect_before_response_closes_the_backend_connection(self) -> None:
        arrived: Deferred[None] = Deferred()

        def hang(request: Request) -> object:
            arrived.callback(None)
            return NOT_DONE_YET

        self.backend.handlers[b"/hang"] = hang
        await self.start_proxy(response_timeout=30)
        client = RawClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.front_port), client)
        client.transport.write(b"GET /hang HTTP/1.1\r\nHost: app\r\n\r\n")
        await arrived.addTimeout(5, reactor)

        client.transport.abortConnection()

        await self.backend_site.channels[0].lost.addTimeout(5, reactor)

    # Connection reuse

    async def test_sequential_requests_reuse_one_backend_connection(self) -> None:
        url = await self.start_proxy()

        await self.get(url + "/one")
        await self.get(url + "/two")

        self.assertEqual(len(self.backend.seen), 2)
        self.assertEqual(len(self.backend_site.channels), 1)

    async def test_at_most_http_pool_max_idle_connections_are_kept(self) -> None:
        held: List[Request] = []

        def hold_four(request: Request) -> object:
            held.append(request)
            if len(held) == 4:
                for waiting in held:
                    waiting.write(b"done")
                    waiting.finish()
            return NOT_DONE_YET

        self.backend.handlers[b"/held"] = hold_four
        url = await self.start_proxy(http_pool_max_idle=2)

        await gatherResults([Deferred.fromCoroutine(self.get(url + "/held")) for _ in range(4)])
        opened = list(self.backend_site.channels)
        # Two of the four connections are closed by the proxy, two are kept for reuse.
        closed = Deferred()
        lost: List[TrackedChannel] = []

        def count(_, channel: TrackedChannel) -> None:
            lost.append(channel)
            if len(lost) == 2:
                closed.callback(None)

        for channel in opened:
            channel.lost.addCallback(count, channel)
        await closed.addTimeout(5, reactor)
        await gatherResults([Deferred.fromCoroutine(self.get(url + "/again")) for _ in range(2)])

        self.assertEqual((len(opened), len(self.backend_site.channels)), (4, 4))
        self.assertEqual(len(self.backend.seen), 6)

    async def test_idle_connection_is_closed_after_http_pool_idle_timeout(self) -> None:
        url = await self.start_proxy(http_pool_idle_timeout=0.2)

        await self.get(url + "/one")
        await self.backend_site.channels[0].lost.addTimeout(5, reactor)
        await self.get(url + "/two")

        self.assertEqual(len(self.backend_site.channels), 2)

    async def test_http_pool_max_idle_0_gives_each_request_its_own_connection(self) -> None:
        url = await self.start_proxy(http_pool_max_idle=0)

        await self.get(url + "/one")
        await self.get(url + "/two")

        self.assertEqual(len(self.backend_site.channels), 2)
        self.assertEqual(
            [seen.header(b"connection") for seen in self.backend.seen], [[b"close"]] * 2
        )
