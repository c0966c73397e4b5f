"""ListenerConnection: a listener's HTTP/1.1 connection on the sans-IO request parser.

Every behaviour is checked on both parser back ends (``httptools`` and ``h11``):
the bytes a client receives, when the connection closes, what the root resource
is given.
"""

from __future__ import annotations

from typing import List

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET

from clbproxy.config import ListenerConfig
from clbproxy.http.parsers import available
from clbproxy.listener.connection import ListenerSite

GET = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"


class Collector:
    """A backend connection taking a streamed body."""

    def __init__(self) -> None:
        self.data: List[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)


class Root:
    """A root resource that keeps every request and answers only when told."""

    def __init__(self, answer=None) -> None:
        self.requests: list = []
        self.answer = answer

    def render(self, request):
        self.requests.append(request)
        if self.answer is not None:
            return self.answer
        return NOT_DONE_YET


def respond(request, body: bytes = b"ok") -> None:
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    request.write(body)
    request.finish()


class _ConnectionTests:
    backend = ""

    def setUp(self):
        if self.backend not in available():
            raise unittest.SkipTest(f"the {self.backend} HTTP parser is not installed here")

    def connect(self, root=None, **options):
        self.clock = MemoryReactorClock()
        self.root = root if root is not None else Root()
        config = ListenerConfig(name="web", bind="tcp:0", rules=(), **options)
        site = ListenerSite(self.root, config, self.clock, backend=self.backend)
        self.connection = site.buildProtocol(None)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        return self.connection

    def sent(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def test_the_parser_back_end_is_the_one_chosen(self):
        self.assertEqual(self.connect()._parser.backend, self.backend)

    def test_a_request_is_answered_and_the_connection_stays_open(self):
        self.connect(Root(answer=b"hello"))
        self.connection.dataReceived(GET)
        answer = self.sent()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertIn(b"\r\nServer: clbproxy\r\n", answer)
        self.assertIn(b"\r\nContent-Length: 5\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nhello"), answer)
        self.assertFalse(self.transport.disconnecting)

    def test_a_response_without_length_is_chunked(self):
        self.connect()
        self.connection.dataReceived(GET)
        (request,) = self.root.requests
        request.write(b"abc")
        request.finish()
        answer = self.sent()
        self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), answer)

    def test_pipelined_requests_are_rendered_one_after_the_other(self):
        self.connect()
        self.connection.dataReceived(GET + GET.replace(b"/a", b"/b"))
        self.assertEqual([r.uri for r in self.root.requests], [b"/a"])
        respond(self.root.requests[0], b"first")
        self.assertEqual([r.uri for r in self.root.requests], [b"/a", b"/b"])
        respond(self.root.requests[1], b"second")
        answer = self.sent()
        self.assertLess(answer.index(b"first"), answer.index(b"second"))

    def test_connection_close_is_answered_with_close_and_closes(self):
        self.connect(Root(answer=b"x"))
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertIn(b"\r\nConnection: close\r\n", self.sent())
        self.assertTrue(self.transport.disconnecting)

    def test_an_http_10_request_closes_after_its_response(self):
        self.connect(Root(answer=b"x"))
        self.connection.dataReceived(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n")
        self.assertTrue(self.sent().startswith(b"HTTP/1.0 200 OK\r\n"))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.root.requests), 1)

    def test_a_head_response_has_no_body(self):
        self.connect(Root(answer=b"body"))
        self.connection.dataReceived(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
        answer = self.sent()
        self.assertIn(b"\r\nContent-Length: 4\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\n"), answer)

    def test_a_failing_resource_gets_a_500_page_and_a_logged_traceback(self):
        class Broken(Root):
            def render(self, request):
                raise ZeroDivisionError("bug")

        self.connect(Broken())
        self.connection.dataReceived(GET)
        self.assertTrue(self.sent().startswith(b"HTTP/1.1 500 Internal Server Error\r\n"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_a_refused_request_line_is_answered_with_its_status_and_closed(self):
        self.connect()
        self.connection.dataReceived(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n")
        self.assertTrue(self.sent().startswith(b"HTTP/1.1 505 "))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.root.requests, [])

    def test_headers_not_in_within_header_timeout_get_408(self):
        self.connect(header_timeout=2, client_timeout=60)
        self.connection.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(1)
        self.connection.dataReceived(b"Host: h\r\n")
        self.clock.advance(1)
        self.assertTrue(self.sent().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(self.transport.disconnecting)

    def test_a_later_request_has_header_timeout_from_its_first_byte(self):
        self.connect(Root(answer=b"x"), header_timeout=2, keepalive_timeout=30)
        self.connection.dataReceived(GET)
        self.clock.advance(10)
        self.connection.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(1.9)
        self.assertNotIn(b"408", self.sent())
        self.clock.advance(0.2)
        self.assertIn(b"HTTP/1.1 408 ", self.sent())
        self.assertTrue(self.transport.disconnecting)

    def test_a_connection_that_sent_nothing_is_closed_without_an_answer(self):
        self.connect(header_timeout=2)
        self.clock.advance(2)
        self.assertEqual(self.sent(), b"")
        self.assertTrue(self.transport.disconnecting)

    def test_an_idle_keepalive_connection_closes_after_keepalive_timeout(self):
        self.connect(Root(answer=b"x"), keepalive_timeout=5, header_timeout=60)
        self.connection.dataReceived(GET)
        self.clock.advance(4.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_a_stalled_body_closes_after_client_timeout(self):
        self.connect(client_timeout=3, header_timeout=60)
        self.connection.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab")
        self.clock.advance(2)
        self.connection.dataReceived(b"cd")
        self.clock.advance(2)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1.1)
        self.assertTrue(self.transport.disconnecting)

    def test_100_continue_is_sent_only_when_a_backend_takes_the_body(self):
        self.connect()
        self.connection.dataReceived(
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        self.assertEqual(self.sent(), b"")
        (request,) = self.root.requests
        collector = Collector()
        done = request.body.startProducing(collector)
        self.assertEqual(self.sent(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.connection.dataReceived(b"abc")
        self.assertEqual(b"".join(collector.data), b"abc")
        self.assertIsNone(self.successResultOf(done))

    def test_100_continue_is_not_sent_for_a_request_answered_without_its_body(self):
        self.connect(Root(answer=b"no"))
        self.connection.dataReceived(
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = self.sent()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertNotIn(b"100 Continue", answer)

    def test_a_declared_body_over_max_body_size_is_413(self):
        self.connect(max_body_size=10)
        self.connection.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n")
        self.assertTrue(self.sent().startswith(b"HTTP/1.1 413 "))
        self.assertEqual(self.root.requests, [])

    def test_a_streamed_body_over_max_body_size_is_413_before_the_response(self):
        self.connect(max_body_size=10)
        self.connection.dataReceived(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        (request,) = self.root.requests
        failed = request.body.startProducing(Collector())
        self.connection.dataReceived(b"b\r\n" + b"x" * 11 + b"\r\n")
        self.assertTrue(self.sent().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(self.transport.disconnecting)
        self.failureResultOf(failed)

    def test_a_streamed_body_over_max_body_size_after_the_response_began_aborts(self):
        self.connect(max_body_size=10)
        self.connection.dataReceived(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        (request,) = self.root.requests
        request.write(b"early")
        self.sent()
        self.connection.dataReceived(b"b\r\n" + b"x" * 11 + b"\r\n")
        self.assertNotIn(b"413", self.sent())
        self.assertTrue(self.transport.disconnecting)

    def test_drain_closes_an_idle_connection_now(self):
        self.connect()
        self.connection.drain()
        self.assertTrue(self.transport.disconnecting)

    def test_drain_lets_the_request_under_way_finish_with_connection_close(self):
        self.connect()
        self.connection.dataReceived(GET)
        self.assertFalse(self.connection.idle)
        self.connection.drain()
        self.assertFalse(self.transport.disconnecting)
        respond(self.root.requests[0])
        self.assertIn(b"\r\nConnection: close\r\n", self.sent())
        self.assertTrue(self.transport.disconnecting)

    def test_hand_off_gives_the_bytes_sent_after_the_upgrade_request(self):
        self.connect()
        upgrade = (
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        self.connection.dataReceived(upgrade + b"\x81\x85early")
        (request,) = self.root.requests
        self.assertIs(request.channel, self.connection)
        self.assertEqual(self.connection.hand_off(), b"\x81\x85early")
        self.assertIsNone(self.connection.transport)
        self.assertIsNone(self.transport.producer)

    def test_the_connection_loss_fails_a_body_still_arriving(self):
        self.connect()
        self.connection.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab")
        (request,) = self.root.requests
        failed = request.body.startProducing(Collector())
        finished = request.notifyFinish()
        self.connection.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(failed)
        self.failureResultOf(finished)


class HttptoolsConnectionTests(_ConnectionTests, unittest.TestCase):
    backend = "httptools"


class H11ConnectionTests(_ConnectionTests, unittest.TestCase):
    backend = "h11"
