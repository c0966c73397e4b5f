"""An ``h2`` client talking to a server protocol in memory, for the HTTP/2 unit tests."""

from __future__ import annotations

from typing import Optional

import attrs
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import ProtocolError
from h2.settings import Settings
from hyperframe.frame import Frame, PingFrame, SettingsFrame, WindowUpdateFrame
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET

from tests.support.transports import Connection


@attrs.define
class Answer:
    """What the client received on one stream."""

    headers: dict = attrs.Factory(dict)
    body: bytes = b""
    ended: bool = False
    reset: Optional[int] = None

    @property
    def status(self) -> Optional[int]:
        value = self.headers.get(b":status")
        return int(value) if value is not None else None


class StubResource:
    """The listener's resource in the tests: records requests, answers with ``answer``.

    ``answer(request)`` returns the response body (bytes) or ``NOT_DONE_YET``;
    the default answers ``hello``.
    """

    def __init__(self, answer=None) -> None:
        self.requests: list = []
        self._answer = answer

    def render(self, request):
        self.requests.append(request)
        if self._answer is None:
            request.setHeader(b"Content-Type", b"text/plain")
            return b"hello"
        return self._answer(request)


def later(request) -> object:
    """An answer that leaves the response to the test."""
    return NOT_DONE_YET


class _UncheckedClient(H2Connection):
    """An h2 client that opens streams past the server's MAX_CONCURRENT_STREAMS."""

    @property
    def open_outbound_streams(self) -> int:
        return 0


class H2Client:
    """A client's ``h2`` connection to ``server`` over an in-memory transport.

    ``read`` (default on) acknowledges every DATA byte as it arrives, as a
    client reading its responses does; with it off, the client's windows shut.
    ``checked=False`` makes a hostile client: it sends headers h2 would refuse
    to send and opens streams past the server's limit.  ``settings`` are the
    client's own SETTINGS.
    """

    def __init__(
        self,
        server,
        clock: Optional[Clock] = None,
        read: bool = True,
        checked: bool = True,
        settings: Optional[dict] = None,
    ) -> None:
        self.clock = clock or Clock()
        self.transport = Connection(
            self.clock,
            IPv4Address("TCP", "192.0.2.7", 50000),
            IPv4Address("TCP", "127.0.0.1", 8443),
        )
        self.transport.protocol = server
        self.server = server
        self.read = read
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=checked,
            normalize_outbound_headers=checked,
        )
        self.h2 = (H2Connection if checked else _UncheckedClient)(config)
        if settings:
            self.h2.local_settings = Settings(client=True, initial_values=settings)
        self.answers: dict[int, Answer] = {}
        self.goaway: Optional[ConnectionTerminated] = None
        #: Every frame the server sent (hyperframe objects), in order.
        self.frames: list = []
        self.closed = False
        self._unread = b""
        server.makeConnection(self.transport)
        self.h2.initiate_connection()
        self.pump()

    def pump(self) -> None:
        """Deliver what each side has written until neither has more."""
        for _ in range(1000):
            moved = False
            self.clock.advance(0)  # the server writes out at the end of a reactor turn
            data = self.h2.data_to_send()
            if data and not self.transport.disconnecting:
                moved = True
                self.server.dataReceived(data)
            out = self.transport.value()
            if out:
                moved = True
                self.transport.clear()
                self.receive(out)
            if not moved:
                return
        raise AssertionError("the connection never went quiet")

    def send_raw(self, data: bytes) -> None:
        """Bytes straight to the server, past the client's h2 (hostile frames)."""
        self.server.dataReceived(data)
        self.pump()

    def receive(self, data: bytes) -> None:
        self._read_frames(data)
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            # h2 takes nothing after a GOAWAY (the frames are still recorded), and
            # its own answer to that is the test client's, not a real client's.
            self.closed = True
            self.h2.data_to_send()
            return
        for event in events:
            answer = self.answers.setdefault(getattr(event, "stream_id", 0), Answer())
            if isinstance(event, ResponseReceived):
                answer.headers = dict(event.headers)
            elif isinstance(event, DataReceived):
                answer.body += event.data
                if self.read and event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, TrailersReceived):
                answer.headers.update(dict(event.headers))
            elif isinstance(event, StreamEnded):
                answer.ended = True
            elif isinstance(event, StreamReset):
                answer.reset = event.error_code
            elif isinstance(event, ConnectionTerminated):
                self.goaway = event

    def _read_frames(self, data: bytes) -> None:
        buffer = self._unread + data
        while len(buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
            if len(buffer) < 9 + length:
                break
            frame.parse_body(memoryview(buffer[9 : 9 + length]))
            self.frames.append(frame)
            buffer = buffer[9 + length :]
        self._unread = buffer

    def frames_on(self, stream_id: int) -> list[tuple[str, int]]:
        """``(frame type, error code or 0)`` of each frame the server sent on a stream."""
        return [
            (type(frame).__name__, getattr(frame, "error_code", 0))
            for frame in self.frames
            if frame.stream_id == stream_id
            and not isinstance(frame, (SettingsFrame, WindowUpdateFrame, PingFrame))
        ]

    def fields(self, method: bytes = b"GET", path: bytes = b"/", authority=b"a.example.com"):
        """A request's pseudo-headers."""
        return [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", authority),
            (b":path", path),
        ]

    def request(
        self,
        method: bytes = b"GET",
        path: bytes = b"/",
        headers=(),
        body: Optional[bytes] = None,
        end: bool = True,
        authority: bytes = b"a.example.com",
    ) -> int:
        """Send a request; its stream ID.  ``end=False`` leaves the body open."""
        stream_id = self.h2.get_next_available_stream_id()
        fields = [*self.fields(method, path, authority), *headers]
        self.h2.send_headers(stream_id, fields, end_stream=end and body is None)
        if body is not None:
            self.send_body(stream_id, body, end)
        self.pump()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        """``body`` in DATA frames of the largest size the server allows."""
        size = self.h2.max_outbound_frame_size
        chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        for index, chunk in enumerate(chunks):
            self.h2.send_data(stream_id, chunk, end_stream=end and index == len(chunks) - 1)
        self.pump()

    def answer(self, stream_id: int) -> Answer:
        return self.answers.get(stream_id, Answer())
