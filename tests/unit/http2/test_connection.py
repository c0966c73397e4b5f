"""The HTTP/2 server connection: requests as streams, bodies streamed both ways, flow control."""

from __future__ import annotations

from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import NOT_DONE_YET

from clbproxy.http.request_id import RequestIds
from clbproxy.http.server import BodyTooLarge, HTTPLimits
from clbproxy.http2.connection import H2Limits, H2ServerConnection
from tests.support.h2client import H2Client, StubResource, later

DEFAULTS = H2Limits()


class Consumer:
    """A backend connection taking a request body: collects what it is written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


class Producer:
    """The backend relay producing a response: counts pauses and resumes."""

    def __init__(self) -> None:
        self.paused = False
        self.resumed = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


class ConnectionTestCase(unittest.TestCase):
    def connect(self, answer=None, limits: H2Limits = DEFAULTS, **client):
        self.clock = Clock()
        self.resource = StubResource(answer)
        self.server = H2ServerConnection(self.resource, limits, self.clock)
        self.client = H2Client(self.server, self.clock, **client)
        return self.client


class RequestTests(ConnectionTestCase):
    def test_a_get_is_answered_on_its_stream(self) -> None:
        client = self.connect()
        answer = client.answer(client.request())
        self.assertEqual(
            (answer.status, answer.headers[b"content-type"], answer.body, answer.ended),
            (200, b"text/plain", b"hello", True),
        )

    def test_the_request_looks_like_an_http2_request_to_the_listener(self) -> None:
        client = self.connect()
        client.request(b"GET", b"/a?b=1", headers=[(b"accept", b"*/*")])
        request = self.resource.requests[0]
        self.assertEqual(
            (
                request.method,
                request.uri,
                request.clientproto,
                request.getHeader(b"host"),
                request.getHeader(b"accept"),
                request.getClientAddress().host,
                request.isSecure(),
                request.body,
            ),
            (b"GET", b"/a?b=1", b"HTTP/2.0", b"a.example.com", b"*/*", "192.0.2.7", True, None),
        )

    def test_settings_advertise_the_limits_and_no_extended_connect(self) -> None:
        client = self.connect(limits=H2Limits(max_concurrent_streams=7))
        settings = client.h2.remote_settings
        self.assertEqual(
            (
                settings.max_concurrent_streams,
                settings.max_header_list_size,
                settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL, 0),
            ),
            (7, 32 * 1024, 0),
        )

    def test_the_connection_window_is_the_configured_one(self) -> None:
        client = self.connect(limits=H2Limits(connection_window=256 * 1024))
        self.assertEqual(client.h2.outbound_flow_control_window, 256 * 1024)

    def test_cookies_are_joined_for_the_backend(self) -> None:
        client = self.connect()
        client.request(headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
        self.assertEqual(self.resource.requests[0].getHeader(b"cookie"), b"a=1; b=2")

    def test_response_headers_are_lower_case_without_hop_by_hop_fields(self) -> None:
        def answer(request):
            for name in (b"Connection", b"Keep-Alive", b"Transfer-Encoding", b"Upgrade"):
                request.setHeader(name, b"x")
            request.setHeader(b"Proxy-Connection", b"close")
            request.setHeader(b"X-Thing", b"1")
            return b""

        client = self.connect(answer)
        headers = client.answer(client.request()).headers
        self.assertEqual(
            sorted(name for name in headers if name not in (b"date", b"server")),
            [b":status", b"content-length", b"x-thing"],
        )

    def test_a_head_response_has_no_body(self) -> None:
        client = self.connect()
        answer = client.answer(client.request(b"HEAD"))
        self.assertEqual((answer.status, answer.body, answer.ended), (200, b"", True))

    def test_connect_is_refused_with_501(self) -> None:
        client = self.connect(checked=False)  # h2 4.1's client would not send it
        stream_id = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            stream_id, [(b":method", b"CONNECT"), (b":authority", b"a.example.com:443")]
        )
        client.pump()
        self.assertEqual((client.answer(stream_id).status, self.resource.requests), (501, []))

    def test_a_refusal_carries_the_request_id(self) -> None:
        self.clock = Clock()
        self.resource = StubResource()
        ids = RequestIds(name="X-Request-Id")
        self.server = H2ServerConnection(self.resource, H2Limits(), self.clock, ids)
        client = H2Client(self.server, self.clock)
        stream_id = client.request(path=b"/a#b")
        answer = client.answer(stream_id)
        self.assertEqual((answer.status, b"x-request-id" in answer.headers), (400, True))


class RequestBodyTests(ConnectionTestCase):
    def test_a_body_streams_to_the_backend_as_it_arrives(self) -> None:
        client = self.connect(later)
        stream_id = client.request(b"POST", b"/up", body=b"one", end=False)
        body = self.resource.requests[0].body
        consumer = Consumer()
        done = body.startProducing(consumer)
        client.h2.send_data(stream_id, b"two")
        client.pump()
        self.assertEqual((consumer.chunks, done.called), ([b"one", b"two"], False))
        client.h2.end_stream(stream_id)
        client.pump()
        self.assertEqual((body.length, done.called), (UNKNOWN_LENGTH, True))

    def test_a_content_length_is_the_body_length(self) -> None:
        client = self.connect(later)
        client.request(b"POST", headers=[(b"content-length", b"3")], body=b"abc")
        self.assertEqual(self.resource.requests[0].body.length, 3)

    def test_body_bytes_are_acknowledged_only_as_the_backend_takes_them(self) -> None:
        client = self.connect(later)
        stream_id = client.request(b"POST", body=b"x" * 65535, end=False)
        shut = client.h2.local_flow_control_window(stream_id)
        self.resource.requests[0].body.startProducing(Consumer())
        client.pump()
        self.assertEqual((shut, client.h2.local_flow_control_window(stream_id)), (0, 65535))

    def test_request_trailers_reach_the_body(self) -> None:
        client = self.connect(later)
        stream_id = client.request(b"POST", body=b"abc", end=False)
        client.h2.send_headers(stream_id, [(b"x-checksum", b"900150983cd2")], end_stream=True)
        client.pump()
        body = self.resource.requests[0].body
        self.assertEqual((body.trailers, body.complete), ([(b"x-checksum", b"900150983cd2")], True))

    def test_an_answer_before_the_body_ends_resets_the_rest_with_no_error(self) -> None:
        client = self.connect()
        stream_id = client.request(b"POST", body=b"abc", end=False)
        answer = client.answer(stream_id)
        self.assertEqual((answer.status, answer.ended, answer.reset), (200, True, 0))

    def test_a_body_over_max_body_size_fails_for_the_backend(self) -> None:
        client = self.connect(later, limits=H2Limits(http=HTTPLimits(max_body_size=10)))
        client.request(b"POST", body=b"x" * 11, end=False)
        failed = self.resource.requests[0].body.startProducing(Consumer())
        self.assertEqual(
            str(self.failureResultOf(failed, BodyTooLarge).value), "request body over 10 bytes"
        )


class ResponseFlowTests(ConnectionTestCase):
    def test_a_response_waits_for_the_window_and_pauses_its_producer(self) -> None:
        client = self.connect(later, read=False)
        stream_id = client.request()
        request = self.resource.requests[0]
        producer = Producer()
        request.registerProducer(producer, True)
        request.write(b"x" * 100_000)
        client.pump()
        first = (len(client.answer(stream_id).body), producer.paused)
        client.h2.acknowledge_received_data(65535, stream_id)
        client.pump()
        self.assertEqual(
            (first, len(client.answer(stream_id).body), producer.paused),
            ((65535, True), 100_000, False),
        )

    def test_finish_waits_for_the_last_bytes(self) -> None:
        client = self.connect(later, read=False)
        stream_id = client.request()
        request = self.resource.requests[0]
        request.write(b"x" * 70_000)
        request.finish()
        client.pump()
        before = client.answer(stream_id).ended
        client.h2.acknowledge_received_data(65535, stream_id)
        client.pump()
        self.assertEqual((before, client.answer(stream_id).ended), (False, True))

    def test_notify_finish_fires_when_the_response_ends(self) -> None:
        client = self.connect(later)
        client.request()
        request = self.resource.requests[0]
        finished = request.notifyFinish()
        request.write(b"ok")
        request.finish()
        self.assertEqual((self.successResultOf(finished), request.sentLength), (None, 2))


class StreamEndTests(ConnectionTestCase):
    def test_a_client_reset_tells_the_request_its_client_went_away(self) -> None:
        client = self.connect(later)
        stream_id = client.request()
        finished = self.resource.requests[0].notifyFinish()
        client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        client.pump()
        self.assertIn("CANCEL", str(self.failureResultOf(finished).value))

    def test_an_abort_resets_only_its_stream(self) -> None:
        client = self.connect(later)
        first, second = client.request(), client.request()
        self.resource.requests[0].channel.transport.abortConnection()
        self.resource.requests[1].write(b"fine")
        self.resource.requests[1].finish()
        client.pump()
        self.assertEqual(
            (client.answer(first).reset, client.answer(second).body, client.goaway),
            (ErrorCodes.INTERNAL_ERROR, b"fine", None),
        )

    def test_the_connection_lost_fails_the_open_requests(self) -> None:
        client = self.connect(later)
        client.request()
        finished = self.resource.requests[0].notifyFinish()
        client.transport.peer_closes()
        self.failureResultOf(finished)


class TimeoutAndDrainTests(ConnectionTestCase):
    def test_an_idle_connection_ends_with_goaway_after_keepalive_timeout(self) -> None:
        client = self.connect(limits=H2Limits(keepalive_timeout=5, header_timeout=60))
        client.request()
        self.clock.advance(5)
        client.pump()
        self.assertEqual(
            (client.goaway.error_code, client.transport.disconnecting), (ErrorCodes.NO_ERROR, True)
        )

    def test_a_connection_without_requests_ends_after_header_timeout(self) -> None:
        client = self.connect(limits=H2Limits(header_timeout=3))
        self.clock.advance(3)
        client.pump()
        self.assertEqual(client.goaway.error_code, ErrorCodes.NO_ERROR)

    def test_a_stream_under_way_keeps_the_connection(self) -> None:
        client = self.connect(later, limits=H2Limits(keepalive_timeout=5))
        client.request()
        self.clock.advance(60)
        self.assertEqual((client.goaway, client.transport.disconnecting), (None, False))

    def test_drain_lets_open_streams_finish_and_refuses_new_ones(self) -> None:
        client = self.connect(later)
        open_stream = client.request()
        refused = client.h2.get_next_available_stream_id()
        client.h2.send_headers(refused, client.fields(), end_stream=True)
        sent_after_goaway = client.h2.data_to_send()
        self.server.drain()
        client.send_raw(sent_after_goaway)
        self.resource.requests[0].write(b"done")
        self.resource.requests[0].finish()
        client.pump()
        self.assertEqual(
            (
                client.frames_on(open_stream),
                client.frames_on(refused),
                client.frames_on(0)[-2:],
                client.transport.disconnecting,
            ),
            (
                [("HeadersFrame", 0), ("DataFrame", 0), ("DataFrame", 0)],
                [("RstStreamFrame", ErrorCodes.REFUSED_STREAM)],
                [("GoAwayFrame", ErrorCodes.NO_ERROR), ("GoAwayFrame", ErrorCodes.NO_ERROR)],
                True,
            ),
        )

    def test_a_render_error_answers_500_on_its_stream(self) -> None:
        def fails(request):
            raise RuntimeError("bug")

        client = self.connect(fails)
        answer = client.answer(client.request())
        self.assertEqual(answer.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class LaterAnswerTests(ConnectionTestCase):
    def test_not_done_yet_leaves_the_response_to_the_forwarder(self) -> None:
        client = self.connect(lambda request: NOT_DONE_YET)
        stream_id = client.request()
        before = client.answer(stream_id).status
        request = self.resource.requests[0]
        request.setResponseCode(404)
        request.write(b"gone")
        request.finish()
        client.pump()
        self.assertEqual((before, client.answer(stream_id).status), (None, 404))

    def test_deferred_is_never_mistaken_for_a_body(self) -> None:
        client = self.connect(lambda request: Deferred())
        self.assertEqual(client.answer(client.request()).status, None)


class TrailerTests(ConnectionTestCase):
    def test_response_trailers_follow_the_last_data(self) -> None:
        client = self.connect(later)
        stream_id = client.request(headers=[(b"te", b"trailers")])
        request = self.resource.requests[0]
        request.write(b"body")
        request.response_trailers = [(b"Grpc-Status", b"0"), (b"Connection", b"x")]
        request.finish()
        client.pump()
        answer = client.answer(stream_id)
        self.assertEqual(
            (answer.body, answer.headers[b"grpc-status"], b"connection" in answer.headers),
            (b"body", b"0", False),
        )
        self.assertEqual(
            [kind for kind, _ in client.frames_on(stream_id)],
            ["HeadersFrame", "DataFrame", "HeadersFrame"],
        )

    def test_trailers_of_an_empty_response_still_come_last(self) -> None:
        client = self.connect(later)
        stream_id = client.request()
        request = self.resource.requests[0]
        request.response_trailers = [(b"grpc-status", b"5")]
        request.finish()
        client.pump()
        answer = client.answer(stream_id)
        self.assertEqual((answer.headers[b"grpc-status"], answer.ended), (b"5", True))

    def test_a_head_response_has_no_trailers(self) -> None:
        client = self.connect(later)
        stream_id = client.request(b"HEAD")
        request = self.resource.requests[0]
        request.response_trailers = [(b"grpc-status", b"5")]
        request.finish()
        client.pump()
        self.assertEqual([kind for kind, _ in client.frames_on(stream_id)], ["HeadersFrame"])


class ContinueTests(ConnectionTestCase):
    def test_100_continue_is_sent_once_a_backend_takes_the_body(self) -> None:
        client = self.connect(later)
        stream_id = client.request(b"POST", headers=[(b"expect", b"100-continue")], end=False)
        before = client.frames_on(stream_id)
        self.resource.requests[0].body.startProducing(Consumer())
        client.pump()
        self.assertEqual((before, client.frames_on(stream_id)), ([], [("HeadersFrame", 0)]))

    def test_an_answer_before_the_body_is_taken_sends_no_100(self) -> None:
        client = self.connect()
        stream_id = client.request(b"POST", headers=[(b"expect", b"100-continue")], end=False)
        self.assertEqual(client.answer(stream_id).status, 200)
