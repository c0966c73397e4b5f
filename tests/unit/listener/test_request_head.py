"""ListenerRequest's response head: the same bytes whatever ``Headers`` class holds the fields.

A listener response's ``FieldHeaders`` are read in their dict; any other
``Headers`` through its methods.  Both must frame every response shape alike.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET

from clbproxy.config import ListenerConfig
from clbproxy.http.field_headers import FieldHeaders
from clbproxy.listener.connection import ListenerSite


class Root:
    def __init__(self) -> None:
        self.requests: list = []

    def render(self, request):
        self.requests.append(request)
        return NOT_DONE_YET


#: (method, version, status, response fields, body)
SHAPES = [
    (b"GET", b"1.1", 200, [], b"hello"),
    (b"GET", b"1.1", 200, [(b"Content-Length", b"5")], b"hello"),
    (b"GET", b"1.1", 200, [(b"Content-Length", b"0")], b""),
    (b"GET", b"1.1", 200, [(b"Content-Type", b"text/plain")], b"x"),
    (b"GET", b"1.0", 200, [], b"old"),
    (b"HEAD", b"1.1", 200, [], b""),
    (b"HEAD", b"1.1", 200, [(b"Content-Length", b"42")], b""),
    (b"GET", b"1.1", 204, [], b""),
    (b"GET", b"1.1", 304, [(b"ETag", b'"v"')], b""),
    (b"GET", b"1.1", 200, [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")], b"c"),
]


class ResponseHeadTests(unittest.TestCase):
    def respond(
        self, method, version, status, fields, body, headers_class, no_default=False, held_empty=()
    ):
        root = Root()
        site = ListenerSite(
            root, ListenerConfig(name="web", bind="tcp:0", rules=()), MemoryReactorClock()
        )
        connection = site.buildProtocol(None)
        transport = StringTransport()
        connection.makeConnection(transport)
        connection.dataReceived(b"%s / HTTP/%s\r\nHost: h\r\n\r\n" % (method, version))
        (request,) = root.requests
        held = headers_class()
        for name, values in request.responseHeaders.getAllRawHeaders():
            held.setRawHeaders(name, list(values))
        request.responseHeaders = held
        if no_default:
            request.defaultContentType = None
        request.setResponseCode(status)
        for name, value in fields:
            held.addRawHeader(name, value)
        for name, values in held_empty:
            held.setRawHeaders(name, values)
        request.write(body)
        request.finish()
        connection.connectionLost(None)
        return transport.value(), request.chunked, request.responseHeaders

    def test_every_shape_is_framed_alike_with_field_headers_and_plain_headers(self):
        for shape in SHAPES:
            for no_default in (False, True):
                fast = self.respond(*shape, FieldHeaders, no_default)
                plain = self.respond(*shape, Headers, no_default)
                self.assertEqual(fast[0], plain[0], shape)
                self.assertEqual(fast[1], plain[1], shape)

    def test_a_response_without_length_on_http_1_1_is_chunked(self):
        wire, _, _ = self.respond(b"GET", b"1.1", 200, [], b"hello", FieldHeaders)
        self.assertIn(b"Transfer-Encoding: chunked\r\n", wire)
        self.assertIn(b"Content-Type: text/html\r\n", wire)
        self.assertTrue(wire.endswith(b"5\r\nhello\r\n0\r\n\r\n"))

    def test_a_head_response_has_no_body_and_is_not_chunked(self):
        wire, chunked, _ = self.respond(b"HEAD", b"1.1", 200, [], b"", FieldHeaders)
        self.assertNotIn(b"Transfer-Encoding", wire)
        self.assertFalse(chunked)
        self.assertTrue(wire.endswith(b"\r\n\r\n"))

    def test_an_empty_length_response_gets_no_default_content_type(self):
        wire, _, _ = self.respond(
            b"GET", b"1.1", 200, [(b"Content-Length", b"0")], b"", FieldHeaders
        )
        self.assertNotIn(b"Content-Type", wire)

    def test_a_name_held_without_values_counts_as_held(self):
        # hasHeader says True for a name set to no values: no default type, no chunking.
        empty = [(b"Content-Length", []), (b"Content-Type", [])]
        fast = self.respond(b"GET", b"1.1", 200, [], b"", FieldHeaders, held_empty=empty)
        plain = self.respond(b"GET", b"1.1", 200, [], b"", Headers, held_empty=empty)
        self.assertEqual(fast[:2], plain[:2])
        self.assertNotIn(b"chunked", fast[0])
        self.assertNotIn(b"text/html", fast[0])

    def test_field_lines_are_alike_with_one_value_a_name_and_with_repeats_or_none(self):
        # One value a name takes the C-level lines; a repeat or an empty name the loop.
        cases = [
            ([(b"X-A", b"1"), (b"X-B", b"2")], ()),
            ([(b"X-A", b"1"), (b"X-A", b"2"), (b"X-B", b"3")], ()),
            ([(b"X-A", b"1"), (b"X-A", b"2")], [(b"X-Empty", [])]),
            ([(b"X-A", b"1")], [(b"X-Empty", [])]),
        ]
        for fields, empty in cases:
            fast = self.respond(b"GET", b"1.1", 200, fields, b"x", FieldHeaders, held_empty=empty)
            plain = self.respond(b"GET", b"1.1", 200, fields, b"x", Headers, held_empty=empty)
            self.assertEqual(fast[0], plain[0], fields)
        wire = self.respond(b"GET", b"1.1", 200, cases[1][0], b"x", FieldHeaders)[0]
        self.assertIn(b"X-A: 1\r\nX-A: 2\r\nX-B: 3\r\n", wire)
