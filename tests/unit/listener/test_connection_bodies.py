"""ListenerConnection and a request body still to come: ``100 Continue``, and refusals before it.

``100 Continue`` waits until a backend starts taking the body, so a request
answered or refused without it never makes the client send it.  Every
behaviour is checked on both parser back ends (``httptools`` and ``h11``).
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET

from clbproxy.config import ListenerConfig
from clbproxy.http.parsers import available
from clbproxy.listener.connection import ListenerSite

EXPECT = b"Expect: 100-continue\r\n"


class Holding:
    """A root resource that keeps each request open; the test plays the backend."""

    def __init__(self) -> None:
        self.requests: list = []

    def render(self, request):
        self.requests.append(request)
        return NOT_DONE_YET


class _BodyTests:
    backend = ""

    def setUp(self):
        if self.backend not in available():
            raise unittest.SkipTest(f"the {self.backend} HTTP parser is not installed here")
        self.root = Holding()
        listener = ListenerConfig(name="web", bind="tcp:0", rules=())
        site = ListenerSite(self.root, listener, MemoryReactorClock(), backend=self.backend)
        self.connection = site.buildProtocol(None)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)

    def test_an_answer_begun_before_the_body_is_taken_sends_no_continue(self):
        self.connection.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" + EXPECT + b"\r\n"
        )
        (request,) = self.root.requests
        request.setResponseCode(404)
        request.write(b"no")
        request.body.startProducing(StringTransport())
        request.finish()
        answer = self.transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), answer)
        self.assertNotIn(b"100 Continue", answer)

    def test_a_request_without_a_body_gets_no_continue(self):
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n" + EXPECT + b"\r\n")
        self.assertEqual((len(self.root.requests), self.transport.value()), (1, b""))
        self.assertIsNone(self.root.requests[0].body)

    def test_an_http_1_0_request_gets_no_continue(self):
        self.connection.dataReceived(b"POST / HTTP/1.0\r\nContent-Length: 5\r\n" + EXPECT + b"\r\n")
        self.root.requests[0].body.startProducing(StringTransport())
        self.assertEqual(self.transport.value(), b"")

    def test_a_bad_host_is_refused_before_any_continue(self):
        self.connection.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 5\r\n"
            + EXPECT
            + b"\r\nhello"
        )
        answer = self.transport.value()
        self.assertEqual(self.root.requests, [])
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer)
        self.assertIn(b"more than one Host header", answer)
        self.assertTrue(self.transport.disconnecting)

    def test_an_invalid_host_is_refused_for_an_upgrade_too(self):
        self.connection.dataReceived(
            b"GET / HTTP/1.1\r\nHost: a:1:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = self.transport.value()
        self.assertEqual(self.root.requests, [])
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer)
        self.assertIn(b"not a valid host[:port]", answer)

    def test_a_malformed_trailer_is_400_and_its_body_never_completes(self):
        self.connection.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Sum: 1\r\n folded\r\n\r\n"
        )
        (request,) = self.root.requests
        answer = self.transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer)
        self.assertIn(b"obsolete line folding in a trailer", answer)
        self.assertFalse(request.body.complete)


class HttptoolsBodyTests(_BodyTests, unittest.TestCase):
    backend = "httptools"


class H11BodyTests(_BodyTests, unittest.TestCase):
    backend = "h11"
