"""The HTTP/2 connection's operational side: streams counted as connections, its
counters, and a client's GOAWAY that lets the open streams finish."""

from __future__ import annotations

import gc
import platform
import weakref

from h2.errors import ErrorCodes
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.http2.connection import H2Limits, H2ServerConnection
from clbproxy.http2.stream import StreamRequest
from clbproxy.listener.limits import LimitStats
from tests.support.h2client import H2Client, StubResource, later


class Counter:
    """The connection limiter's record of the connection: admits ``room`` extra streams."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.counted = 0

    def open_stream(self) -> bool:
        if self.counted >= self.room:
            return False
        self.counted += 1
        return True

    def close_stream(self) -> None:
        self.counted -= 1


class OperationsTestCase(unittest.TestCase):
    def connect(self, answer=later, room: int = 100) -> H2Client:
        self.clock = Clock()
        self.resource = StubResource(answer)
        self.stats = LimitStats()
        self.counter = Counter(room)
        self.server = H2ServerConnection(
            self.resource, H2Limits(), self.clock, stats=self.stats, counter=self.counter
        )
        return H2Client(self.server, self.clock)

    def finish(self, index: int, body: bytes = b"done") -> None:
        request = self.resource.requests[index]
        request.write(body)
        request.finish()


class StreamCountingTests(OperationsTestCase):
    def test_a_stream_over_a_connection_limit_is_refused_and_the_others_are_served(
        self,
    ) -> None:
        # max_connections_per_ip = 2: the connection is one, its second stream the other.
        client = self.connect(room=1)
        first, second, third = client.request(), client.request(), client.request()
        self.finish(0)
        self.finish(1)
        client.pump()
        self.assertEqual(
            (
                client.answer(first).body,
                client.answer(second).body,
                client.frames_on(third),
                len(self.resource.requests),
            ),
            (b"done", b"done", [("RstStreamFrame", ErrorCodes.REFUSED_STREAM)], 2),
        )

    def test_only_streams_beyond_the_first_are_counted(self) -> None:
        client = self.connect()
        client.request()
        counts = [self.counter.counted]
        client.request()
        client.request()
        counts.append(self.counter.counted)
        self.finish(0)
        client.pump()
        counts.append(self.counter.counted)
        self.finish(1)
        self.finish(2)
        client.pump()
        counts.append(self.counter.counted)
        self.assertEqual(counts, [0, 2, 1, 0])

    def test_a_stream_is_admitted_again_once_one_has_ended(self) -> None:
        client = self.connect(room=1)
        client.request()
        client.request()
        self.finish(0)
        client.pump()
        again = client.request()
        self.assertEqual((client.answer(again).reset, len(self.resource.requests)), (None, 3))

    def test_a_stream_reset_by_the_client_gives_its_place_back(self) -> None:
        client = self.connect()
        client.request()
        second = client.request()
        client.h2.reset_stream(second, ErrorCodes.CANCEL)
        client.pump()
        self.assertEqual(self.counter.counted, 0)

    def test_a_lost_connection_gives_every_place_back(self) -> None:
        client = self.connect()
        for _ in range(4):
            client.request()
        client.transport.peer_closes()
        self.assertEqual(self.counter.counted, 0)


class CounterTests(OperationsTestCase):
    def http2_counts(self) -> dict:
        return {k: v for k, v in self.stats.snapshot().items() if k.startswith("http2")}

    def test_connections_streams_refusals_and_resets_are_counted(self) -> None:
        client = self.connect(room=1)
        client.request()
        reset_by_client = client.request()
        client.h2.reset_stream(reset_by_client, ErrorCodes.CANCEL)
        client.pump()
        client.request()  # the second in flight again: counted
        client.request()  # over the room: refused
        self.resource.requests[0].channel.transport.abortConnection()  # reset by the proxy
        client.pump()
        self.assertEqual(
            self.http2_counts(),
            {
                "http2_connections": 1,
                "http2_streams": 4,
                "http2_streams_refused": 1,
                "http2_streams_reset_by_client": 1,
                "http2_streams_reset_by_proxy": 1,
            },
        )

    def test_a_response_that_ends_the_stream_early_is_no_reset(self) -> None:
        client = self.connect(answer=None)
        stream_id = client.request(body=b"x" * 10, end=False)
        client.pump()
        self.assertEqual(
            (client.frames_on(stream_id)[-1], self.stats["http2_streams_reset_by_proxy"]),
            (("RstStreamFrame", ErrorCodes.NO_ERROR), 0),
        )


class ClientGoawayTests(OperationsTestCase):
    def test_open_streams_finish_after_a_client_goaway_then_the_connection_closes(
        self,
    ) -> None:
        client = self.connect()
        first, second = client.request(), client.request()
        client.h2.close_connection()  # GOAWAY NO_ERROR
        client.pump()
        still_open = not client.transport.disconnecting
        self.finish(0, b"one")
        self.finish(1, b"two")
        client.pump()
        self.assertEqual(
            (
                still_open,
                client.frames_on(first),
                client.frames_on(second),
                client.frames_on(0)[-1],
                client.transport.disconnecting,
            ),
            (
                True,
                [("HeadersFrame", 0), ("DataFrame", 0), ("DataFrame", 0)],
                [("HeadersFrame", 0), ("DataFrame", 0), ("DataFrame", 0)],
                ("GoAwayFrame", ErrorCodes.NO_ERROR),
                True,
            ),
        )

    def test_a_stream_opened_after_the_clients_goaway_is_refused(self) -> None:
        client = self.connect()
        client.request()
        late = client.h2.get_next_available_stream_id()
        client.h2.send_headers(late, client.fields(), end_stream=True)
        frames = client.h2.data_to_send()
        client.h2.close_connection()
        goaway = client.h2.data_to_send()
        client.send_raw(goaway + frames)
        self.assertEqual(
            (client.frames_on(late), len(self.resource.requests)),
            ([("RstStreamFrame", ErrorCodes.REFUSED_STREAM)], 1),
        )

    def test_a_client_goaway_with_nothing_open_closes_at_once(self) -> None:
        client = self.connect()
        client.h2.close_connection()
        client.pump()
        self.assertTrue(client.transport.disconnecting)


class Forgetful:
    """A resource that answers at once and keeps nothing of the request."""

    def render(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"hello"


class MemoryTests(unittest.TestCase):
    def setUp(self) -> None:
        if platform.python_implementation() != "CPython":
            raise unittest.SkipTest("reference counting frees objects at once only on CPython")

    def test_a_finished_stream_is_freed_without_the_garbage_collector(self) -> None:
        clock = Clock()
        server = H2ServerConnection(Forgetful(), H2Limits(), clock)
        client = H2Client(server, clock)
        gc.disable()
        self.addCleanup(gc.enable)
        created = []
        real_init = StreamRequest.__init__

        def init(stream, *args, **kwargs):
            real_init(stream, *args, **kwargs)
            created.append(weakref.ref(stream))

        self.patch(StreamRequest, "__init__", init)
        for body in (None, b"data"):
            client.request(b"POST" if body else b"GET", body=body)
        self.assertEqual(
            [client.answer(i).body for i in (1, 3)] + [ref() for ref in created],
            [b"hello", b"hello", None, None],
        )


class WriteTests(OperationsTestCase):
    def test_response_headers_and_their_first_data_go_out_in_one_write(self) -> None:
        client = self.connect()
        stream_id = client.request()
        writes = []
        write = self.server.transport.write
        self.patch(self.server.transport, "write", lambda data: (writes.append(data), write(data)))
        self.resource.requests[0].write(b"body")
        client.pump()
        self.assertEqual(
            (len(writes), client.frames_on(stream_id)),
            (1, [("HeadersFrame", 0), ("DataFrame", 0)]),
        )
