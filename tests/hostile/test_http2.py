"""Hostile HTTP/2 clients on an HTTPS listener with ``http2 = true``, each with its exact answer.

Every case opens its own TLS connection (ALPN ``h2``, SNI ``a.example.com``) to a
proxy started once in a child process (``tests/hostile/fixture.py``) with small
limits, so each attack crosses its bound quickly: ``http2_max_resets = 20``,
``http2_max_control_frames = 50``, ``http2_max_concurrent_streams = 10``,
``max_header_size = 4KiB``, ``client_timeout = 2``.  A case sends frames (through
an ``h2`` client that checks nothing, or raw) and must see one outcome: its
stream reset with a code, a status on its stream, or ``GOAWAY`` with a code and
the connection closed.  After each case the runner checks that the proxy logged
the case's reason once, logged no traceback, is alive, and still answers a good
HTTP/2 request on a new connection.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import ssl
import tempfile
import time
from typing import Callable, Optional, Sequence, Union

import attrs
import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)
from twisted.trial import unittest

from tests.hostile.catalog import (
    LOG_ALARMS,
    AnswerMismatch,
    Case,
    Closed,
    HalfClose,
    Messages,
    Pause,
    Reader,
    Send,
    ServerProcess,
    Trickle,
    Upgrade,
    WsClose,
    _check_closed,
    _check_messages,
    _check_ws_close,
    _test_name,
    proxy_fixture,
)
from tests.hostile.test_websocket import FRAMES, LIMIT
from tests.support.tls import certificate_files

# -- outcomes ------------------------------------------------------------------------------


@attrs.frozen
class Reset:
    """The case's stream is reset with this code; the connection stays open."""

    code: int


@attrs.frozen
class Status:
    """The case's stream is answered with this status."""

    status: int


@attrs.frozen
class GoAway:
    """GOAWAY with this code, then the connection closes."""

    code: int


Outcome = Union[Reset, Status, GoAway]


class Client:
    """A blocking HTTP/2 client that checks nothing it sends (a hostile one)."""

    def __init__(self, port: int, settings: Optional[dict] = None) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="a.example.com")
        assert self.sock.selected_alpn_protocol() == "h2"
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = H2Connection(config)
        if settings:
            self.h2.local_settings = Settings(client=True, initial_values=settings)
        self.h2.initiate_connection()
        self.flush()
        self.frames: list = []
        self.headers: dict[int, dict] = {}
        self._decoder = Decoder()
        self._unread = b""

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, fields, end_stream: bool = True) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, fields, end_stream=end_stream)
        self.flush()
        return stream_id

    def outcome(self, stream_id: int, timeout: float = 5.0) -> Outcome:
        """How ``stream_id`` ended: answered in full, reset, or the connection's GOAWAY."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = None
            for frame in self.frames:
                if isinstance(frame, GoAwayFrame):
                    self._wait_closed(deadline)
                    return GoAway(frame.error_code)
                if frame.stream_id != stream_id:
                    continue
                if isinstance(frame, RstStreamFrame):
                    return Reset(frame.error_code)
                if isinstance(frame, HeadersFrame):
                    answered = self.headers[id(frame)].get(b":status", b"")
                    status = status if answered.startswith(b"1") else answered or status
                if "END_STREAM" in frame.flags and status is not None:
                    return Status(int(status))
            if not self._read(deadline):
                break
        raise AssertionError(f"no outcome for stream {stream_id}: {self.frames!r}")

    def _read(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return True
        except (ssl.SSLError, OSError):
            return False
        if not data:
            return False
        buffer = self._unread + data
        while len(buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
            if len(buffer) < 9 + length:
                break
            frame.parse_body(memoryview(buffer[9 : 9 + length]))
            if isinstance(frame, HeadersFrame):
                # Each block decoded once, in order, as HPACK's dynamic table requires.
                self.headers[id(frame)] = dict(self._decoder.decode(frame.data, raw=True))
            self.frames.append(frame)
            buffer = buffer[9 + length :]
        self._unread = buffer
        return True

    def _wait_closed(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return
            except (TimeoutError, socket.timeout):
                continue
            except (ssl.SSLError, OSError):
                return
        raise AssertionError("GOAWAY, but the connection stayed open")

    def close(self) -> None:
        self.sock.close()


def fields(**replace) -> list:
    """A GET's pseudo-headers, with some replaced (``path=b"/x"``)."""
    pseudo = {
        b":method": b"GET",
        b":scheme": b"https",
        b":authority": b"a.example.com",
        b":path": b"/",
    }
    pseudo.update({b":" + name.encode(): value for name, value in replace.items()})
    return list(pseudo.items())


# -- the cases -------------------------------------------------------------------------------


@attrs.frozen
class H2Case:
    """A hostile client: ``play(client)`` sends its frames and returns the stream to watch."""

    name: str
    play: Callable[[Client], int]
    expect: Outcome
    logged: str
    settings: Optional[dict] = None


def _headers(extra: Sequence, **replace) -> Callable[[Client], int]:
    return lambda client: client.request([*fields(**replace), *extra])


def _rapid_reset(client: Client) -> int:
    for _ in range(25):
        stream_id = client.request(fields(), end_stream=False)
        client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        client.flush()
    return stream_id


def _made_you_reset(client: Client) -> int:
    for _ in range(25):
        stream_id = client.request([*fields(), (b"connection", b"close")])
    return stream_id


def _flood(frame) -> Callable[[Client], int]:
    def play(client: Client) -> int:
        client.send_raw(b"".join(frame.serialize() for _ in range(60)))
        return 1

    return play


def _continuation_flood(client: Client) -> int:
    block = Encoder().encode(fields())
    frames = [HeadersFrame(1, data=block).serialize()]
    frames += [ContinuationFrame(1, data=b"\x00" * 1000).serialize() for _ in range(20)]
    client.send_raw(b"".join(frames))
    return 1


def _hpack_bomb(client: Client) -> int:
    return client.request([*fields(), *[(b"x-bomb", b"b" * 3000)] * 20])


def _too_many_streams(client: Client) -> int:
    for _ in range(10):
        client.request([*fields(method=b"POST")], end_stream=False)
    return client.request([*fields(method=b"POST")], end_stream=False)


def _data_on_stream_zero(client: Client) -> int:
    # DATA (type 0) on stream 0, which hyperframe would not build.
    client.send_raw(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    return 1


def _empty_data_flood(client: Client) -> int:
    stream_id = client.request([*fields(method=b"POST")], end_stream=False)
    client.send_raw(b"".join(DataFrame(stream_id, data=b"").serialize() for _ in range(60)))
    return stream_id


CASES = [
    H2Case(
        "upper-case field name",
        _headers([(b"X-Upper", b"1")]),
        Reset(ErrorCodes.PROTOCOL_ERROR),
        "stream 1 reset: a field name that is not a lower-case token",
    ),
    H2Case(
        "connection-specific field",
        _headers([(b"transfer-encoding", b"chunked")]),
        Reset(ErrorCodes.PROTOCOL_ERROR),
        "connection-specific field transfer-encoding",
    ),
    H2Case(
        "pseudo-header after a field",
        lambda client: client.request([(b"accept", b"*/*"), *fields()]),
        Reset(ErrorCodes.PROTOCOL_ERROR),
        "a pseudo-header after a regular field",
    ),
    H2Case(
        "unknown pseudo-header",
        _headers([(b":tunnel", b"yes")]),
        Reset(ErrorCodes.PROTOCOL_ERROR),
        "unknown pseudo-header ':tunnel'",
    ),
    H2Case(
        "no path",
        lambda client: client.request([f for f in fields() if f[0] != b":path"]),
        Reset(ErrorCodes.PROTOCOL_ERROR),
        "a request needs :scheme and :path",
    ),
    H2Case(
        ":protocol when not advertised",
        _headers([(b":protocol", b"websocket")], method=b"CONNECT"),
        Reset(ErrorCodes.PROTOCOL_ERROR),
        ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL",
    ),
    H2Case(
        "CONNECT without :protocol",
        lambda client: client.request(
            [(b":method", b"CONNECT"), (b":authority", b"a.example.com:443")]
        ),
        Status(501),
        "with 501: CONNECT is not supported",
    ),
    H2Case(
        "authority another certificate serves",
        _headers([], authority=b"default.example"),
        Status(421),
        "with 421: this connection's certificate is not the one for default.example",
    ),
    H2Case(
        "header list over max_header_size",
        _headers([(b"x-big", b"a" * 5000)]),
        Status(431),
        "with 431: the request headers are too large",
    ),
    H2Case(
        "HPACK bomb",
        _hpack_bomb,
        GoAway(ErrorCodes.ENHANCE_YOUR_CALM),
        "connection error, GOAWAY ENHANCE_YOUR_CALM",
    ),
    H2Case(
        "CONTINUATION flood",
        _continuation_flood,
        GoAway(ErrorCodes.ENHANCE_YOUR_CALM),
        "a header block over 8192 bytes",
    ),
    H2Case(
        "Rapid Reset",
        _rapid_reset,
        GoAway(ErrorCodes.ENHANCE_YOUR_CALM),
        "more than 20 stream resets in 10 s (Rapid Reset)",
    ),
    H2Case(
        "MadeYouReset",
        _made_you_reset,
        GoAway(ErrorCodes.ENHANCE_YOUR_CALM),
        "more than 20 stream resets in 10 s (MadeYouReset)",
    ),
    H2Case(
        "PING flood",
        _flood(PingFrame(0, opaque_data=b"12345678")),
        GoAway(ErrorCodes.ENHANCE_YOUR_CALM),
        "more than 50 control frames in 10 s",
    ),
    H2Case(
        "SETTINGS flood",
        _flood(SettingsFrame(0)),
        GoAway(ErrorCodes.ENHANCE_YOUR_CALM),
        "more than 50 control frames in 10 s",
    ),
    H2Case(
        "empty DATA flood",
        _empty_data_flood,
        GoAway(ErrorCodes.ENHANCE_YOUR_CALM),
        "more than 50 control frames in 10 s",
    ),
    H2Case(
        "more streams than allowed",
        _too_many_streams,
        Reset(ErrorCodes.REFUSED_STREAM),
        "more than 10 concurrent streams",
    ),
    H2Case(
        "zero window",
        _headers([]),
        Reset(ErrorCodes.CANCEL),
        "its window stayed shut for 2 s (client_timeout)",
        settings={SettingCodes.INITIAL_WINDOW_SIZE: 1},
    ),
    H2Case(
        "DATA on stream 0",
        _data_on_stream_zero,
        GoAway(ErrorCodes.PROTOCOL_ERROR),
        "connection error, GOAWAY PROTOCOL_ERROR",
    ),
]


# -- the runner ------------------------------------------------------------------------------

_DIRECTORY = tempfile.mkdtemp(prefix="clbproxy-hostile-h2-")
atexit.register(shutil.rmtree, _DIRECTORY, True)
CA = trustme.CA()
CERTIFICATES = [
    certificate_files(_DIRECTORY, CA, "a.example.com"),
    certificate_files(_DIRECTORY, CA, "default.example", default=True),
]


def http2_fixture(**options) -> ServerProcess:
    """The proxy of this catalogue; ``options``: more listener settings."""
    certificates = [{"cert": c.cert, "key": c.key, "default": c.default} for c in CERTIFICATES]
    return proxy_fixture(
        listener={
            "protocol": "https",
            "http2": True,
            "http2_max_resets": 20,
            "http2_max_control_frames": 50,
            "http2_max_concurrent_streams": 10,
            "max_header_size": 4096,
            "client_timeout": 2,
            "header_timeout": 5,
            "tls": {"certificates": certificates},
            **options,
        }
    )


def good_request(port: int) -> Outcome:
    """A well-behaved HTTP/2 GET on a new connection."""
    client = Client(port)
    try:
        return client.outcome(client.request(fields(path=b"/ok")))
    finally:
        client.close()


class HTTP2Catalog(unittest.SynchronousTestCase):
    """One ``test_<case>`` per entry of :data:`CASES`."""

    fixture = http2_fixture()

    def play(self, entry: H2Case) -> None:
        port = self.fixture.start()["proxy"]
        self.fixture.new_log()
        client = Client(port, entry.settings)
        try:
            outcome = client.outcome(entry.play(client))
        finally:
            client.close()
        self.assertEqual(outcome, entry.expect)
        self.assertEqual(good_request(port), Status(200))
        self.assertTrue(self.fixture.alive(), "the proxy process died")
        text = ""
        deadline = time.monotonic() + 3
        while entry.logged not in text and time.monotonic() < deadline:
            text += self.fixture.new_log()
            time.sleep(0.05)
        text += self.fixture.new_log()
        lines = [line for line in text.splitlines() if entry.logged in line]
        self.assertEqual(len(lines), 1, f"{entry.logged!r} not logged once:\n{text[-3000:]}")
        for alarm in LOG_ALARMS:
            self.assertNotIn(alarm, text, f"the proxy logged {alarm!r}:\n{text[-3000:]}")


def _make_test(entry: H2Case):
    def test(self):
        self.play(entry)

    test.__doc__ = f"{entry.name}: {entry.expect}"
    return test


for _entry in CASES:
    setattr(HTTP2Catalog, _test_name(_entry.name), _make_test(_entry))


# -- WebSocket over HTTP/2: the WebSocket frame catalogue on a stream --------------------------
#
# The cases of ``tests/hostile/test_websocket.py`` (frames a hostile client sends on an
# open session, and the exact answer), played on an extended CONNECT stream (RFC 8441)
# of a listener with ``websocket_over_http2 = true``: the same scanner must give the
# same answers.  Cases that send more than a stream's window in one go are left out
# (this client does not read WINDOW_UPDATE frames).

#: Bytes a case may send before the proxy's WINDOW_UPDATE (the stream's 64KiB window).
_WINDOW = 60000


class StreamReader:
    """The bytes the proxy sends on one stream, read as :class:`Reader` reads a socket."""

    frame = Reader.frame

    def __init__(self, client: Client, stream_id: int, deadline: float) -> None:
        self.client = client
        self.stream_id = stream_id
        self.deadline = deadline
        self.buffer = b""
        self.ended = False
        self._seen = 0

    def _fill(self) -> bool:
        """Read what came on the stream; False once it has ended (or the connection)."""
        while True:
            if self.ended:
                return False
            frames = self.client.frames
            found = False
            for frame in frames[self._seen :]:
                self._seen += 1
                if isinstance(frame, GoAwayFrame):
                    self.ended = True
                elif frame.stream_id != self.stream_id:
                    continue
                elif isinstance(frame, RstStreamFrame):
                    self.ended = True
                elif isinstance(frame, DataFrame):
                    self.buffer += frame.data
                    found = found or bool(frame.data)
                if "END_STREAM" in getattr(frame, "flags", ()):
                    self.ended = True
            if found:  # a last DATA frame may carry END_STREAM too
                return True
            if not self.ended and (
                time.monotonic() > self.deadline or not self.client._read(self.deadline)
            ):
                self.ended = True

    def status(self) -> int:
        while True:
            for frame in self.client.frames:
                if isinstance(frame, HeadersFrame) and frame.stream_id == self.stream_id:
                    return int(self.client.headers[id(frame)][b":status"])
            if time.monotonic() > self.deadline or not self.client._read(self.deadline):
                raise AnswerMismatch("the extended CONNECT got no answer")

    def take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise AnswerMismatch(f"the stream ended after {self.buffer[:200]!r}")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def until_eof(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def _send(client: Client, stream_id: int, data: bytes, end: bool = False) -> None:
    chunks = [data[i : i + 16384] for i in range(0, len(data), 16384)] or [b""]
    for index, chunk in enumerate(chunks):
        frame = DataFrame(stream_id, data=chunk)
        if end and index == len(chunks) - 1:
            frame.flags.add("END_STREAM")
        client.send_raw(frame.serialize())


def _extended_connect(client: Client, upgrade: Upgrade) -> int:
    extra = []
    for line in upgrade.extra.split(b"\r\n"):
        if line:
            name, value = line.split(b":", 1)
            extra.append((name.strip().lower(), value.strip()))
    return client.request(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":authority", b"a.example.com"),
            (b":path", upgrade.path.encode()),
            (b"sec-websocket-version", b"13"),
            *extra,
        ],
        end_stream=False,
    )


def run_stream_case(port: int, entry: Case) -> str:
    """Play a WebSocket catalogue case on a stream; raises AnswerMismatch on another answer."""
    deadline = time.monotonic() + entry.timeout
    client = Client(port)
    try:
        stream_id = 0
        reader = None
        for step in entry.script:
            if isinstance(step, Upgrade):
                stream_id = _extended_connect(client, step)
                reader = StreamReader(client, stream_id, deadline)
                status = reader.status()
                if status != 200:
                    raise AnswerMismatch(f"extended CONNECT answered {status}, expected 200")
            elif isinstance(step, (bytes, Send)):
                _send(client, stream_id, step if isinstance(step, bytes) else step.data)
            elif isinstance(step, Pause):
                time.sleep(step.seconds)
            elif isinstance(step, Trickle):
                for index in range(len(step.data)):
                    _send(client, stream_id, step.data[index : index + 1])
                    time.sleep(step.every)
            elif isinstance(step, HalfClose):
                _send(client, stream_id, b"", end=True)
        expect = entry.expect
        if isinstance(expect, WsClose):
            return _check_ws_close(reader, expect)
        if isinstance(expect, Messages):
            return _check_messages(reader, expect)
        return _check_closed(reader, expect)
    finally:
        client.close()


def _fits_a_window(entry: Case) -> bool:
    sent = sum(len(s if isinstance(s, bytes) else getattr(s, "data", b"")) for s in entry.script)
    return sent <= _WINDOW and isinstance(entry.expect, (WsClose, Messages, Closed))


STREAM_CASES = [entry for entry in FRAMES if _fits_a_window(entry)]


class WebSocketOverHTTP2Catalog(unittest.SynchronousTestCase):
    """One ``test_<case>`` per entry of :data:`STREAM_CASES`; the proxy survives them all."""

    fixture = http2_fixture(websocket_over_http2=True, max_message_size=LIMIT)

    def play(self, entry: Case) -> None:
        port = self.fixture.start()["proxy"]
        self.fixture.new_log()
        run_stream_case(port, entry)
        self.assertEqual(good_request(port), Status(200))
        self.assertTrue(self.fixture.alive(), "the proxy process died")
        time.sleep(0.05)
        text = self.fixture.new_log()
        for alarm in LOG_ALARMS:
            self.assertNotIn(alarm, text, f"the proxy logged {alarm!r}:\n{text[-3000:]}")

    def test_an_extended_connect_for_another_protocol_is_501(self) -> None:
        port = self.fixture.start()["proxy"]
        client = Client(port)
        try:
            stream_id = _extended_connect(client, Upgrade())
            other = client.request(
                [(b":method", b"CONNECT"), (b":protocol", b"connect-udp"), *fields()[1:]],
                end_stream=False,
            )
            self.assertEqual(client.outcome(other), Status(501))
            # The WebSocket opened before it on the connection is untouched.
            self.assertEqual(StreamReader(client, stream_id, time.monotonic() + 5).status(), 200)
        finally:
            client.close()


def _make_stream_test(entry: Case):
    def test(self):
        self.play(entry)

    test.__doc__ = f"{entry.name} on an HTTP/2 stream: {entry.expect}"
    return test


for _entry in STREAM_CASES:
    setattr(WebSocketOverHTTP2Catalog, _test_name(_entry.name), _make_stream_test(_entry))
