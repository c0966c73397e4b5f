"""Trailer fields: parsing, the fields forwarded, and the listener's framing (in memory)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clbproxy.http.server import HTTPLimits, ProxySite
from clbproxy.http.trailers import (
    TrailerError,
    accepts_trailers,
    forwardable,
    parse_trailer_lines,
    trailer_section,
)


class ParseTests(unittest.TestCase):
    def test_well_formed_lines(self) -> None:
        self.assertEqual(
            parse_trailer_lines([b"X-A: one", b"x-b:two  ", bytearray(b"X-C:")]),
            [(b"X-A", b"one"), (b"x-b", b"two"), (b"X-C", b"")],
        )

    def test_malformed_lines_are_refused(self) -> None:
        for line, rule in [
            (b" X-A: one", "obsolete line folding"),
            (b"\tX-A: one", "obsolete line folding"),
            (b"X-A one", "without a colon"),
            (b"X-A : one", "not a token"),
            (b": one", "not a token"),
            (b"X(A): one", "not a token"),
            (b"X-A: o\x00ne", "NUL, CR or LF"),
            (b"X-A: one\nX-B: two", "NUL, CR or LF"),
        ]:
            with self.assertRaises(TrailerError, msg=line) as caught:
                parse_trailer_lines([line])
            self.assertIn(rule, str(caught.exception))

    def test_forbidden_and_dropped_fields_are_not_forwarded(self) -> None:
        fields = [
            (b"X-Checksum", b"1"),
            (b"Content-Length", b"5"),
            (b"transfer-encoding", b"chunked"),
            (b"Host", b"evil"),
            (b"Authorization", b"x"),
            (b"X-Forwarded-For", b"6.6.6.6"),
            (b"Set-Cookie", b"a=1"),
            (b"X-Env", b"dev"),
            (b"Server-Timing", b"db;dur=5"),
        ]
        self.assertEqual(
            forwardable(fields, {"x-env"}), [(b"X-Checksum", b"1"), (b"Server-Timing", b"db;dur=5")]
        )

    def test_te_trailers(self) -> None:
        self.assertTrue(accepts_trailers([b"deflate;q=0.5, Trailers"]))
        self.assertTrue(accepts_trailers([b"gzip", b"trailers"]))
        self.assertFalse(accepts_trailers([b"deflate", b"trailersx"]))
        self.assertFalse(accepts_trailers([]))

    def test_trailer_section(self) -> None:
        self.assertEqual(trailer_section([]), b"0\r\n\r\n")
        self.assertEqual(trailer_section([(b"X-A", b"1")]), b"0\r\nX-A: 1\r\n\r\n")


_TRAILER_BYTES = st.sampled_from(
    [b"a", b"X-1", b":", b" ", b"\t", b"\x00", b"\r", b"\n", b"v", b"("]
)


class ParseProperties(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(
            st.one_of(st.binary(max_size=40), st.lists(_TRAILER_BYTES, max_size=10).map(b"".join)),
            max_size=6,
        )
    )
    def test_any_lines_give_clean_fields_or_a_trailer_error(self, lines) -> None:
        try:
            fields = parse_trailer_lines(lines)
        except TrailerError as e:
            self.assertTrue(str(e))
            return
        self.assertEqual(len(fields), len(lines))
        for name, value in fields:
            self.assertTrue(name)
            self.assertFalse(set(name) & set(b" \t:\x00\r\n()"), name)
            self.assertFalse(set(value) & set(b"\x00\r\n"), value)
            self.assertEqual(value, value.strip(b" \t"))


class _Recorder(Resource):
    isLeaf = True

    def __init__(self, trailers=()) -> None:
        super().__init__()
        self.requests = []
        self.trailers = list(trailers)

    def render(self, request):
        self.requests.append(request)
        if self.trailers:
            request.response_trailers = self.trailers
            request.write(b"hi")
            request.finish()
            return NOT_DONE_YET
        return NOT_DONE_YET


class ServerSideTests(unittest.TestCase):
    def channel(self, resource: Resource, **limits):
        site = ProxySite(resource, limits=HTTPLimits(**limits), reactor=MemoryReactorClock())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1234))
        channel.makeConnection(transport)
        return channel, transport

    def test_request_trailers_are_kept_for_the_backend(self) -> None:
        resource = _Recorder()
        channel, _ = self.channel(resource)
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nHost: evil\r\n\r\n"
        )
        body = resource.requests[0].body
        self.assertTrue(body.complete)
        self.assertEqual(body.trailers, [(b"X-Sum", b"1"), (b"Host", b"evil")])
        self.assertEqual(body.forwarded_trailers(), [(b"X-Sum", b"1")])

    def test_malformed_trailer_is_400(self) -> None:
        resource = _Recorder()
        channel, transport = self.channel(resource)
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Sum: 1\r\n folded\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertIn(b"obsolete line folding in a trailer", transport.value())
        self.assertFalse(resource.requests[0].body.complete)

    def test_trailers_over_max_header_size_are_400(self) -> None:
        resource = _Recorder()
        channel, transport = self.channel(resource, max_header_size=100)
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Sum: " + b"s" * 100 + b"\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))

    def test_chunked_response_ends_with_trailers(self) -> None:
        channel, transport = self.channel(_Recorder([(b"X-Status", b"done")]))
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(transport.value().endswith(b"2\r\nhi\r\n0\r\nX-Status: done\r\n\r\n"))

    def test_http10_response_drops_trailers(self) -> None:
        channel, transport = self.channel(_Recorder([(b"X-Status", b"done")]))
        channel.dataReceived(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
        self.assertTrue(transport.value().endswith(b"\r\n\r\nhi"))
        self.assertNotIn(b"X-Status", transport.value())
