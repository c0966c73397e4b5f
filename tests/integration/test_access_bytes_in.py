"""The access log's ``bytes_in`` of an HTTP request: the body bytes the client sent.

Over real sockets: a backend that reads the whole body before it answers, and
an access log read back from its file.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.network import raw_request
from tests.support.observed import Observed, parse_plain, wait_for_lines


class BodyLength(Resource):
    """Answers with the length of the body it read (twisted.web reads it all first)."""

    isLeaf = True

    def render(self, request):
        return str(len(request.content.read())).encode()


class BytesInTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.net = Observed(self)
        backend_port = yield self.net.listen(Site(BodyLength()))
        self.log_path = self.mktemp()
        self.port = yield self.net.start([backend_port], log_path=self.log_path)

    @defer.inlineCallbacks
    def logged(self, request: bytes) -> dict:
        response = yield raw_request(self.port, request)
        (line,) = yield wait_for_lines(self.log_path, 1)
        return response, parse_plain(line)

    @defer.inlineCallbacks
    def test_a_body_with_a_content_length_is_counted(self):
        body = b"x" * 70_000
        response, fields = yield self.logged(
            b"POST /upload HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.assertTrue(response.endswith(b"\r\n\r\n70000"), response[-40:])
        self.assertEqual((fields["status"], fields["bytes_in"]), ("200", "70000"))

    @defer.inlineCallbacks
    def test_a_chunked_body_counts_its_data_not_its_framing(self):
        chunks = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        response, fields = yield self.logged(
            b"POST /upload HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks
        )
        self.assertTrue(response.endswith(b"11"), response[-40:])
        self.assertEqual(fields["bytes_in"], "11")

    @defer.inlineCallbacks
    def test_a_request_without_a_body_is_zero(self):
        _, fields = yield self.logged(
            b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual((fields["status"], fields["bytes_in"]), ("200", "0"))
