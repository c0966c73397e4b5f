"""HTTP/2 operations over real sockets on 127.0.0.1: streams counted by the connection
limits, and reloads that send GOAWAY only when the connection's settings change."""

from __future__ import annotations

import os
import socket
import ssl

import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, DataReceived, StreamEnded, StreamReset
from twisted.internet import defer, reactor, task, threads
from twisted.internet.endpoints import serverFromString
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from clbproxy.config import load_config
from clbproxy.ops.reload import Reloader
from clbproxy.ops.services import build_service
from tests.integration.test_http2 import open_tls
from tests.support.network import Listening, abort_sessions
from tests.support.tls import certificate_files, tls_config

#: Seconds the slow backend holds each answer, so a connection's streams overlap.
HOLD = 0.3


class SlowBackend(Resource):
    """Answers ``ok`` after :data:`HOLD` seconds."""

    isLeaf = True

    def render(self, request):
        def answer():
            request.write(b"ok")
            request.finish()

        reactor.callLater(HOLD, answer)
        return NOT_DONE_YET


class PatientClient(H2Connection):
    """A client that reads the answers to its open streams after the server's GOAWAY,
    as browsers do (h2 itself closes its state machine on any GOAWAY)."""

    def _receive_goaway_frame(self, frame):
        event = ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        return [], [event]


def open_h2(port: int):
    """A client connection that chose ``h2`` and sent its preface (blocking), and its h2."""
    sock = open_tls(port, ["h2"])
    client = PatientClient(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    return sock, client


def exchange(sock, client, count: int, send_more=b"") -> dict:
    """Send ``count`` GETs at once on one HTTP/2 connection; what each stream got (blocking).

    ``{stream id: ("body", bytes) or ("reset", code)}``, plus ``0: ("goaway", code)``
    if the server sent one; returns once every stream ended or the connection closed.
    """
    ids = []
    for _ in range(count):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"a.example.com"),
                (b":path", b"/x"),
            ],
            end_stream=True,
        )
        ids.append(stream_id)
    sock.sendall(client.data_to_send() + send_more)
    bodies = {stream_id: b"" for stream_id in ids}
    seen: dict = {}
    while len([k for k in seen if k]) < count:
        try:
            data = sock.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not data:
            break
        for event in client.receive_data(data):
            if isinstance(event, DataReceived):
                bodies[event.stream_id] += event.data
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                seen[event.stream_id] = ("body", bodies[event.stream_id])
            elif isinstance(event, StreamReset):
                seen[event.stream_id] = ("reset", event.error_code)
            elif isinstance(event, ConnectionTerminated):
                seen[0] = ("goaway", event.error_code)
        sock.sendall(client.data_to_send())
    return seen


def wait_closed(sock) -> bool:
    """Whether the server closes the connection within the socket's timeout (blocking)."""
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    except (ssl.SSLError, OSError):
        pass
    return True


class HTTP2TestCase(unittest.TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.certificate = certificate_files(self.dir, trustme.CA(), "a.example.com")

    @defer.inlineCallbacks
    def backend(self) -> defer.Deferred:
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            Site(SlowBackend())
        )
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def connect(self, port: int):
        sock, client = open_h2(port)
        self.addCleanup(sock.close)
        return sock, client


class StreamLimitTests(HTTP2TestCase):
    @defer.inlineCallbacks
    def connected_with_two_per_ip(self, net: Listening):
        """An HTTP/2 connection through an HTTPS listener with ``max_connections_per_ip = 2``."""
        backend = yield self.backend()
        port = yield net.proxy(
            [backend],
            protocol="https",
            tls=tls_config(self.certificate),
            http2=True,
            max_connections_per_ip=2,
        )
        connection = yield threads.deferToThread(self.connect, port)
        return connection

    @defer.inlineCallbacks
    def test_a_third_stream_over_max_connections_per_ip_2_is_refused(self):
        net = Listening(self)
        sock, client = yield self.connected_with_two_per_ip(net)
        seen = yield threads.deferToThread(exchange, sock, client, 3)
        self.assertEqual(
            (seen, net.service.stats["refused_streams_per_ip"]),
            (
                {1: ("body", b"ok"), 3: ("body", b"ok"), 5: ("reset", ErrorCodes.REFUSED_STREAM)},
                1,
            ),
        )

    @defer.inlineCallbacks
    def test_streams_that_ended_free_their_places_for_the_next(self):
        net = Listening(self)
        sock, client = yield self.connected_with_two_per_ip(net)
        yield threads.deferToThread(exchange, sock, client, 2)
        again = yield threads.deferToThread(exchange, sock, client, 2)
        self.assertEqual(again, {5: ("body", b"ok"), 7: ("body", b"ok")})


CONFIG = """
[[listener]]
name = "web"
bind = "tcp:0:interface=127.0.0.1"
protocol = "https"
http2 = true
{extra}
  [listener.tls]
  certificates = [{{ cert = "{cert}", key = "{key}" }}]
  [[listener.rule]]
  target_group = "pool"
  {rule}
{more}
[target_group.pool]
backends = ["127.0.0.1:{backend}"]
"""

SECOND = """
[[listener]]
name = "second"
bind = "tcp:0:interface=127.0.0.1:backlog=20"
protocol = "https"
http2 = true
  [listener.tls]
  certificates = [{{ cert = "{cert}", key = "{key}" }}]
  [[listener.rule]]
  target_group = "pool"
"""


class ReloadTests(HTTP2TestCase):
    @defer.inlineCallbacks
    def start(self, listener: str = "web", second: bool = False):
        self.backend_port = yield self.backend()
        self.path = self.mktemp()
        self.write(second=second)
        self.root = build_service(load_config(self.path), reactor)
        self.root.privilegedStartService()
        self.root.startService()
        self.addCleanup(self.stop)
        self.reloader = Reloader(self.path, self.root, reactor)
        service = self.root.getServiceNamed(f"listener:{listener}")
        return service.limiter.port.getHost().port

    def stop(self):
        abort_sessions(self.root.listener_services())
        for service in self.root.listener_services():
            for connection in list(service.limiter.protocols):
                connection.transport.abortConnection()
        return self.root.stopService()

    def write(self, extra: str = "", rule: str = "", second: bool = False) -> None:
        more = SECOND.format(cert=self.certificate.cert, key=self.certificate.key)
        with open(self.path, "w") as f:
            f.write(
                CONFIG.format(
                    extra=extra,
                    rule=rule,
                    more=more if second else "",
                    cert=self.certificate.cert,
                    key=self.certificate.key,
                    backend=self.backend_port,
                )
            )

    @defer.inlineCallbacks
    def test_a_reload_of_other_settings_keeps_http2_connections(self):
        port = yield self.start()
        sock, client = yield threads.deferToThread(self.connect, port)
        yield threads.deferToThread(exchange, sock, client, 1)
        self.write(extra="max_connections = 100", rule='path = "/"')
        applied = yield self.reloader.reload()
        seen = yield threads.deferToThread(exchange, sock, client, 1)
        self.assertEqual((applied, seen), (True, {3: ("body", b"ok")}))

    @defer.inlineCallbacks
    def test_a_reload_changing_http2_settings_sends_goaway_and_open_streams_finish(self):
        port = yield self.start()
        sock, client = yield threads.deferToThread(self.connect, port)
        sock.settimeout(5)
        yield threads.deferToThread(exchange, sock, client, 1)
        self.write(extra="http2_max_concurrent_streams = 50")
        # A stream under way when the reload comes: it is answered, then the connection ends.
        under_way = threads.deferToThread(exchange, sock, client, 1)
        yield task.deferLater(reactor, HOLD / 3)
        applied = yield self.reloader.reload()
        seen = yield under_way
        closed = yield threads.deferToThread(wait_closed, sock)
        self.assertEqual(
            (applied, seen, closed),
            (True, {0: ("goaway", ErrorCodes.NO_ERROR), 3: ("body", b"ok")}, True),
        )

    @defer.inlineCallbacks
    def test_a_removed_listeners_http2_connections_get_goaway(self):
        port = yield self.start("second", second=True)
        sock, client = yield threads.deferToThread(self.connect, port)
        sock.settimeout(5)
        yield threads.deferToThread(exchange, sock, client, 1)
        self.write()
        applied = yield self.reloader.reload()
        closed = yield threads.deferToThread(wait_closed, sock)
        self.assertEqual((applied, closed), (True, True))
