"""The lean backend client at its seams: the head and body on the wire, the sink's calls back."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.http.upstream_client import UpstreamPool, is_chunked

A = BackendConfig("10.0.0.1", 8001)
B = BackendConfig("10.0.0.2", 8002)
GET = b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class Endpoints:
    """Endpoints whose connections the test accepts, each given a ``StringTransport``."""

    def __init__(self) -> None:
        self.attempts: list[tuple[BackendConfig, object, Deferred]] = []

    def __call__(self, backend: BackendConfig):
        endpoints = self

        class Endpoint:
            def connect(self, factory):
                d = Deferred()
                endpoints.attempts.append((backend, factory, d))
                return d

        return Endpoint()

    def accept(self, index: int = -1):
        """The connection attempt ``index`` succeeds: its protocol and transport."""
        _, factory, d = self.attempts[index]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport

    def refuse(self, index: int = -1) -> None:
        self.attempts[index][2].errback(Failure(ConnectionRefusedError("refused")))


class Sink:
    """Records what an exchange tells its caller."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.exchange = None
        self.head = None
        self.data = b""

    def connected(self, exchange) -> None:
        self.exchange = exchange
        self.events.append(("connected",))

    def interim(self, status, fields) -> None:
        self.events.append(("interim", status, fields))

    def response_head(self, head) -> None:
        self.head = head
        self.events.append(("head", head.status))

    def response_data(self, data) -> None:
        self.data += data

    def response_complete(self, trailers) -> None:
        self.events.append(("complete", trailers))

    def response_failed(self, status, reason, retryable) -> None:
        self.events.append(("failed", status, reason, retryable))

    def body_paused(self) -> None:
        self.events.append(("body_paused",))

    def body_resumed(self) -> None:
        self.events.append(("body_resumed",))

    @property
    def last(self):
        return self.events[-1]


class PoolTestCase(unittest.TestCase):
    def pool(self, **group_options) -> UpstreamPool:
        self.clock = MemoryReactorClock()
        self.endpoints = Endpoints()
        group = TargetGroupConfig("pool", (A, B), **group_options)
        return UpstreamPool(self.clock, group, self.endpoints)

    def send(self, pool, head=GET, method=b"GET", body=False, timeout=30.0, backend=A):
        sink = Sink()
        exchange = pool.send(
            backend, head, sink, method=method, body=body, response_timeout=timeout
        )
        return sink, exchange

    def lose(self, protocol, reason=None) -> None:
        protocol.connectionLost(Failure(reason or ConnectionDone("closed")))


class KeepAliveTests(PoolTestCase):
    def test_the_head_is_written_once_connected(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        self.assertEqual(sink.events, [])
        _, transport = self.endpoints.accept()
        self.assertEqual(transport.value(), GET)
        self.assertEqual(sink.events, [("connected",)])

    def test_a_new_connection_is_its_transports_streaming_producer(self):
        pool = self.pool()
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)

    def test_a_response_reaches_the_sink(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(OK)
        self.assertEqual(sink.head.status, 200)
        self.assertEqual(sink.data, b"hello")
        self.assertEqual(sink.last, ("complete", []))

    def test_the_next_request_reuses_the_idle_connection(self):
        pool = self.pool()
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK)
        transport.clear()
        sink, _ = self.send(pool, b"GET /second HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(len(self.endpoints.attempts), 1)
        self.assertEqual(sink.events, [("connected",)])
        self.assertEqual(transport.value(), b"GET /second HTTP/1.1\r\nHost: a.test\r\n\r\n")
        protocol.dataReceived(OK)
        self.assertEqual(sink.last, ("complete", []))

    def test_a_request_sent_from_response_complete_reuses_the_connection(self):
        pool = self.pool()
        first, _ = self.send(pool)
        protocol, transport = self.endpoints.accept()
        second = Sink()
        first.response_complete = lambda trailers: pool.send(
            A, GET, second, method=b"GET", body=False, response_timeout=30
        )
        protocol.dataReceived(OK)
        self.assertEqual(len(self.endpoints.attempts), 1)
        self.assertEqual(transport.value(), GET + GET)
        protocol.dataReceived(OK)
        self.assertEqual(second.data, b"hello")
        self.assertEqual(second.last, ("complete", []))

    def test_idle_connections_are_kept_per_backend(self):
        pool = self.pool()
        self.send(pool, backend=A)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(OK)
        self.send(pool, backend=B)
        self.assertEqual(len(self.endpoints.attempts), 2)
        self.assertEqual(self.endpoints.attempts[-1][0], B)

    def test_at_most_max_idle_connections_are_kept(self):
        pool = self.pool(http_pool_max_idle=1)
        self.send(pool)
        self.send(pool)
        first, first_transport = self.endpoints.accept(0)
        second, second_transport = self.endpoints.accept(1)
        first.dataReceived(OK)
        second.dataReceived(OK)
        self.assertEqual(pool.idle_count(A), 1)
        self.assertFalse(first_transport.disconnecting)
        self.assertTrue(second_transport.disconnecting)

    def test_an_idle_connection_is_closed_after_the_idle_timeout(self):
        pool = self.pool(http_pool_idle_timeout=5.0)
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK)
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idle_count(A), 0)

    def test_reuse_restarts_the_idle_timeout(self):
        pool = self.pool(http_pool_idle_timeout=5.0)
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK)
        self.clock.advance(4)
        self.send(pool)
        self.clock.advance(4)
        protocol.dataReceived(OK)
        self.clock.advance(4)
        self.assertFalse(transport.disconnecting)

    def test_an_idle_connection_closed_by_the_backend_is_forgotten(self):
        pool = self.pool()
        self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(OK)
        self.lose(protocol)
        self.assertEqual(pool.idle_count(A), 0)
        self.send(pool)
        self.assertEqual(len(self.endpoints.attempts), 2)

    def test_bytes_on_an_idle_connection_close_it(self):
        pool = self.pool()
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idle_count(A), 0)

    def test_max_idle_0_gives_every_request_its_own_connection(self):
        pool = self.pool(http_pool_max_idle=0)
        self.assertFalse(pool.persistent)
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK)
        self.assertTrue(transport.disconnecting)
        self.send(pool)
        self.assertEqual(len(self.endpoints.attempts), 2)

    def test_retire_closes_idle_connections_and_keeps_no_more(self):
        pool = self.pool()
        self.send(pool)
        self.send(pool)
        idle, idle_transport = self.endpoints.accept(0)
        busy, busy_transport = self.endpoints.accept(1)
        idle.dataReceived(OK)
        pool.retire()
        self.assertTrue(idle_transport.disconnecting)
        self.assertFalse(busy_transport.disconnecting)
        busy.dataReceived(OK)
        self.assertTrue(busy_transport.disconnecting)

    def test_close_closes_every_connection_and_fires_when_they_are_gone(self):
        pool = self.pool()
        self.send(pool)
        sink, _ = self.send(pool)
        idle, idle_transport = self.endpoints.accept(0)
        busy, busy_transport = self.endpoints.accept(1)
        idle.dataReceived(OK)
        closed = pool.close()
        self.assertTrue(idle_transport.disconnecting)
        self.assertTrue(busy_transport.disconnecting)
        self.assertNoResult(closed)
        self.lose(idle)
        self.lose(busy)
        self.successResultOf(closed)

    def test_close_cancels_connection_attempts(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        self.endpoints.attempts[0][2].addErrback(lambda f: None)
        self.successResultOf(pool.close())
        self.assertEqual(sink.events, [])

    def test_close_with_nothing_open_fires_at_once(self):
        self.successResultOf(self.pool().close())


class ResponseFramingTests(PoolTestCase):
    def test_a_head_response_has_no_body(self):
        pool = self.pool()
        sink, _ = self.send(pool, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", method=b"HEAD")
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        self.assertEqual(sink.last, ("complete", []))
        self.assertEqual(pool.idle_count(A), 1)

    def test_204_and_304_have_no_body(self):
        for status in (b"204 No Content", b"304 Not Modified"):
            pool = self.pool()
            sink, _ = self.send(pool)
            protocol, _ = self.endpoints.accept()
            protocol.dataReceived(b"HTTP/1.1 " + status + b"\r\nContent-Length: 5\r\n\r\n")
            self.assertEqual(sink.last, ("complete", []), status)
            self.assertEqual(pool.idle_count(A), 1)

    def test_a_response_without_framing_reads_until_close_and_is_not_reused(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nsome")
        protocol.dataReceived(b" more")
        self.assertEqual(sink.last, ("head", 200))
        self.lose(protocol)
        self.assertEqual(sink.data, b"some more")
        self.assertEqual(sink.last, ("complete", []))
        self.assertEqual(pool.idle_count(A), 0)

    def test_a_chunked_response_gives_its_trailers(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n"
        )
        self.assertEqual(sink.data, b"hello")
        self.assertEqual(sink.last, ("complete", [(b"X-Sum", b"42")]))

    def test_connection_close_from_the_backend_is_not_reused(self):
        pool = self.pool()
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idle_count(A), 0)

    def test_an_http_1_0_response_is_not_reused(self):
        pool = self.pool()
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertTrue(transport.disconnecting)

    def test_1xx_responses_come_before_the_final_one(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK)
        self.assertEqual(
            sink.events,
            [
                ("connected",),
                ("interim", 103, [(b"Link", b"</a.css>")]),
                ("head", 200),
                ("complete", []),
            ],
        )

    def test_a_malformed_response_is_a_502_with_the_parsers_reason(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
        self.assertEqual(sink.last, ("failed", 502, "a repeated or invalid Content-Length", False))
        self.assertTrue(transport.disconnecting)

    def test_extra_bytes_after_a_response_make_the_connection_not_reused(self):
        pool = self.pool()
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(OK + b"junk")
        self.assertTrue(transport.disconnecting)


class RequestBodyTests(PoolTestCase):
    def test_a_content_length_body_is_written_as_it_is(self):
        pool = self.pool()
        head = b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n"
        sink, exchange = self.send(pool, head, method=b"POST", body=True)
        _, transport = self.endpoints.accept()
        exchange.write_body(b"abc")
        exchange.write_body(b"def")
        exchange.finish_body()
        self.assertEqual(transport.value(), head + b"abcdef")

    def test_a_chunked_body_is_framed_and_ends_with_its_trailers(self):
        pool = self.pool()
        head = b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        sink, exchange = self.send(pool, head, method=b"POST", body=True)
        _, transport = self.endpoints.accept()
        exchange.write_body(b"hello world, ")
        exchange.write_body(b"")
        exchange.write_body(b"bye")
        exchange.finish_body([(b"X-Checksum", b"abc")])
        self.assertEqual(
            transport.value(),
            head + b"d\r\nhello world, \r\n3\r\nbye\r\n0\r\nX-Checksum: abc\r\n\r\n",
        )

    def test_a_chunked_body_without_trailers_ends_with_the_last_chunk(self):
        pool = self.pool()
        head = b"POST /u HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        _, exchange = self.send(pool, head, method=b"POST", body=True)
        _, transport = self.endpoints.accept()
        exchange.finish_body()
        self.assertEqual(transport.value(), head + b"0\r\n\r\n")

    def test_the_body_is_written_only_after_connected(self):
        pool = self.pool()
        _, exchange = self.send(pool, method=b"POST", body=True)
        self.assertRaises(RuntimeError, exchange.write_body, b"early")

    def test_a_response_before_the_body_is_sent_makes_the_connection_not_reused(self):
        pool = self.pool()
        head = b"POST /u HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
        sink, exchange = self.send(pool, head, method=b"POST", body=True)
        protocol, transport = self.endpoints.accept()
        exchange.write_body(b"partial")
        protocol.dataReceived(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(sink.last, ("complete", []))
        self.assertTrue(transport.disconnecting)
        exchange.write_body(b"more")  # ignored: the exchange is over
        self.assertFalse(transport.value().endswith(b"more"))

    def test_the_backends_full_and_drained_socket_pauses_and_resumes_the_body(self):
        pool = self.pool()
        sink, exchange = self.send(pool, method=b"POST", body=True)
        protocol, transport = self.endpoints.accept()
        transport.producer.pauseProducing()
        transport.producer.pauseProducing()  # Twisted repeats it on each write
        transport.producer.resumeProducing()
        self.assertEqual(sink.events[1:], [("body_paused",), ("body_resumed",)])

    def test_a_body_sent_on_a_connection_still_full_starts_paused(self):
        pool = self.pool()
        self.send(pool)
        protocol, transport = self.endpoints.accept()
        transport.producer.pauseProducing()
        protocol.dataReceived(OK)
        sink, _ = self.send(pool, method=b"POST", body=True)
        self.assertEqual(sink.events, [("connected",), ("body_paused",)])

    def test_expect_continue_the_100_reaches_the_sink_before_the_body(self):
        pool = self.pool()
        head = b"PUT /u HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        sink, exchange = self.send(pool, head, method=b"PUT", body=True)
        protocol, transport = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(sink.last, ("interim", 100, []))
        exchange.write_body(b"ok")
        exchange.finish_body()
        self.assertEqual(transport.value(), head + b"ok")


class ResponseBackpressureTests(PoolTestCase):
    def test_pause_response_stops_reading_the_backend_and_resume_reads_again(self):
        pool = self.pool()
        _, exchange = self.send(pool)
        _, transport = self.endpoints.accept()
        exchange.pause_response()
        self.assertEqual(transport.producerState, "paused")
        exchange.resume_response()
        self.assertEqual(transport.producerState, "producing")

    def test_a_connection_paused_when_its_response_ends_reads_again_when_idle(self):
        pool = self.pool()
        sink, exchange = self.send(pool)
        protocol, transport = self.endpoints.accept()
        sink.response_data = lambda data: exchange.pause_response()
        protocol.dataReceived(OK)
        self.assertEqual(pool.idle_count(A), 1)
        self.assertEqual(transport.producerState, "producing")


class FailureTests(PoolTestCase):
    def test_a_refused_connect_is_a_retryable_502(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        self.endpoints.refuse()
        status, reason, retryable = sink.last[1:]
        self.assertEqual((status, retryable), (502, True))
        self.assertIn("cannot connect to 10.0.0.1:8001", reason)
        self.assertIn("ConnectionRefusedError", reason)

    def test_no_response_within_the_timeout_after_the_body_is_a_504(self):
        pool = self.pool()
        sink, exchange = self.send(pool, method=b"POST", body=True, timeout=10.0)
        _, transport = self.endpoints.accept()
        self.clock.advance(60)  # a slow upload is never cut
        self.assertEqual(sink.events, [("connected",)])
        exchange.finish_body()
        self.clock.advance(9.9)
        self.assertEqual(sink.events, [("connected",)])
        self.clock.advance(0.2)
        self.assertEqual(sink.last, ("failed", 504, "no response within 10 s", False))
        self.assertTrue(transport.disconnecting)

    def test_the_response_head_stops_the_timeout(self):
        pool = self.pool()
        sink, _ = self.send(pool, timeout=10.0)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
        self.clock.advance(20)
        self.assertEqual(sink.last, ("head", 200))

    def test_a_reused_connection_closed_before_any_response_byte_is_retryable(self):
        pool = self.pool()
        self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(OK)
        sink, _ = self.send(pool)
        self.lose(protocol, ConnectionLost("reset"))
        self.assertEqual(sink.last[1], 502)
        self.assertTrue(sink.last[3])

    def test_a_non_idempotent_request_on_a_closed_reused_connection_is_not_retryable(self):
        pool = self.pool()
        self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(OK)
        sink, exchange = self.send(pool, b"POST / HTTP/1.1\r\n\r\n", method=b"POST", body=True)
        exchange.finish_body()
        self.lose(protocol, ConnectionLost("reset"))
        self.assertEqual(sink.last[1], 502)
        self.assertFalse(sink.last[3])

    def test_a_new_connection_closed_before_the_response_is_not_retryable(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        protocol, _ = self.endpoints.accept()
        self.lose(protocol, ConnectionLost("reset"))
        self.assertEqual(sink.last[:2], ("failed", 502))
        self.assertFalse(sink.last[3])

    def test_a_close_in_the_middle_of_a_response_is_a_502(self):
        pool = self.pool()
        sink, _ = self.send(pool)
        protocol, _ = self.endpoints.accept()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
        self.lose(protocol)
        self.assertEqual(
            sink.last,
            (
                "failed",
                502,
                "the backend closed the connection in the middle of a response",
                False,
            ),
        )

    def test_abort_drops_the_connection_and_tells_the_sink_nothing(self):
        pool = self.pool()
        sink, exchange = self.send(pool)
        protocol, transport = self.endpoints.accept()
        exchange.abort()
        self.assertTrue(transport.disconnecting)
        self.lose(protocol)
        self.clock.advance(100)
        self.assertEqual(sink.events, [("connected",)])
        self.assertEqual(pool.idle_count(A), 0)

    def test_abort_from_inside_a_response_callback_stops_the_response(self):
        pool = self.pool()
        sink, exchange = self.send(pool)
        protocol, transport = self.endpoints.accept()
        sink.response_data = lambda data: (
            setattr(sink, "data", sink.data + data),
            exchange.abort(),
        )
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n"
        )
        self.assertEqual(sink.data, b"a")
        self.assertEqual(sink.events, [("connected",), ("head", 200)])
        self.assertTrue(transport.disconnecting)

    def test_abort_while_connecting_cancels_the_attempt(self):
        pool = self.pool()
        sink, exchange = self.send(pool)
        exchange.abort()
        self.assertTrue(self.endpoints.attempts[0][2].called)
        self.assertEqual(sink.events, [])


class HeadScanTests(unittest.TestCase):
    def test_chunked_framing_is_read_from_the_head(self):
        self.assertTrue(is_chunked(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
        self.assertTrue(is_chunked(b"POST / HTTP/1.1\r\ntransfer-encoding:Chunked\r\n\r\n"))
        self.assertFalse(is_chunked(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"))
        self.assertFalse(is_chunked(b"POST / HTTP/1.1\r\nX-Note: chunked\r\n\r\n"))
