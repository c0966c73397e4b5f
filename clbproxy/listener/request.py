"""One request on a listener connection: the part of twisted.web's ``Request`` the proxy uses.

:class:`~clbproxy.listener.connection.ListenerConnection` builds one
:class:`ListenerRequest` per request from the parser's
:class:`~clbproxy.http.parsing.RequestHead` and hands it to the listener's root
resource (``render(request)``), so routing, the forwarder, the WebSocket relay
(Autobahn's ``WebSocketResource`` included) and the access log read it as they
read a twisted.web request.  It is slotted and keeps only what they use; the
response is framed exactly as twisted.web frames it (chunked for an HTTP/1.1
response without ``Content-Length``, no body for HEAD, 204 and 304, a default
``Content-Type: text/html``), so what a client receives is unchanged.

A request with a body streams it through ``body``
(:class:`~clbproxy.http.server.RequestBody`); ``response_trailers`` are written
after the last chunk of a chunked response (dropped otherwise).
"""

from __future__ import annotations

import io
import time
from operator import itemgetter
from typing import Callable, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, datetimeToString
from twisted.web.http_headers import Headers

from clbproxy.http.field_headers import FieldHeaders, field_key
from clbproxy.http.server import ClientBodyLost, RequestBody
from clbproxy.http.tracecontext import NO_TRACE, TraceContext
from clbproxy.http.trailers import Field, trailer_section

log = Logger()

#: Statuses whose responses have no body (twisted.web's ``NO_BODY_CODES``).
NO_BODY_CODES = (204, 304)

#: What a response without its own ``Content-Type`` gets, as from twisted.web.
DEFAULT_CONTENT_TYPE = b"text/html"

#: The ``FieldHeaders`` keys the response's framing reads.
_CONTENT_TYPE = field_key(b"content-type")
_CONTENT_LENGTH = field_key(b"content-length")
_TRANSFER_ENCODING = field_key(b"transfer-encoding")

#: One field line, ``name: value``, from a ``(name, value)`` pair (C-level ``%``).
_field_line = b"%s: %s\r\n".__mod__
_first_value = itemgetter(0)
_is_one = (1).__eq__

_date_second = -1
_date_value = b""


def http_date() -> bytes:
    """The ``Date`` header's value for now, made once a second."""
    global _date_second, _date_value
    now = time.time()
    second = int(now)
    if second != _date_second:
        _date_value = datetimeToString(now)
        _date_second = second
    return _date_value


class ListenerRequest:
    """A request as the proxy's resources see it (see the module doc).

    ``channel`` is the :class:`~clbproxy.listener.connection.ListenerConnection`
    (None once the request is finished or its connection lost); ``transport``
    is the connection's transport when the request arrived, as on twisted.web.
    """

    __slots__ = (
        "channel",
        "transport",
        "client",
        "method",
        "uri",
        "path",
        "clientproto",
        "requestHeaders",
        "responseHeaders",
        "code",
        "code_message",
        "startedWriting",
        "chunked",
        "sentLength",
        "finished",
        "producer",
        "streamingProducer",
        "notifications",
        "_first",
        "_waiting",
        "body",
        "response_trailers",
        "request_id",
        "trace",
        "defaultContentType",
        "_content",
        "_disconnected",
        "_bodiless",
        "__weakref__",
    )

    def __init__(
        self,
        channel,
        method: bytes,
        uri: bytes,
        clientproto: bytes,
        headers: Headers,
    ) -> None:
        self.channel = channel
        self.transport = channel.transport
        #: The client's address, as the request came (twisted.web's ``client``).
        self.client = channel.peer
        self.method = method
        self.uri = uri
        self.path = uri.partition(b"?")[0]
        self.clientproto = clientproto
        self.requestHeaders = headers
        self.responseHeaders = FieldHeaders()
        self.code = 200
        self.code_message = b"OK"
        self.startedWriting = 0
        self.chunked = 0
        self.sentLength = 0
        self.finished = 0
        self.producer = None
        self.streamingProducer = None
        #: Deferreds (``notifyFinish``) and ``(callback, on finish too)`` pairs.
        self.notifications: List[object] = []
        #: An ``on_finish`` callback asked before any other waiter (the access
        #: record's, most often): told first, kept out of ``notifications``.
        self._first: Optional[Callable[[Optional[Failure]], object]] = None
        #: How many of ``notifications`` are told at the finish (not ``on_lost`` ones).
        self._waiting = 0
        self.body: Optional[RequestBody] = None
        self.response_trailers: Sequence[Field] = ()
        #: The request's ID, once the listener named it (:mod:`clbproxy.http.request_id`).
        self.request_id: Optional[str] = None
        #: Its W3C trace context, once the listener read it (:mod:`clbproxy.http.tracecontext`).
        self.trace: TraceContext = NO_TRACE
        self.defaultContentType: Optional[bytes] = DEFAULT_CONTENT_TYPE
        self._content: Optional[io.BytesIO] = None
        self._disconnected = False
        self._bodiless = False

    def __repr__(self) -> str:
        return (
            f"<ListenerRequest at 0x{id(self):x} method={self.method.decode('latin-1')}"
            f" uri={self.uri.decode('latin-1')} clientproto={self.clientproto.decode('latin-1')}>"
        )

    # -- what the request says ------------------------------------------------------------

    @property
    def content(self) -> io.BytesIO:
        """The buffered body: always empty, since a body streams through ``body``.

        Autobahn's resource replays it after the head; the forwarder and the
        access log read it for a request that has no streamed body.
        """
        content = self._content
        if content is None:
            content = self._content = io.BytesIO()
        return content

    def getHeader(self, key: bytes) -> Optional[bytes]:
        values = self.requestHeaders.getRawHeaders(key)
        return values[-1] if values is not None else None

    def getClientAddress(self):
        return self.client

    def getHost(self):
        channel = self.channel
        if channel is not None and channel.transport is not None:
            return channel.host
        transport = self.transport
        return transport.getHost() if transport is not None else None

    def isSecure(self) -> bool:
        return ISSLTransport(self.transport, None) is not None

    # -- the response -----------------------------------------------------------------------

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        self.code = code
        if message is None:
            message = RESPONSES.get(code, b"Unknown Status")
        self.code_message = message

    def setHeader(self, name, value) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def notifyFinish(self) -> Deferred:
        d: Deferred = Deferred()
        self.notifications.append(d)
        self._waiting += 1
        return d

    def on_finish(self, callback: Callable[[Optional[Failure]], object]) -> None:
        """``callback(None)`` when the response ends, ``callback(failure)`` if the client leaves.

        ``notifyFinish().addBoth(callback)`` without a Deferred per request: the
        access log and the forwarder wait on every request.  Callbacks and
        Deferreds are told in the order they asked; an exception is logged, as an
        unhandled Deferred error would be.
        """
        if self._first is None and not self.notifications:
            self._first = callback  # no tuple, no loop at the finish
        else:
            self.notifications.append((callback, True))
            self._waiting += 1

    def on_lost(self, callback: Callable[[Failure], object]) -> None:
        """``notifyFinish().addErrback(callback)``: called only if the client leaves first."""
        self.notifications.append((callback, False))

    def registerProducer(self, producer, streaming: bool) -> None:
        if self.producer:
            raise ValueError(
                f"registering producer {producer} before previous one ({self.producer})"
                " was unregistered"
            )
        self.streamingProducer = streaming
        self.producer = producer
        self.channel.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        channel = self.channel
        if channel is not None:
            channel.unregisterProducer()
        self.producer = None

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("Request.write called on a request after Request.finish was called.")
        if self._disconnected:
            return
        channel = self.channel
        if not self.startedWriting:
            body = self.body
            if body is not None and not body.complete:
                # The response starts before the body is in: nothing after this
                # request on the connection can be trusted to be framed right.
                channel.persistent = False
            head = self._head(channel)
            if self._bodiless:
                channel.send(head)
                return
        elif self._bodiless:
            return
        else:
            head = b""
        self.sentLength += len(data)
        # The head goes out with the first data, in one write (one send, most often).
        if data:
            if self.chunked:
                channel.send(b"".join((head, b"%x\r\n" % len(data), data, b"\r\n")))
            else:
                channel.send(head + data if head else data)
        elif head:
            channel.send(head)

    def _head(self, channel) -> bytes:
        """The response head's bytes (framing decided: chunked or not, bodiless or not).

        The response's ``FieldHeaders`` (every listener response's, unless a
        resource replaced them) are read in their dict: the same decisions, in
        the same order, as ``hasHeader``/``getRawHeaders`` make them in
        :meth:`_any_head` (a name held with no value counts as held, and as no
        length), without a call per question.
        """
        self.startedWriting = 1
        headers = self.responseHeaders
        if type(headers) is not FieldHeaders:
            return self._any_head(headers)
        raw = headers.grouped()
        code = self.code
        bodiless = code in NO_BODY_CODES
        if not bodiless and self.defaultContentType is not None and _CONTENT_TYPE not in raw:
            length = raw.get(_CONTENT_LENGTH)
            if not (length and length[0] == b"0"):
                headers.setRawHeaders(b"Content-Type", [self.defaultContentType])
        if self.method == b"HEAD":
            bodiless = True
        elif not bodiless and self.clientproto == b"HTTP/1.1" and _CONTENT_LENGTH not in raw:
            raw[_TRANSFER_ENCODING] = [b"chunked"]
            self.chunked = 1
        if bodiless:
            self._bodiless = True
        held = raw.values()
        if all(map(_is_one, map(len, held))):  # one value a name (most responses): lines in C
            fields = b"".join(map(_field_line, zip(raw, map(_first_value, held))))
        else:
            fields = b"".join(
                [b"%s: %s\r\n" % (name, value) for name, values in raw.items() for value in values]
            )
        return b"%s %d %s\r\n%s\r\n" % (self.clientproto, code, self.code_message, fields)

    def _any_head(self, headers: Headers) -> bytes:
        """:meth:`_head` for response headers of any ``Headers`` class (through its methods)."""
        code = self.code
        if (
            code not in NO_BODY_CODES
            and self.defaultContentType is not None
            and not headers.hasHeader(b"content-type")
        ):
            length = headers.getRawHeaders(b"content-length")
            if not (length and length[0] == b"0"):
                headers.setRawHeaders(b"Content-Type", [self.defaultContentType])
        head = self.method == b"HEAD"
        if (
            self.clientproto == b"HTTP/1.1"
            and not headers.hasHeader(b"content-length")
            and not head
            and code not in NO_BODY_CODES
        ):
            headers.setRawHeaders(b"Transfer-Encoding", [b"chunked"])
            self.chunked = 1
        if head or code in NO_BODY_CODES:
            self._bodiless = True
        fields = [
            b"%s: %s\r\n" % (name, value)
            for name, values in headers.getAllRawHeaders()
            for value in values
        ]
        return b"%s %d %s\r\n%s\r\n" % (self.clientproto, code, self.code_message, b"".join(fields))

    def finish(self) -> None:
        channel = self.channel
        body = self.body
        if body is not None and not body.complete and channel is not None:
            channel.persistent = False
            channel.discard_input()
        if self.response_trailers and not self.finished and not self._disconnected:
            if not self.startedWriting:
                self.write(b"")
            if self.chunked:
                channel.send(trailer_section(self.response_trailers))
                self.chunked = 0  # the last chunk is written
        if self._disconnected:
            raise RuntimeError(
                "Request.finish called on a request after its connection was lost; "
                "use Request.notifyFinish to keep track of this."
            )
        if self.finished:
            log.warn("Warning! request.finish called twice.")
            return
        if not self.startedWriting:
            self.write(b"")
        if self.chunked:
            channel.send(b"0\r\n\r\n")
        self.finished = 1
        if self.producer:
            log.failure(
                "", Failure(RuntimeError(f"Producer was not unregistered for {self.uri!r}"))
            )
            self.unregisterProducer()
        self.channel = None
        channel.request_done(self)
        first = self._first
        if first is not None:
            self._first = None
            try:  # _tell(first, None), inline: once per request
                first(None)
            except Exception:
                log.failure("while telling {callback!r} the request ended", callback=first)
        if self._waiting:
            self._notify(None)
        else:
            self.notifications = []  # on_lost callbacks only: none is told

    def connectionLost(self, reason: Failure) -> None:
        """The client's connection is gone: fail the body still arriving and the waiters."""
        body = self.body
        if body is not None and not body.complete:
            body.fail(ClientBodyLost("the client went away during the request body"))
        self._disconnected = True
        self.channel = None
        first = self._first
        if first is not None:
            self._first = None
            _tell(first, reason)
        notifications, self.notifications = self.notifications, []
        for d in notifications:
            if type(d) is tuple:
                _tell(d[0], reason)
            else:
                d.errback(reason)

    def _notify(self, result: None) -> None:
        notifications, self.notifications = self.notifications, []
        self._waiting = 0
        for d in notifications:
            if type(d) is tuple:
                if d[1]:
                    _tell(d[0], result)
            else:
                d.callback(result)


def _tell(callback: Callable[[Optional[Failure]], object], result: Optional[Failure]) -> None:
    try:
        callback(result)
    except Exception:
        log.failure("while telling {callback!r} the request ended", callback=callback)


#: What builds a request: ``(channel, method, uri, clientproto, headers)``.
RequestFactory = Callable[..., ListenerRequest]
