"""HTTP/2 on an HTTPS listener over real sockets on 127.0.0.1: curl through the proxy.

The listener offers ``h2`` by ALPN only with ``http2 = true``; the same listener
still serves HTTP/1.1 to a client that asks for it.  ``curl`` (Debian's, built
with nghttp2) is the client.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess

import attrs
import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, ResponseReceived, StreamEnded, TrailersReceived
from hyperframe.frame import Frame, PingFrame
from twisted.internet import defer, reactor, task, threads
from twisted.internet.endpoints import serverFromString
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from clbproxy.observability.accesslog import NAMESPACE
from clbproxy.ops.drain import drain
from tests.support.network import Listening
from tests.support.tls import certificate_files, probe, tls_config

CURL = shutil.which("curl")
NGHTTP = shutil.which("nghttp")
#: A response larger than any window, so flow control paces it.
BIG = 3 * 1024 * 1024


class Backend(Resource):
    """Answers with what it received: the method, the body, and the Host."""

    isLeaf = True

    def render(self, request) -> bytes:
        if request.path == b"/big":
            return b"z" * BIG
        body = request.content.read()
        host = request.getHeader(b"host") or b"-"
        request.setHeader(b"Content-Type", b"text/plain")
        request.setHeader(b"X-Backend", b"demo")
        return b"%s %s host=%s body=%s" % (request.method, request.uri, host, body)


def open_tls(port: int, alpn, server_name: str = "a.example.com") -> ssl.SSLSocket:
    """A TLS connection to the proxy offering ``alpn`` (blocking)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname=server_name)


def open_h2(port: int, server_name: str = "a.example.com") -> tuple[ssl.SSLSocket, H2Connection]:
    """A client connection that chose ``h2`` and sent its preface (blocking), and its h2."""
    sock = open_tls(port, ["h2"], server_name)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    return sock, client


def read_until_closed(sock: ssl.SSLSocket) -> list[tuple[str, int]]:
    """``(frame type, error code)`` of every frame until the server closes (blocking).

    The socket is closed then, as a client does after the server's GOAWAY.
    """
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append((type(frame).__name__, getattr(frame, "error_code", 0)))
        data = data[9 + length :]
    return frames


def h2_get(
    port: int, headers=(), authority: bytes = b"a.example.com", server_name: str = "a.example.com"
) -> dict:
    """One GET over a fresh HTTP/2 connection (blocking): its headers, body and trailers."""
    sock, client = open_h2(port, server_name)
    stream_id = client.get_next_available_stream_id()
    client.send_headers(
        stream_id,
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", authority),
            (b":path", b"/x"),
            *headers,
        ],
        end_stream=True,
    )
    sock.sendall(client.data_to_send())
    seen: dict = {"headers": {}, "body": b"", "trailers": {}}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for event in client.receive_data(data):
                if isinstance(event, ResponseReceived):
                    seen["headers"] = dict(event.headers)
                elif isinstance(event, DataReceived):
                    seen["body"] += event.data
                    client.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, TrailersReceived):
                    seen["trailers"] = dict(event.headers)
                elif isinstance(event, StreamEnded):
                    return seen
            sock.sendall(client.data_to_send())
    finally:
        sock.close()
    return seen


class HTTP2ListenerTests(unittest.TestCase):
    timeout = 30

    def setUp(self) -> None:
        if (
            CURL is None
            or b"HTTP2"
            not in subprocess.run([CURL, "--version"], capture_output=True, check=False).stdout
        ):
            raise unittest.SkipTest("needs curl with HTTP/2 (Debian's curl)")
        self.net = Listening(self)
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.certificate = certificate_files(self.dir, trustme.CA(), "a.example.com")
        self.events: list = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    @defer.inlineCallbacks
    def proxy(self, **options):
        site = Site(Backend())
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        options.setdefault("tls", tls_config(self.certificate))
        proxy_port = yield self.net.proxy([port.getHost().port], protocol="https", **options)
        return proxy_port

    def curl(self, port: int, *args: str, path: str = "/x") -> defer.Deferred:
        """Run curl against the proxy in a thread: ``(headers, body)`` as text."""
        url = f"https://a.example.com:{port}{path}"
        command = [
            CURL,
            "-sk",
            "--max-time",
            "10",
            "--resolve",
            f"a.example.com:{port}:127.0.0.1",
            "-D",
            "-",
            *args,
            url,
        ]

        def run():
            done = subprocess.run(command, capture_output=True, timeout=15, check=False)
            head, _, body = done.stdout.decode("latin-1").partition("\r\n\r\n")
            return head, body

        return threads.deferToThread(run)

    @defer.inlineCallbacks
    def test_curl_gets_the_backend_answer_over_http2(self):
        port = yield self.proxy(http2=True)
        head, body = yield self.curl(port, "--http2")
        self.assertEqual(
            (head.splitlines()[0], "x-backend: demo" in head, body),
            ("HTTP/2 200 ", True, f"GET /x host=a.example.com:{port} body="),
        )

    @defer.inlineCallbacks
    def test_nghttp_gets_the_backend_answer_frame_by_frame(self):
        if NGHTTP is None:
            raise unittest.SkipTest("needs nghttp (Debian's nghttp2-client)")
        port = yield self.proxy(http2=True)

        def run():
            return subprocess.run(
                [NGHTTP, "-nv", "-t", "10", f"https://127.0.0.1:{port}/x"],
                capture_output=True,
                timeout=15,
                check=False,
            )

        done = yield threads.deferToThread(run)
        out = done.stdout.decode("latin-1")
        self.assertEqual(
            (
                done.returncode,
                "recv SETTINGS frame" in out,
                ":status: 200" in out,
                "x-backend: demo" in out,
                "recv DATA frame" in out and "END_STREAM" in out,
            ),
            (0, True, True, True, True),
            out[-2000:],
        )

    @defer.inlineCallbacks
    def test_a_post_body_streams_through_over_http2(self):
        port = yield self.proxy(http2=True)
        _, body = yield self.curl(port, "--http2", "--data-binary", "a" * 100_000)
        self.assertEqual(body, f"POST /x host=a.example.com:{port} body={'a' * 100_000}")

    @defer.inlineCallbacks
    def test_expect_100_continue_over_http2_gets_the_backend_answer(self):
        port = yield self.proxy(http2=True)
        head, rest = yield self.curl(
            port, "--http2", "-H", "Expect: 100-continue", "--data-binary", "b" * 1000
        )
        final, _, body = rest.partition("\r\n\r\n")
        self.assertEqual(
            (head.splitlines()[0], final.splitlines()[0], body),
            ("HTTP/2 100 ", "HTTP/2 200 ", f"POST /x host=a.example.com:{port} body={'b' * 1000}"),
        )

    @defer.inlineCallbacks
    def test_a_large_response_arrives_whole_over_http2(self):
        port = yield self.proxy(http2=True)
        head, body = yield self.curl(port, "--http2", path="/big")
        self.assertEqual((head.splitlines()[0], len(body), set(body)), ("HTTP/2 200 ", BIG, {"z"}))

    @defer.inlineCallbacks
    def test_the_access_log_says_http2(self):
        port = yield self.proxy(http2=True)
        yield self.curl(port, "--http2")
        yield self.wait_for_access_record()
        records = [e for e in self.events if e.get("log_namespace") == NAMESPACE and "type" in e]
        self.assertEqual(
            [(record["protocol"], record["status"]) for record in records], [("HTTP/2.0", 200)]
        )

    @defer.inlineCallbacks
    def test_the_access_log_counts_a_streamed_body_over_http2(self):
        port = yield self.proxy(http2=True)
        yield self.curl(port, "--http2", "--data-binary", "c" * 40_000)
        yield self.wait_for_access_record()
        records = [e for e in self.events if e.get("log_namespace") == NAMESPACE and "type" in e]
        self.assertEqual([(r["status"], r["bytes_in"]) for r in records], [(200, 40_000)])

    @defer.inlineCallbacks
    def test_the_same_listener_serves_http11_to_who_asks(self):
        port = yield self.proxy(http2=True)
        head, body = yield self.curl(port, "--http1.1")
        self.assertEqual(
            (head.splitlines()[0], body),
            ("HTTP/1.1 200 OK", f"GET /x host=a.example.com:{port} body="),
        )

    @defer.inlineCallbacks
    def test_alpn_offers_h2_first_only_with_http2_on(self):
        on = yield self.proxy(http2=True)
        off = yield self.proxy()
        chosen_on = yield threads.deferToThread(
            probe, on, "a.example.com", alpn=[b"http/1.1", b"h2"]
        )
        chosen_off = yield threads.deferToThread(
            probe, off, "a.example.com", alpn=[b"http/1.1", b"h2"]
        )
        self.assertEqual((chosen_on.alpn, chosen_off.alpn), (b"h2", b"http/1.1"))

    @defer.inlineCallbacks
    def test_drain_sends_goaway_and_closes_an_idle_http2_connection(self):
        port = yield self.proxy(http2=True)
        sock, _ = yield threads.deferToThread(open_h2, port)
        self.addCleanup(sock.close)
        yield task.deferLater(reactor, 0.1)
        reading = threads.deferToThread(read_until_closed, sock)
        drained = yield drain([self.net.service], reactor, timeout=5)
        frames = yield reading
        self.assertEqual((drained, frames[-1]), (True, ("GoAwayFrame", 0)))

    @defer.inlineCallbacks
    def test_drain_closes_an_idle_https_http11_connection_at_once(self):
        port = yield self.proxy()
        sock = yield threads.deferToThread(open_tls, port, ["http/1.1"])
        self.addCleanup(sock.close)
        yield task.deferLater(reactor, 0.1)
        reading = threads.deferToThread(read_until_closed, sock)
        drained = yield drain([self.net.service], reactor, timeout=5)
        yield reading
        self.assertTrue(drained)

    @defer.inlineCallbacks
    def test_a_ping_flood_gets_goaway_and_the_connection_closes(self):
        port = yield self.proxy(http2=True, http2_max_control_frames=10)
        sock, _ = yield threads.deferToThread(open_h2, port)
        self.addCleanup(sock.close)
        flood = b"".join(PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(20))
        yield threads.deferToThread(sock.sendall, flood)
        frames = yield threads.deferToThread(read_until_closed, sock)
        self.assertEqual(frames[-1], ("GoAwayFrame", ErrorCodes.ENHANCE_YOUR_CALM))

    @defer.inlineCallbacks
    def test_backend_trailers_reach_an_http2_client(self):
        backend = yield self.net.raw_backend(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\n"
            b"Transfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n"
            b"4\r\nbody\r\n0\r\ngrpc-status: 0\r\n\r\n"
        )
        port = yield self.net.proxy(
            [backend], protocol="https", tls=tls_config(self.certificate), http2=True
        )
        seen = yield threads.deferToThread(h2_get, port, [(b"te", b"trailers")])
        self.assertEqual(
            (seen["headers"][b":status"], seen["body"], seen["trailers"]),
            (b"200", b"body", {b"grpc-status": b"0"}),
        )

    @defer.inlineCallbacks
    def test_a_reload_turning_http2_on_applies_to_new_connections(self):
        port = yield self.proxy()
        before = yield threads.deferToThread(probe, port, "a.example.com", alpn=[b"h2"])
        service = self.net.service
        service.swap(attrs.evolve(service.listener, http2=True), service.relay.settings.groups)
        head, _ = yield self.curl(port, "--http2")
        self.assertEqual((before.alpn, head.splitlines()[0]), (b"", "HTTP/2 200 "))

    @defer.inlineCallbacks
    def test_an_authority_another_certificate_serves_gets_421(self):
        ca = trustme.CA()
        certificates = [
            certificate_files(self.dir, ca, "a.example.com"),
            certificate_files(self.dir, ca, "*.wild.example"),
            certificate_files(self.dir, ca, "default.example", default=True),
        ]
        port = yield self.proxy(http2=True, tls=tls_config(*certificates))
        cases = {
            "its own name": ("a.example.com", b"a.example.com"),
            "another certificate's name": ("a.example.com", b"b.wild.example"),
            "a name only the default covers": ("a.example.com", b"unknown.test"),
            "another name of its certificate": ("x.wild.example", b"y.wild.example:443"),
            "unknown names on the default": ("default.example", b"unknown.test"),
        }
        found = {}
        for name, (server_name, authority) in cases.items():
            seen = yield threads.deferToThread(
                h2_get, port, authority=authority, server_name=server_name
            )
            found[name] = int(seen["headers"][b":status"])
        self.assertEqual(
            found,
            {
                "its own name": 200,
                "another certificate's name": 421,
                "a name only the default covers": 421,
                "another name of its certificate": 200,
                "unknown names on the default": 200,
            },
        )

    @defer.inlineCallbacks
    def test_strict_sni_cannot_be_bypassed_by_an_authority(self):
        ca = trustme.CA()
        certificates = [
            certificate_files(self.dir, ca, "a.example.com"),
            certificate_files(self.dir, ca, "default.example", default=True),
        ]
        port = yield self.proxy(http2=True, tls=tls_config(*certificates, strict_sni=True))
        seen = yield threads.deferToThread(
            h2_get, port, authority=b"unknown.test", server_name="default.example"
        )
        self.assertEqual(seen["headers"][b":status"], b"421")

    @defer.inlineCallbacks
    def wait_for_access_record(self):
        for _ in range(100):
            if any(e.get("log_namespace") == NAMESPACE and "type" in e for e in self.events):
                return
            yield task.deferLater(reactor, 0.05)
