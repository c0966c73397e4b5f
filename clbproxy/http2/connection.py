"""The HTTP/2 server connection of an HTTPS listener, on ``h2``, with streams as requests.

A client that chose ``h2`` by ALPN gets an :class:`H2ServerConnection`.  Each
request is dispatched to the listener's resource as soon as its HEADERS are in
(a :class:`clbproxy.http2.stream.StreamRequest`, routed, admitted, forwarded and
logged exactly as an HTTP/1.1 request is); its body streams to the backend under
HTTP/2 flow control, and the response streams back within the client's windows.

What is answered how (each affects only what it names):

- a request HTTP/2 calls malformed (pseudo-headers, connection-specific
  fields, ``content-length`` against its DATA, ``:protocol``, RFC 9113 8.1.1):
  that stream is reset with ``PROTOCOL_ERROR``
  (:mod:`clbproxy.http2.request`); one HTTP/1.1 would refuse gets the same
  status (400, 413, 414, 431; CONNECT 501) on its stream;
- a stream beyond ``http2_max_concurrent_streams``: ``REFUSED_STREAM``;
- an ``:authority`` whose host would get another certificate (or none, with
  ``strict_sni``) on a connection of its own: 421 on its stream, so a client
  reusing the connection for other names cannot bypass SNI;
- more than ``http2_max_resets`` resets in 10 s, counting the client's
  RST_STREAM frames (Rapid Reset) and the streams the proxy reset for the
  client's errors (MadeYouReset); more than ``http2_max_control_frames``
  SETTINGS/PING/PRIORITY/empty DATA frames in 10 s; a header block (HEADERS
  and CONTINUATION frames) over twice ``max_header_size`` bytes, or a header
  list that decodes to more than that (an HPACK bomb): the connection ends
  with ``GOAWAY ENHANCE_YOUR_CALM`` (:mod:`clbproxy.http2.guard`);
- a response stuck behind a shut window for ``client_timeout``: the stream is
  reset (``CANCEL``), or, when the connection's window is the shut one, the
  connection ends (``GOAWAY ENHANCE_YOUR_CALM``);
- every other protocol error ``h2`` finds is a connection error (``GOAWAY``
  with its code), as RFC 9113 5.4.1 asks.

Timeouts: ``header_timeout`` until the first request is dispatched (refused
ones do not count), then ``keepalive_timeout`` whenever no stream is open;
either ends the connection with ``GOAWAY NO_ERROR``.
:meth:`H2ServerConnection.drain` sends ``GOAWAY``, lets the open streams finish
and refuses new ones.

A client's ``GOAWAY`` with ``NO_ERROR`` is a drain of the client's own: its
open streams finish (their responses are sent), new ones are refused, and the
connection closes after the last (RFC 9113 6.8; ``h2`` would close at once, see
:class:`~clbproxy.http2.engine.ServerH2`).  One with an error code ends the connection at
once.

Counting (:mod:`clbproxy.listener.streams`): every stream in flight beyond the
first counts as one more connection for the listener's limits; a stream over
one is refused with ``REFUSED_STREAM``.  Streams opened, refused and reset
(by either side) are counted in the listener's ``stats`` (``http2_*``).

Extended CONNECT (RFC 8441, WebSocket over HTTP/2) is offered only with
``websocket_over_http2`` (``SETTINGS_ENABLE_CONNECT_PROTOCOL`` 1, else 0 and
``:protocol`` is malformed); such a stream's DATA goes to its
:class:`~clbproxy.http2.tunnel.StreamTunnel` once the relay took it over, and
a connection error ends those streams with
:class:`~clbproxy.http2.tunnel.ConnectionFailed`.  Server push is never used.
Trailers pass both ways: a request's to the backend (chunked), a
backend's after the response's last DATA frame.
"""

from __future__ import annotations

from typing import Callable, Optional

import attrs
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame
from twisted.internet.error import ConnectionAborted, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from zope.interface import implementer

from clbproxy.http.request_id import OFF, RequestIds
from clbproxy.http.responses import negotiated_error
from clbproxy.http.server import SERVER, BodyTooLarge
from clbproxy.http2.counting import NoStats, stream_counter
from clbproxy.http2.engine import STREAM_WINDOW, H2Limits, ServerH2
from clbproxy.http2.guard import Flood, FrameWatch, WindowCounter
from clbproxy.http2.request import Malformed, Refused, read_request, read_trailers
from clbproxy.http2.stream import StreamRequest
from clbproxy.http2.tunnel import ConnectionFailed
from clbproxy.util.logtext import printable

log = Logger()


@attrs.define
class _Inbound:
    """What the connection counts of one stream's request body."""

    expected: Optional[int]
    received: int = 0
    acknowledged: int = 0


@implementer(IPushProducer)
class H2ServerConnection(Protocol):
    """One client's HTTP/2 connection (see the module doc).

    ``resource`` is the listener's root (its ``render(request)`` answers or
    forwards); ``request_ids`` names the requests the connection refuses itself;
    ``authority_check(transport)`` gives the test of whether a request's
    ``:authority`` may be served on this TLS connection (else 421, see
    :meth:`clbproxy.net.tls.ServerTLS.authority_check`); ``stats`` counts (the
    listener's ``LimitStats``); ``counter`` counts streams as connections (by
    default the connection limiter's record of this connection, found under
    the TLS layer: :class:`clbproxy.listener.streams.StreamHolder`).
    """

    def __init__(
        self,
        resource,
        limits: H2Limits,
        clock,
        request_ids: RequestIds = OFF,
        authority_check: Optional[Callable[[object], Callable[[bytes], bool]]] = None,
        stats=None,
        counter=None,
    ) -> None:
        self.resource = resource
        self._authority_check = authority_check
        self._serves: Optional[Callable[[bytes], bool]] = None
        self.limits = limits
        self.clock = clock
        self.request_ids = request_ids
        self.streams: dict[int, StreamRequest] = {}
        self._inbound: dict[int, _Inbound] = {}
        self._stalls: dict[int, object] = {}
        self._idle_call = None
        self._flush_call = None
        self._closed = False
        self._paused = False
        self._registered = False
        self.draining = False
        self._resets = WindowCounter(limits.max_resets, clock)
        self._control = WindowCounter(limits.max_control_frames, clock)
        self._watch = FrameWatch(limits.max_header_block, self._control, self._resets)
        self._h2: Optional[H2Connection] = None
        #: Why the connection failed (our GOAWAY for an error), once it has.
        self._error: Optional[str] = None
        self.stats = stats if stats is not None else NoStats()
        self._counter = counter
        #: Streams counted by ``_counter`` (those in flight beyond the first).
        self._counted = 0

    # -- the transport's side -----------------------------------------------------------

    def connectionMade(self) -> None:
        # Inbound headers are checked per stream (clbproxy.http2.request); outbound
        # ones are twisted.web Headers (names are tokens, values without CR/LF) made
        # lower-case without hop-by-hop fields by StreamRequest, so h2's own passes
        # over them (a sixth of a response's h2 time) are left out.
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        h2 = ServerH2(config=config)
        settings = {
            SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.limits.http.max_header_size,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
        }
        if self.limits.connect_protocol:
            settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1  # RFC 8441 3
        h2.local_settings = Settings(client=False, initial_values=settings)
        # Past this the decoder stops (an HPACK bomb); between it and the
        # advertised size a request gets 431 on its stream.
        h2.decoder.max_header_list_size = self.limits.max_header_block
        h2.initiate_connection()
        extra = self.limits.connection_window - STREAM_WINDOW
        if extra > 0:
            h2.increment_flow_control_window(extra)
        self._h2 = h2
        if self._authority_check is not None:
            self._serves = self._authority_check(self.transport)
        if self._counter is None:
            self._counter = stream_counter(self.transport)
        self.stats.increment("http2_connections")
        self.transport.registerProducer(self, True)
        self._registered = True
        self._flush()
        self._idle(self.limits.header_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            self._watch.feed(data)
        except Flood as e:
            self._fail(ErrorCodes.ENHANCE_YOUR_CALM, str(e))
            return
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as e:
            self._fail(e.error_code, str(e) or type(e).__name__)
            return
        for event in events:
            if self._closed:
                return
            self._event(event)
        self._flush()

    def connectionLost(self, reason: Failure = None) -> None:
        self._closed = True
        self._cancel_idle()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        for call in self._stalls.values():
            call.cancel()
        self._stalls.clear()
        streams, self.streams = list(self.streams.values()), {}
        self._uncount()
        reason = reason or Failure(ConnectionLost())
        failed = reason
        if self._error is not None:  # WebSockets tell their backends (1011)
            failed = Failure(ConnectionFailed(f"HTTP/2 connection error: {self._error}"))
        for stream in streams:
            stream.connection_lost(failed if stream.tunnel is not None else reason)

    def pauseProducing(self) -> None:
        self._paused = True
        for stream in self.streams.values():
            stream.window_shut()

    def resumeProducing(self) -> None:
        self._paused = False
        for stream in list(self.streams.values()):
            self.send_stream_data(stream)

    def stopProducing(self) -> None:
        pass

    def drain(self) -> None:
        """Stop taking requests: GOAWAY now, close once the open streams have finished."""
        if self._closed or self.draining:
            return
        self.draining = True
        if not self.streams:
            self._close(ErrorCodes.NO_ERROR)
            return
        # h2 allows nothing after its own GOAWAY, so this one is written by hand.
        self._flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._h2.highest_inbound_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        self.transport.write(frame.serialize())

    @property
    def idle(self) -> bool:
        """True while no request is under way."""
        return not self.streams

    # -- events from h2 -----------------------------------------------------------------

    def _event(self, event) -> None:
        if isinstance(event, DataReceived):
            self._data(event)
        elif isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, StreamEnded):
            self._request_ended(event.stream_id)
        elif isinstance(event, WindowUpdated):
            self._window_updated(event.stream_id)
        elif isinstance(event, StreamReset):
            self._client_reset(event)
        elif isinstance(event, TrailersReceived):
            self._trailers(event)
        elif isinstance(event, RemoteSettingsChanged):
            if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                self._window_updated(0)
        elif isinstance(event, ConnectionTerminated):
            self._client_goaway(event)

    def _request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        end_stream = event.stream_ended is not None
        self.stats.increment("http2_streams")
        if self.draining:
            self._send_reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) >= self.limits.max_concurrent_streams:
            self._reset_for_client(
                stream_id,
                ErrorCodes.REFUSED_STREAM,
                f"more than {self.limits.max_concurrent_streams} concurrent streams",
            )
            return
        try:
            head = read_request(
                event.headers, self.limits.http, end_stream, self.limits.connect_protocol
            )
        except Malformed as e:
            self._reset_for_client(stream_id, ErrorCodes.PROTOCOL_ERROR, str(e))
            return
        except Refused as e:
            self._refuse(stream_id, event.headers, e, end_stream)
            return
        if self._serves is not None and not self._serves(head.authority):
            host = head.authority.decode("latin-1")
            refused = Refused(421, f"this connection's certificate is not the one for {host}")
            self._refuse(stream_id, event.headers, refused, end_stream)
            return
        if self.streams and not self._count_stream():
            self._send_reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = StreamRequest(self, stream_id, head, end_stream)
        self.streams[stream_id] = stream
        if not end_stream:
            self._inbound[stream_id] = _Inbound(head.content_length)
            expect = stream.getHeader(b"expect")
            if expect is not None and expect.lower() == b"100-continue" and stream.body is not None:
                # As on HTTP/1.1: only once a backend takes the body.
                stream.body.on_start = lambda: self._send_continue(stream)
        self._cancel_idle()
        try:
            stream.process(self.resource)
        except Exception:
            log.failure("HTTP/2: the listener failed on stream {stream}", stream=stream_id)
            if not stream.startedWriting:
                stream.setResponseCode(500)
                stream.write(b"")
                stream.finish()
            else:
                stream.reset()

    def _data(self, event: DataReceived) -> None:
        stream_id, data = event.stream_id, event.data
        padding = event.flow_controlled_length - len(data)
        if padding:
            self._h2.acknowledge_received_data(padding, stream_id)
        stream = self.streams.get(stream_id)
        inbound = self._inbound.get(stream_id)
        if stream is not None and stream.tunnel is not None and inbound is not None:
            inbound.received += len(data)
            stream.tunnel.data_received(data)  # acknowledged as it is handed on
            return
        if stream is None or stream.body is None or inbound is None:
            if data:
                self._h2.acknowledge_received_data(len(data), stream_id)
            return
        inbound.received += len(data)
        if inbound.expected is not None and inbound.received > inbound.expected:
            self._malformed(stream, "more DATA than its content-length (RFC 9113 8.1.1)")
            return
        limit = self.limits.http.max_body_size
        if limit and inbound.received > limit:
            # The forwarder answers 413 (or the stream is reset mid-response).
            stream.body.fail(BodyTooLarge(f"request body over {limit} bytes"))
            if stream.startedWriting:
                self.reset_stream(stream)
            return
        stream.body.write(data)

    def _request_ended(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.protocol is not None:
            stream.client_ended = True
            if stream.tunnel is not None:
                stream.tunnel.end_received()
            return
        inbound = self._inbound.get(stream_id)
        if stream is None or stream.body is None or inbound is None:
            return
        if inbound.expected is not None and inbound.received != inbound.expected:
            self._malformed(stream, "less DATA than its content-length (RFC 9113 8.1.1)")
            return
        stream.body.finish()

    def _trailers(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.body is None:
            return
        try:
            stream.body.trailers = read_trailers(event.headers)
        except Malformed as e:
            self._malformed(stream, str(e))

    def _client_reset(self, event: StreamReset) -> None:
        self.stats.increment("http2_streams_reset_by_client")
        stream = self._drop(event.stream_id)
        self._forget(event.stream_id)
        if stream is not None:
            code = _code_name(event.error_code)
            stream.connection_lost(Failure(ConnectionLost(f"the client reset the stream ({code})")))
        self._after_stream()

    def _client_goaway(self, event: ConnectionTerminated) -> None:
        graceful = event.error_code == ErrorCodes.NO_ERROR
        if self.streams:
            log.info(
                "HTTP/2: {peer} sent GOAWAY ({code}) with {count} stream(s) open: {outcome}",
                peer=self._peer(),
                code=_code_name(event.error_code),
                count=len(self.streams),
                outcome="closing after them" if graceful else "closing",
            )
        if graceful and self.streams and not self._closed:
            self.draining = True  # new streams refused; closes after the last
            return
        self._closed = True
        self._flush()
        self._lose()

    # -- what streams ask for -----------------------------------------------------------

    def send_stream_headers(
        self, stream: StreamRequest, headers, end_stream: bool, flush: bool = True
    ) -> None:
        """``stream``'s response headers; ``flush=False`` when its DATA follows at once
        (:meth:`send_stream_data` writes both out: one TLS record, not two)."""
        if self._closed or stream.stream_id not in self.streams:
            return
        try:
            self._h2.send_headers(stream.stream_id, headers, end_stream=end_stream)
        except H2Error as e:
            log.warn(
                "HTTP/2: the response headers of stream {stream} cannot be sent: {reason}",
                stream=stream.stream_id,
                reason=str(e),
            )
            self.reset_stream(stream)
            return
        if end_stream:
            self._stream_done(stream)
        if flush:
            self._write_out()

    def send_stream_data(self, stream: StreamRequest) -> None:
        """Send what ``stream`` has waiting, as far as the windows and the socket allow."""
        if self._closed or stream.stream_id not in self.streams:
            return
        stream_id, h2 = stream.stream_id, self._h2
        sent = False
        while stream.waiting:
            if self._paused:
                stream.window_shut()
                break
            if stream.has_data:
                allowed = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)
                if allowed <= 0:
                    stream.window_shut()
                    self._start_stall(stream)
                    break
            else:
                allowed = 0
            data, end = stream.take_pending(allowed)
            trailers = stream.trailer_fields() if end else None
            if trailers:
                if data:
                    h2.send_data(stream_id, data)
                h2.send_headers(stream_id, trailers, end_stream=True)
            else:
                h2.send_data(stream_id, data, end_stream=end)
            sent = True
            if end:
                self._stream_done(stream)
                break
        else:
            stream.window_open()
        if sent:
            self._cancel_stall(stream_id)
            if stream.waiting and stream.has_data and stream_id in self.streams:
                self._start_stall(stream)
        self._write_out()

    def _send_continue(self, stream: StreamRequest) -> None:
        """The ``100 Continue`` a request asked for, unless its answer has begun."""
        if self._closed or stream.startedWriting or stream.stream_id not in self.streams:
            return
        self._h2.send_headers(stream.stream_id, [(b":status", b"100")])
        self._write_out()

    def acknowledge(self, stream_id: int, count: int) -> None:
        """``count`` bytes of a stream's body went to the backend: the client may send more."""
        inbound = self._inbound.get(stream_id)
        if inbound is not None:
            inbound.acknowledged += count
        if not self._closed:
            self._h2.acknowledge_received_data(count, stream_id)
            self._write_out()

    def reset_stream(self, stream: StreamRequest, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """End ``stream`` at once with RST_STREAM ``code``; the other streams go on."""
        if self._drop(stream.stream_id) is None:
            return
        self._send_reset(stream.stream_id, code)
        self._forget(stream.stream_id)
        stream.connection_lost(Failure(ConnectionAborted(f"stream reset ({_code_name(code)})")))
        self._write_out()
        self._after_stream()

    # -- the connection's own answers ---------------------------------------------------

    def _stream_done(self, stream: StreamRequest) -> None:
        """``stream``'s response has ended (END_STREAM sent)."""
        stream_id = stream.stream_id
        self._drop(stream_id)
        if (stream.body is not None and not stream.body.complete) or (
            stream.protocol is not None and not stream.client_ended
        ):
            # Answered before its body (or its tunnel) was in: the rest is not
            # wanted (RFC 9113 8.1).
            self._send_reset(stream_id, ErrorCodes.NO_ERROR)
        self._forget(stream_id)
        self._after_stream()

    # -- streams counted as connections (clbproxy.listener.streams) -------------------

    def _count_stream(self) -> bool:
        """One more stream in flight beyond the first: False when a limit refuses it."""
        if self._counter is None:
            return True
        if not self._counter.open_stream():
            return False
        self._counted += 1
        return True

    def _drop(self, stream_id: int) -> Optional[StreamRequest]:
        """Take ``stream_id`` off the open streams, giving back what it counted."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            self._uncount(max(0, len(self.streams) - 1))
        return stream

    def _uncount(self, keep: int = 0) -> None:
        while self._counted > keep:
            self._counted -= 1
            self._counter.close_stream()

    def _forget(self, stream_id: int) -> None:
        """Give back the window of body bytes never passed on, and drop the stream's timers."""
        self._cancel_stall(stream_id)
        inbound = self._inbound.pop(stream_id, None)
        if inbound is not None and not self._closed:
            unacknowledged = inbound.received - inbound.acknowledged
            if unacknowledged > 0:
                self._h2.acknowledge_received_data(unacknowledged, stream_id)

    def _after_stream(self) -> None:
        if self.streams or self._closed:
            return
        if self.draining:
            self._close(ErrorCodes.NO_ERROR)
        else:
            self._idle(self.limits.keepalive_timeout)

    def _malformed(self, stream: StreamRequest, reason: str) -> None:
        self._log_stream_error(stream.stream_id, reason)
        self.reset_stream(stream, ErrorCodes.PROTOCOL_ERROR)
        self._count_reset()

    def _reset_for_client(self, stream_id: int, code: int, reason: str) -> None:
        """Reset a stream the client's error or excess made: it counts as a reset."""
        self._log_stream_error(stream_id, reason)
        self._send_reset(stream_id, code)
        self._count_reset()

    def _count_reset(self) -> None:
        if self._resets.add():
            self._fail(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"more than {self.limits.max_resets} stream resets in 10 s (MadeYouReset)",
            )

    def _log_stream_error(self, stream_id: int, reason: str) -> None:
        log.info(
            "HTTP/2: {peer}: stream {stream} reset: {reason}",
            peer=self._peer(),
            stream=stream_id,
            reason=printable(reason),
        )

    def _refuse(self, stream_id: int, headers, refused: Refused, end_stream: bool) -> None:
        """Answer a request HTTP/1.1 would refuse with the same status, on its stream."""
        accept = request_id = None
        received_ids = []
        for name, value in headers:
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == self.request_ids.key:
                received_ids.append(value)
        if self.request_ids.enabled:
            request_id = self.request_ids.choose(received_ids, self._peer() or "")
        content_type, body = negotiated_error(refused.status, refused.detail, accept, request_id)
        log.info(
            "Rejected a request from {peer} with {status}: {detail} request_id={request_id}",
            peer=self._peer(),
            status=refused.status,
            detail=printable(refused.detail),
            request_id=request_id or "-",
        )
        answer = [
            (b":status", b"%d" % (refused.status,)),
            (b"content-type", content_type.encode("ascii")),
            (b"content-length", b"%d" % (len(body),)),
            (b"server", SERVER),
            (b"date", datetimeToString()),
        ]
        if request_id is not None:
            answer.append((self.request_ids.key, request_id.encode("ascii")))
        self._h2.send_headers(stream_id, answer)
        window = self._h2.local_flow_control_window(stream_id)
        self._h2.send_data(stream_id, body[:window], end_stream=len(body) <= window)
        if len(body) > window or not end_stream:
            self._send_reset(stream_id, ErrorCodes.NO_ERROR)

    def _send_reset(self, stream_id: int, code: int) -> None:
        """RST_STREAM ``code``, unless the stream is closed both ways already (nothing to end)."""
        if self._closed:
            return
        try:
            self._h2.reset_stream(stream_id, code)
        except StreamClosedError:
            return
        if code == ErrorCodes.REFUSED_STREAM:
            self.stats.increment("http2_streams_refused")
        elif code != ErrorCodes.NO_ERROR:
            self.stats.increment("http2_streams_reset_by_proxy")

    def _fail(self, code: int, reason: str) -> None:
        """A connection error: GOAWAY ``code`` and close; every stream ends."""
        log.info(
            "HTTP/2: {peer}: connection error, GOAWAY {code}: {reason}",
            peer=self._peer(),
            code=_code_name(code),
            reason=printable(reason),
        )
        self._error = f"GOAWAY {_code_name(code)}: {reason}"
        self._close(code)

    def _close(self, code: int) -> None:
        if self._closed:
            return
        try:
            self._h2.close_connection(code)
        except ProtocolError:
            pass  # h2 already closed it (and queued its own GOAWAY).
        self._flush()
        self._closed = True
        self._cancel_idle()
        self._lose()

    def _lose(self) -> None:
        """Close once written out (TLS waits for a registered producer to leave first)."""
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    # -- timers -------------------------------------------------------------------------

    def _idle(self, timeout: float) -> None:
        self._cancel_idle()
        if timeout:
            self._idle_call = self.clock.callLater(timeout, self._close, ErrorCodes.NO_ERROR)

    def _cancel_idle(self) -> None:
        call, self._idle_call = self._idle_call, None
        if call is not None and call.active():
            call.cancel()

    def _start_stall(self, stream: StreamRequest) -> None:
        timeout = self.limits.client_timeout
        if timeout and stream.stream_id not in self._stalls:
            self._stalls[stream.stream_id] = self.clock.callLater(timeout, self._stalled, stream)

    def _cancel_stall(self, stream_id: int) -> None:
        call = self._stalls.pop(stream_id, None)
        if call is not None and call.active():
            call.cancel()

    def _stalled(self, stream: StreamRequest) -> None:
        self._stalls.pop(stream.stream_id, None)
        if self._closed or stream.stream_id not in self.streams:
            return
        timeout = self.limits.client_timeout
        if self._h2.outbound_flow_control_window <= 0:
            self._fail(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"the connection's window stayed shut for {timeout:g} s (client_timeout)",
            )
            return
        self._log_stream_error(
            stream.stream_id, f"its window stayed shut for {timeout:g} s (client_timeout)"
        )
        self.reset_stream(stream, ErrorCodes.CANCEL)

    def _window_updated(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None and stream.waiting:
                self.send_stream_data(stream)
            return
        for stream in list(self.streams.values()):
            if stream.waiting:
                self.send_stream_data(stream)

    def _write_out(self) -> None:
        """Write out what h2 has queued at the end of this reactor turn: the frames of
        every stream answered in it go out together, one TLS record instead of one
        per frame (with many streams in flight, the largest share of a response's
        sending cost).  What a client's data caused is written when it is handled."""
        if self._flush_call is None and not self._closed:
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """Write out what h2 has queued, now."""
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        data = self._h2.data_to_send() if self._h2 is not None else b""
        if data and self.transport is not None:
            self.transport.write(data)

    def _peer(self) -> Optional[str]:
        peer = self.transport.getPeer() if self.transport is not None else None
        return getattr(peer, "host", None)


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"
