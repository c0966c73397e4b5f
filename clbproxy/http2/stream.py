"""One HTTP/2 stream, presented to the listener as the request twisted.web would give it.

:meth:`clbproxy.listener.service.ListenerResource.render` and the forwarder
use a small part of twisted.web's ``Request`` (method, URI, headers both ways,
``write``/``finish``, ``notifyFinish``, a producer, the client's address,
``channel.transport`` for client certificates and aborts).  :class:`StreamRequest`
is that part over one stream of a :class:`clbproxy.http2.connection.H2ServerConnection`:

- its body is a :class:`StreamBody`, the HTTP/1.1 listener's streaming
  :class:`~clbproxy.http.server.RequestBody` whose DATA is acknowledged (the
  client's window reopened) only as the backend takes it, so HTTP/2 flow control
  carries the backend's backpressure to the client;
- the response is framed by HTTP/2: header names lower-cased and hop-by-hop
  fields dropped, DATA sent within the stream's and the connection's windows,
  the response's producer (the backend relay) paused while they are shut;
- an abort (``channel.transport.abortConnection()``, a backend failing
  mid-body) resets this stream only, never the connection;
- an extended CONNECT (``protocol``, RFC 8441) has no body: the relay takes the
  stream over (:meth:`StreamRequest.take_over`) and its DATA goes to a
  :class:`~clbproxy.http2.tunnel.StreamTunnel`.
"""

from __future__ import annotations

import functools
import time
import weakref
from typing import Callable, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from clbproxy.http.server import SERVER, ClientBodyLost, RequestBody
from clbproxy.http.tracecontext import NO_TRACE, TraceContext
from clbproxy.http2.request import RequestHead
from clbproxy.http2.tunnel import HOP_BY_HOP, StreamTunnel

#: Statuses whose responses have no body (RFC 9110 6.4.1).
_BODYLESS = (204, 304)

_date_second = -1
_date_value = b""


def http_date() -> bytes:
    """The ``date`` field's value for now, formatted once a second (not once a stream)."""
    global _date_second, _date_value
    now = time.time()
    if int(now) != _date_second:
        _date_value = datetimeToString(now)
        _date_second = int(now)
    return _date_value


class StreamBody(RequestBody):
    """A stream's request body; each DATA byte is acknowledged once the backend took it.

    ``acknowledge(count)`` reopens the client's windows by ``count`` bytes.
    Until a backend connection consumes the body nothing is acknowledged, so
    what the proxy holds for a stream is bounded by its window.
    """

    def __init__(self, length: Optional[int], acknowledge: Callable[[int], None]) -> None:
        super().__init__(None, length)
        self._acknowledge = acknowledge
        self._acknowledged = 0

    def write(self, data: bytes) -> None:
        if self._error is not None:
            # Failed (too large, the client left): nothing more is passed on.
            self.received += len(data)
            self._acknowledge(len(data))
            return
        super().write(data)
        self._give_back()

    def _flush(self) -> None:
        super()._flush()
        self._give_back()

    def _give_back(self) -> None:
        taken = self._sent - self._acknowledged
        if taken:
            self._acknowledged = self._sent
            self._acknowledge(taken)


class StreamTransport:
    """What ``request.channel.transport`` is for a stream: the connection's, but aborts reset.

    It holds its stream weakly: a strong reference would make every request a
    reference cycle, left to the garbage collector with all it holds (headers,
    body, Deferreds), which under load made collections the largest cost of
    a request.  A stream is referenced by its connection while it is open and by
    whoever handles it (the forwarder, the access log) until they are done.
    """

    def __init__(self, stream: StreamRequest) -> None:
        self._stream = weakref.ref(stream)
        self._connection = stream.connection

    def abortConnection(self) -> None:
        stream = self._stream()
        if stream is not None:
            stream.reset()

    loseConnection = abortConnection

    def getPeerCertificate(self):
        return self._connection.transport.getPeerCertificate()

    def getPeer(self):
        return self._connection.transport.getPeer()

    def getHost(self):
        return self._connection.transport.getHost()


class StreamChannel:
    """``request.channel``: the listener sets ``persistent``, which HTTP/2 does not need."""

    persistent = True

    def __init__(self, stream: StreamRequest) -> None:
        self.transport = StreamTransport(stream)


class StreamRequest:
    """An HTTP/2 request and its response on one stream (see the module doc)."""

    clientproto = b"HTTP/2.0"
    defaultContentType: Optional[bytes] = None
    #: The request's ID, once the listener named it (:mod:`clbproxy.http.request_id`).
    request_id: Optional[str] = None
    #: Its W3C trace context, once the listener read it.
    trace: TraceContext = NO_TRACE
    #: A streamed body has no ``content`` (as the HTTP/1.1 channel's streamed requests).
    content = None
    #: The backend's trailers (set by the forwarder), sent in a last HEADERS frame.
    response_trailers: Sequence[tuple[bytes, bytes]] = ()
    #: The tunnel of an extended CONNECT once taken over (:meth:`take_over`).
    tunnel: Optional[StreamTunnel] = None
    #: The client ended its side of an extended CONNECT (END_STREAM).
    client_ended = False

    def __init__(self, connection, stream_id: int, head: RequestHead, end_stream: bool) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.method = head.method
        #: ``:protocol`` of an extended CONNECT (RFC 8441), else None.
        self.protocol = head.protocol
        self.uri = self.path = head.path
        self.requestHeaders = Headers()
        for name, value in head.fields:
            self.requestHeaders.addRawHeader(name, value)
        self.responseHeaders = Headers()
        self.code = 200
        self.code_message = b"OK"
        self.sentLength = 0
        self.startedWriting = False
        self.finished = False
        self.channel = StreamChannel(self)
        self.body: Optional[StreamBody] = None
        if not end_stream and head.protocol is None:
            self.body = StreamBody(
                UNKNOWN_LENGTH if head.content_length is None else head.content_length,
                functools.partial(connection.acknowledge, stream_id),  # no cycle (see above)
            )
        self.producer = None
        self._pending: List[bytes] = []
        self._pending_bytes = 0
        self._producer_paused = False
        self._ending = False
        self._notify: List[Deferred] = []
        self._lost: Optional[Failure] = None

    # -- twisted.web's Request, the part the listener uses --------------------------

    def getHeader(self, name: bytes) -> Optional[bytes]:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        self.code = code
        if message is not None:
            self.code_message = message

    def getClientAddress(self):
        return self.connection.transport.getPeer()

    def getHost(self):
        return self.connection.transport.getHost()

    def isSecure(self) -> bool:
        return True

    def notifyFinish(self) -> Deferred:
        d = Deferred()
        if self.finished:
            d.callback(None)
        elif self._lost is not None:
            d.errback(self._lost)
        else:
            self._notify.append(d)
        return d

    def registerProducer(self, producer, streaming: bool) -> None:
        self.producer = producer
        self._producer_paused = False
        if self._pending:
            self._pause_producer()

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        if self.finished or self._lost is not None:
            return
        bodyless = not data or self.method == b"HEAD" or self.code in _BODYLESS
        if not self.startedWriting:
            self._send_headers(end_stream=False, flush=bodyless)
        if bodyless:
            return
        self.sentLength += len(data)
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.connection.send_stream_data(self)

    def finish(self) -> None:
        if self.finished or self._lost is not None:
            return
        self.finished = True
        if not self.startedWriting and not self.trailer_fields():
            self._send_headers(end_stream=True)
        else:
            if not self.startedWriting:
                self._send_headers(end_stream=False)
            self._ending = True
            self.connection.send_stream_data(self)
        notify, self._notify = self._notify, []
        for d in notify:
            d.callback(None)

    # -- driven by the connection -------------------------------------------------------

    def process(self, resource) -> None:
        """Hand the request to ``resource`` (the listener's), answering what it returns."""
        self.responseHeaders.setRawHeaders(b"server", [SERVER])
        self.responseHeaders.setRawHeaders(b"date", [http_date()])
        body = resource.render(self)
        if not isinstance(body, bytes):
            return  # NOT_DONE_YET: the forwarder answers.
        if not self.responseHeaders.hasHeader(b"content-length"):
            self.setHeader(b"content-length", b"%d" % (len(body),))
        self.write(body)
        self.finish()

    def take_over(self, protocol) -> StreamTunnel:
        """Give an extended CONNECT's stream to ``protocol``: its transport is the tunnel."""
        tunnel = self.tunnel = StreamTunnel(self, protocol)
        protocol.makeConnection(tunnel)
        return tunnel

    def _send_headers(self, end_stream: bool, flush: bool = True) -> None:
        self.startedWriting = True
        headers = [(b":status", b"%d" % (self.code,))]
        for name, values in self.responseHeaders.getAllRawHeaders():
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            headers.extend((lower, value) for value in values)
        self.connection.send_stream_headers(self, headers, end_stream, flush)

    def trailer_fields(self) -> list[tuple[bytes, bytes]]:
        """The response's trailers as HTTP/2 sends them (lower-case, no hop-by-hop field)."""
        if self.method == b"HEAD" or self.code in _BODYLESS:
            return []
        fields = [(name.lower(), value) for name, value in self.response_trailers]
        return [(name, value) for name, value in fields if name not in HOP_BY_HOP]

    def take_pending(self, allowed: int) -> tuple[bytes, bool]:
        """Up to ``allowed`` bytes of the response to send now, and whether the stream ends."""
        if not self._pending:
            return b"", self._ending
        data = self._pending[0]
        if len(data) <= allowed:
            self._pending.pop(0)
        else:
            data, self._pending[0] = data[:allowed], data[allowed:]
        self._pending_bytes -= len(data)
        return data, self._ending and not self._pending

    @property
    def has_data(self) -> bool:
        """Response bytes wait for the windows to open."""
        return bool(self._pending)

    @property
    def waiting(self) -> bool:
        """Response bytes (or its end) are waiting for the windows to open."""
        return bool(self._pending) or self._ending

    def window_shut(self) -> None:
        self._pause_producer()

    def window_open(self) -> None:
        if not self._pending and self._producer_paused and self.producer is not None:
            self._producer_paused = False
            self.producer.resumeProducing()

    def _pause_producer(self) -> None:
        if not self._producer_paused and self.producer is not None:
            self._producer_paused = True
            self.producer.pauseProducing()

    def reset(self) -> None:
        """End this stream at once (``INTERNAL_ERROR``): its response cannot be completed."""
        self.connection.reset_stream(self)

    def connection_lost(self, reason: Failure) -> None:
        """The client reset the stream or the connection ended before the response did."""
        if self.finished and not self._pending and self._lost is None:
            return
        self._lost = reason
        self._pending, self._pending_bytes = [], 0
        if self.body is not None and not self.body.complete:
            self.body.fail(ClientBodyLost("the client went away during the request body"))
        if self.tunnel is not None:
            self.tunnel.connection_lost(reason)
        notify, self._notify = self._notify, []
        for d in notify:
            d.errback(reason)
