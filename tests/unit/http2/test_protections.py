"""The HTTP/2 connection against hostile clients: each attack answered, the others unaffected."""

from __future__ import annotations

from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.http.server import HTTPLimits
from clbproxy.http2.connection import H2Limits, H2ServerConnection
from tests.support.h2client import H2Client, StubResource, later

DEFAULTS = H2Limits()


class ProtectionTestCase(unittest.TestCase):
    def connect(self, answer=None, limits: H2Limits = DEFAULTS, **client) -> H2Client:
        self.clock = Clock()
        self.resource = StubResource(answer)
        self.server = H2ServerConnection(self.resource, limits, self.clock)
        self.client = H2Client(self.server, self.clock, checked=False, **client)
        return self.client

    def raw_request(self, client: H2Client, fields, end_stream: bool = True) -> int:
        """Send a header block as given (names, order and all); its stream ID."""
        stream_id = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stream_id, fields, end_stream=end_stream)
        client.pump()
        return stream_id

    def assert_still_serving(self, client: H2Client) -> None:
        """Another request on the same connection is answered."""
        stream_id = client.request()
        request = self.resource.requests[-1]
        if not request.finished:
            request.write(b"ok")
            request.finish()
            client.pump()
        self.assertEqual((client.answer(stream_id).status, client.goaway), (200, None))

    def assert_goaway(self, client: H2Client, code: int) -> None:
        self.assertEqual(
            (client.frames_on(0)[-1], client.transport.disconnecting),
            (("GoAwayFrame", code), True),
        )


def request_fields(**replace):
    fields = {
        b":method": b"GET",
        b":scheme": b"https",
        b":authority": b"a.example.com",
        b":path": b"/",
    }
    fields.update({b":" + name.encode(): value for name, value in replace.items()})
    return list(fields.items())


#: Requests HTTP/2 calls malformed (RFC 9113 8.1.1), each reset on its own stream.
MALFORMED = {
    "upper-case name": [*request_fields(), (b"X-Up", b"1")],
    "connection field": [*request_fields(), (b"connection", b"close")],
    "upgrade field": [*request_fields(), (b"upgrade", b"websocket")],
    "transfer-encoding": [*request_fields(), (b"transfer-encoding", b"chunked")],
    "te other than trailers": [*request_fields(), (b"te", b"gzip")],
    "no :path": [f for f in request_fields() if f[0] != b":path"],
    "no :method": [f for f in request_fields() if f[0] != b":method"],
    "unknown pseudo-header": [*request_fields(), (b":other", b"x")],
    "pseudo-header after a field": [(b"accept", b"*/*"), *request_fields()],
    "repeated :method": [(b":method", b"GET"), *request_fields()],
    ":protocol not advertised": [*request_fields(method=b"CONNECT"), (b":protocol", b"websocket")],
    "host other than :authority": [*request_fields(), (b"host", b"b.example.com")],
    "value with a leading space": [*request_fields(), (b"accept", b" */*")],
    "value with a NUL": [*request_fields(), (b"accept", b"a\x00b")],
    "content-length without its body": [*request_fields(), (b"content-length", b"5")],
    "two content-lengths": [
        *request_fields(method=b"POST"),
        (b"content-length", b"1"),
        (b"content-length", b"2"),
    ],
}


class MalformedRequestTests(ProtectionTestCase):
    def test_each_malformed_request_resets_only_its_stream(self) -> None:
        found = {}
        for name, fields in MALFORMED.items():
            client = self.connect()
            stream_id = self.raw_request(client, fields, end_stream=True)
            found[name] = (client.answer(stream_id).reset, len(self.resource.requests))
            self.assert_still_serving(client)
        self.assertEqual(found, {name: (ErrorCodes.PROTOCOL_ERROR, 0) for name in MALFORMED})

    def test_more_data_than_the_content_length_resets_the_stream(self) -> None:
        client = self.connect(later)
        stream_id = self.raw_request(
            client, [*request_fields(method=b"POST"), (b"content-length", b"3")], end_stream=False
        )
        client.send_body(stream_id, b"abcd")
        self.assertEqual(client.answer(stream_id).reset, ErrorCodes.PROTOCOL_ERROR)
        self.assert_still_serving(client)

    def test_less_data_than_the_content_length_resets_the_stream(self) -> None:
        client = self.connect(later)
        stream_id = self.raw_request(
            client, [*request_fields(method=b"POST"), (b"content-length", b"3")], end_stream=False
        )
        client.send_body(stream_id, b"ab")
        self.assertEqual(client.answer(stream_id).reset, ErrorCodes.PROTOCOL_ERROR)
        self.assert_still_serving(client)

    def test_a_pseudo_header_in_trailers_resets_the_stream(self) -> None:
        client = self.connect(later)
        stream_id = client.request(b"POST", body=b"x", end=False)
        client.h2.send_headers(stream_id, [(b":path", b"/")], end_stream=True)
        client.pump()
        self.assertEqual(client.answer(stream_id).reset, ErrorCodes.PROTOCOL_ERROR)

    def test_refusals_have_the_status_http11_would_give(self) -> None:
        limits = H2Limits(http=HTTPLimits(max_request_line=64, max_body_size=10))
        cases = {
            "fragment": (request_fields(path=b"/a#b"), 400),
            "byte outside visible ASCII": (request_fields(path=b"/\xc3\xa9"), 400),
            "absolute-form path": (request_fields(path=b"http://x/"), 400),
            "bad authority": (request_fields(authority=b"a, b"), 400),
            "long path": (request_fields(path=b"/" + b"a" * 64), 414),
            "large declared body": (
                [*request_fields(method=b"POST"), (b"content-length", b"11")],
                413,
            ),
        }
        found = {}
        for name, (fields, _) in cases.items():
            client = self.connect(limits=limits)
            stream_id = self.raw_request(client, fields, end_stream=False)
            found[name] = client.answer(stream_id).status
        self.assertEqual(found, {name: status for name, (_, status) in cases.items()})


class HeaderSizeTests(ProtectionTestCase):
    def test_a_header_list_over_max_header_size_gets_431_on_its_stream(self) -> None:
        limits = H2Limits(http=HTTPLimits(max_header_size=4096))
        client = self.connect(limits=limits)
        stream_id = self.raw_request(client, [*request_fields(), (b"x-big", b"a" * 5000)])
        self.assertEqual(client.answer(stream_id).status, 431)
        self.assert_still_serving(client)

    def test_an_hpack_bomb_ends_the_connection_with_enhance_your_calm(self) -> None:
        limits = H2Limits(http=HTTPLimits(max_header_size=4096))
        client = self.connect(limits=limits)
        # One 3000-byte field in the dynamic table, then referenced 20 times:
        # a small block that decodes to 60 KB.
        bomb = [*request_fields(), *[(b"x-bomb", b"b" * 3000)] * 20]
        self.raw_request(client, bomb)
        self.assert_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertEqual(self.resource.requests, [])

    def test_a_continuation_flood_ends_the_connection_before_decoding(self) -> None:
        client = self.connect(limits=H2Limits(http=HTTPLimits(max_header_size=4096)))
        block = Encoder().encode(request_fields())
        headers = HeadersFrame(1, data=block)
        frames = [headers.serialize()]
        frames += [ContinuationFrame(1, data=b"\x00" * 1000).serialize() for _ in range(20)]
        client.send_raw(b"".join(frames))
        self.assert_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)


class FloodTests(ProtectionTestCase):
    def test_rapid_reset_ends_the_connection_with_enhance_your_calm(self) -> None:
        client = self.connect(later, limits=H2Limits(max_resets=5))
        for _ in range(6):
            stream_id = client.request()
            client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            client.pump()
        self.assert_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)

    def test_resets_spread_over_time_are_allowed(self) -> None:
        client = self.connect(later, limits=H2Limits(max_resets=5))
        for _ in range(3):
            for _ in range(5):
                stream_id = client.request()
                client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
                client.pump()
            self.clock.advance(10)
        self.assertEqual((client.goaway, client.transport.disconnecting), (None, False))

    def test_resets_the_server_makes_for_client_errors_count_too(self) -> None:
        client = self.connect(limits=H2Limits(max_resets=5))
        for _ in range(6):
            self.raw_request(client, [*request_fields(), (b"connection", b"close")])
        self.assert_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)

    def test_a_ping_flood_ends_the_connection(self) -> None:
        client = self.connect(limits=H2Limits(max_control_frames=10))
        client.send_raw(
            b"".join(PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(11))
        )
        self.assert_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)

    def test_a_settings_flood_ends_the_connection(self) -> None:
        client = self.connect(limits=H2Limits(max_control_frames=10))
        client.send_raw(b"".join(SettingsFrame(0).serialize() for _ in range(11)))
        self.assert_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)

    def test_pings_within_the_limit_are_answered(self) -> None:
        client = self.connect(limits=H2Limits(max_control_frames=10))
        client.h2.ping(b"12345678")
        client.pump()
        self.assertEqual(
            ([type(frame).__name__ for frame in client.frames][-1], client.goaway),
            ("PingFrame", None),
        )


class StreamLimitTests(ProtectionTestCase):
    def test_a_stream_beyond_the_limit_is_refused_and_the_others_go_on(self) -> None:
        client = self.connect(later, limits=H2Limits(max_concurrent_streams=2))
        first, second, third = client.request(), client.request(), client.request()
        for request in self.resource.requests:
            request.write(b"ok")
            request.finish()
        client.pump()
        self.assertEqual(
            [
                client.answer(first).body,
                client.answer(second).body,
                client.answer(third).reset,
                len(self.resource.requests),
            ],
            [b"ok", b"ok", ErrorCodes.REFUSED_STREAM, 2],
        )

    def test_a_finished_stream_frees_its_place(self) -> None:
        client = self.connect(limits=H2Limits(max_concurrent_streams=1))
        answers = [client.answer(client.request()).status for _ in range(3)]
        self.assertEqual(answers, [200, 200, 200])


class StallTests(ProtectionTestCase):
    def test_a_stream_whose_window_stays_shut_is_reset(self) -> None:
        client = self.connect(
            later,
            limits=H2Limits(client_timeout=30),
            read=False,
            settings={0x4: 1000},  # the client's INITIAL_WINDOW_SIZE
        )
        stream_id = client.request()
        self.resource.requests[0].write(b"x" * 5000)
        client.pump()
        self.clock.advance(30)
        client.pump()
        self.assertEqual(
            (len(client.answer(stream_id).body), client.answer(stream_id).reset),
            (1000, ErrorCodes.CANCEL),
        )
        self.assertEqual(client.goaway, None)

    def test_a_connection_whose_window_stays_shut_is_closed(self) -> None:
        client = self.connect(later, limits=H2Limits(client_timeout=30), read=False)
        client.request()
        self.resource.requests[0].write(b"x" * 70_000)
        client.pump()
        self.clock.advance(30)
        client.pump()
        self.assert_goaway(client, ErrorCodes.ENHANCE_YOUR_CALM)

    def test_a_window_that_reopens_keeps_the_stream(self) -> None:
        client = self.connect(later, limits=H2Limits(client_timeout=30), read=False)
        stream_id = client.request()
        request = self.resource.requests[0]
        request.write(b"x" * 70_000)
        request.finish()
        client.pump()
        self.clock.advance(20)
        client.h2.acknowledge_received_data(65535, stream_id)
        client.pump()
        self.clock.advance(20)
        answer = client.answer(stream_id)
        self.assertEqual((len(answer.body), answer.ended, answer.reset), (70_000, True, None))


class ConnectionErrorTests(ProtectionTestCase):
    def test_a_frame_on_stream_zero_that_needs_a_stream_ends_the_connection(self) -> None:
        client = self.connect()
        # HEADERS (type 1, END_HEADERS) on stream 0, which hyperframe would not build.
        client.send_raw(b"\x00\x00\x00\x01\x04\x00\x00\x00\x00")
        self.assert_goaway(client, ErrorCodes.PROTOCOL_ERROR)

    def test_a_client_goaway_with_an_error_closes_the_connection(self) -> None:
        client = self.connect(later)
        client.request()
        finished = self.resource.requests[0].notifyFinish()
        client.h2.close_connection(ErrorCodes.PROTOCOL_ERROR)
        client.pump()
        client.transport.peer_closes()
        self.failureResultOf(finished)
        self.assertEqual(client.transport.disconnecting, True)


class AuthorityTests(unittest.TestCase):
    def test_an_authority_the_connection_does_not_serve_gets_421_on_its_stream(self) -> None:
        clock = Clock()
        resource = StubResource()
        checked = []

        def check_for(transport):
            checked.append(transport)
            return lambda authority: authority == b"a.example.com"

        server = H2ServerConnection(resource, DEFAULTS, clock, authority_check=check_for)
        client = H2Client(server, clock)
        other = client.request(authority=b"b.example.com")
        own = client.request(authority=b"a.example.com")
        self.assertEqual(
            (
                client.answer(other).status,
                client.answer(own).status,
                len(resource.requests),
                checked,
            ),
            (421, 200, 1, [client.transport]),
        )
