"""Sans-IO HTTP/1.1 parsers for the lean listener connection and backend client.

Bytes go in (``feed``), a handler's methods are called back: a request parser
calls ``request_head(head)``, ``body_data(data)``, ``message_complete(trailers)``
or ``parse_error(status, detail)`` (:class:`RequestHandler`); a response parser
also calls ``interim(status, fields)`` for a ``1xx`` (:class:`ResponseHandler`).
There is one head object per message and nothing per field but the
``(name, value)`` pair.

Two back ends implement each interface (:class:`IRequestParser`,
:class:`IResponseParser`): :mod:`clbproxy.http.parse_httptools` (llhttp, C) on
CPython and :mod:`clbproxy.http.parse_h11` (pure Python, JIT-compiled on PyPy);
:mod:`clbproxy.http.parsers` chooses.  A back end only splits a field section
into fields; everything else is here and shared, so both behave the same:

- the strictness is exactly the listener's (:mod:`clbproxy.http.parse_rules`):
  an ordinary head that arrives whole has its request line read here and its
  fields split by the back end (which refuses NUL, bare CR or LF and obs-fold);
  anything unusual, or a head that arrives in pieces, is replayed line by line
  as the listener reads it
  (:class:`~clbproxy.http.parse_rules.ExactHead`), which gives the listener's
  status and reason.  llhttp and h11 refuse what the listener accepts (``get``,
  ``PURGE``, ``HTTP/1.2``, control bytes in values) and accept what it refuses
  (bare LF, obs-fold, 64-bit chunk sizes), so neither decides alone;
- framing is ours: ``Content-Length`` bodies, chunked bodies
  (:class:`~clbproxy.http.parse_rules.ChunkedBody`), bodies until the backend
  closes.  That is what lets a parser stop at a message's end: after
  ``message_complete`` it is paused and reads the next message only once
  ``resume()`` is called (pipelining: the response to the previous request
  is done); a paused parser keeps what it is fed and calls nobody;
- an upgrade (``Upgrade`` with ``Connection: upgrade``; a ``101`` response)
  is a message like any other (its body, if it has one, is read first, as RFC
  9110 7.8 says), so the parser is paused after it: ``detach()`` then hands
  back the bytes after it untouched for the new protocol, or ``resume()``
  reads on when the upgrade was refused.  CONNECT is refused (501) as today.

A streamed request body's size limit is the connection's to enforce (it
answers 413 or aborts, depending on whether its response has begun);
``body_received`` is the running count.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from twisted.web.http_headers import InvalidHeaderName
from zope.interface import Attribute, Interface

from clbproxy.http.field_headers import field_key, known_key
from clbproxy.http.parse_rules import (
    GOOD_HOSTS,
    MAX_FIELDS,
    SPECIAL,
    ChunkedBody,
    ExactHead,
    Field,
    Refused,
    connection_tokens,
    host_rules,
    max_line,
    request_line,
    split_fields,
    unusual_bytes,
)
from clbproxy.http.response_head import (
    CONNECTION_VALUES,
    CONTENT_LENGTH,
    FRAMING_KINDS,
    STATUS_LINES,
    TRANSFER_ENCODING,
    ResponseHead,
    connection_says,
    framing_kind,
    status_line,
)
from clbproxy.http.server import HTTPLimits

__all__ = [
    "Field",
    "HTTPLimits",
    "IRequestParser",
    "IResponseParser",
    "RequestHandler",
    "RequestHead",
    "RequestParser",
    "ResponseHandler",
    "ResponseHead",
    "ResponseParser",
]

#: The largest response head a backend may send (status line and fields).
MAX_RESPONSE_HEAD = 64 * 1024


class RequestHead:
    """A request's line and fields, and the framing the parser derived from them.

    ``method`` and ``target`` are as sent (an absolute-form target is made
    origin-form, its authority put in ``Host``, as RFC 9112 3.2.2 says);
    ``version`` is ``b"1.0"`` or ``b"1.1"`` (a later 1.x minor reads as 1.1);
    ``headers`` are ``(name, value)`` pairs in order, names as received, values
    without surrounding whitespace; ``host`` is the Host value every later step
    uses (None: an HTTP/1.0 request without one); ``connection`` the values of
    its ``Connection`` fields, in order; ``grouped`` the ``headers`` as
    :meth:`~clbproxy.http.field_headers.FieldHeaders.from_pairs` groups them (for
    :meth:`~clbproxy.http.field_headers.FieldHeaders.from_grouped`; None: not made).
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "host",
        "content_length",
        "chunked",
        "keep_alive",
        "upgrade",
        "expect_continue",
        "connection",
        "grouped",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: List[Field],
        host: Optional[bytes],
        content_length: Optional[int],
        chunked: bool,
        keep_alive: bool,
        upgrade: bool,
        expect_continue: bool,
        connection: Sequence[bytes] = (),
        grouped: Optional[Dict[bytes, List[bytes]]] = None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.host = host
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.expect_continue = expect_continue
        self.connection = connection
        self.grouped = grouped

    def __repr__(self) -> str:
        return f"<RequestHead {self.method!r} {self.target!r} HTTP/{self.version.decode()}>"


class RequestHandler(Protocol):
    """What a request parser calls back (a listener connection)."""

    def request_head(self, head: RequestHead) -> None: ...

    def body_data(self, data: bytes) -> None: ...

    def message_complete(self, trailers: List[Field]) -> None: ...

    def parse_error(self, status: int, detail: str) -> None: ...


class ResponseHandler(Protocol):
    """What a response parser calls back (a backend client connection)."""

    def interim(self, status: int, headers: List[Field]) -> None: ...

    def response_head(self, head: ResponseHead) -> None: ...

    def body_data(self, data: bytes) -> None: ...

    def message_complete(self, trailers: List[Field]) -> None: ...

    def parse_error(self, status: int, detail: str) -> None: ...


class IRequestParser(Interface):
    """Frames the requests of one client connection (see the module doc)."""

    body_received = Attribute("Body bytes of the current request delivered so far.")
    backend = Attribute("The back end's name: 'httptools' or 'h11'.")

    def feed(data: bytes) -> None:
        """Bytes from the client; callbacks follow unless the parser is paused."""

    def pause() -> None:
        """Call nobody back until ``resume()``; what is fed meanwhile is kept."""

    def resume() -> None:
        """Go on: after a ``pause()``, or after ``message_complete`` (the next request)."""

    def detach() -> bytes:
        """Stop for good; the bytes fed but not parsed (after an upgrade: the new protocol's)."""


class IResponseParser(Interface):
    """Frames the responses of one backend connection (see the module doc)."""

    body_received = Attribute("Body bytes of the current response delivered so far.")
    backend = Attribute("The back end's name: 'httptools' or 'h11'.")
    buffered = Attribute("Bytes fed but not parsed (after a complete response: a broken backend).")
    response_read = Attribute(
        "While in response_head: the rest of that response (its body, or that it has none)"
        " is read already, so it all comes before response_head returns."
    )

    def feed(data: bytes) -> None:
        """Bytes from the backend; callbacks follow unless the parser is paused."""

    def pause() -> None:
        """Call nobody back until ``resume()``; what is fed meanwhile is kept."""

    def resume() -> None:
        """Go on after a ``pause()``."""

    def next_response(method: bytes) -> None:
        """Read the response to the next request, sent with ``method`` (HEAD has no body)."""

    def eof() -> None:
        """The backend closed: completes a body read until close, else ``parse_error``."""

    def detach() -> bytes:
        """Stop for good; the bytes fed but not parsed (after a ``101``, the new protocol's)."""


_HEAD, _BODY, _CHUNKED, _UNTIL_CLOSE, _STOPPED = range(5)


class _Parser:
    """Buffering, pausing and body framing shared by requests and responses."""

    backend = "?"
    _request = True
    #: What was unparsed when the parser refused (the refused head, or body bytes).
    refused = b""

    def __init__(self) -> None:
        self._buffer = b""
        self._state = _HEAD
        self._paused = False
        self._running = False
        self._remaining = 0
        self._chunked: Optional[ChunkedBody] = None
        #: The trailers of a chunked body that just ended (see _run).
        self._ended: Optional[List[Field]] = None
        self.body_received = 0

    @property
    def buffered(self) -> bytes:
        return self._buffer

    def feed(self, data: bytes) -> None:
        if self._state == _STOPPED:
            return
        if self._buffer:
            self._buffer += data
        else:
            self._buffer = data
        if not self._paused and not self._running:
            self._run()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if not self._running and self._state != _STOPPED:
            self._run()

    def detach(self) -> bytes:
        data, self._buffer = self._buffer, b""
        self._state = _STOPPED
        return data

    def _is_paused(self) -> bool:
        return self._paused

    def _run(self) -> None:
        self._running = True
        try:
            while not self._paused:
                state = self._state
                if state == _HEAD:
                    if not self._buffer or not self._head():
                        return
                elif state == _BODY:
                    if not self._buffer:
                        return
                    self._body()
                elif state == _CHUNKED:
                    if not self._buffer:
                        return
                    try:
                        taken = self._chunked.feed(self._buffer, self._is_paused)
                    except Refused as e:
                        self._fail(e.status, e.detail)
                        return
                    if self._state == _STOPPED:
                        return
                    self._buffer = self._buffer[taken:]
                    ended, self._ended = self._ended, None
                    if ended is not None:
                        # Complete once the buffer holds only what follows the
                        # message: the handler may look (a connection's reuse).
                        self._complete(ended)
                    elif not taken:
                        return
                elif state == _UNTIL_CLOSE:
                    if not self._buffer:
                        return
                    data, self._buffer = self._buffer, b""
                    self.body_received += len(data)
                    self._handler.body_data(data)
                else:
                    return
        finally:
            self._running = False

    def _body(self) -> None:
        buffer = self._buffer
        take = min(self._remaining, len(buffer))
        if take == len(buffer):
            data, self._buffer = buffer, b""
        else:
            data, self._buffer = buffer[:take], buffer[take:]
        self._remaining -= take
        self.body_received += take
        self._handler.body_data(data)
        if not self._remaining and self._state == _BODY:
            self._complete([])

    def _start_body(self, content_length: Optional[int], chunked: bool, max_trailer: int) -> None:
        if chunked:
            self._chunked = ChunkedBody(
                self._chunk_data, self._chunked_end, max_trailer, self._request
            )
            self._state = _CHUNKED
        elif content_length:
            self._remaining = content_length
            self._state = _BODY
        else:
            self._complete([])

    def _chunked_end(self, trailers: List[Field]) -> None:
        self._ended = trailers

    def _chunk_data(self, data: bytes) -> None:
        self.body_received += len(data)
        self._handler.body_data(data)

    def _complete(self, trailers: List[Field]) -> None:
        self._state = _HEAD
        self._chunked = None
        self._paused = True
        self._handler.message_complete(trailers)

    def _fail(self, status: int, detail: str) -> None:
        self._state = _STOPPED
        self.refused, self._buffer = self._buffer, b""
        self._handler.parse_error(status, detail)

    def _fields(self, block: bytes) -> Optional[Tuple[List[Field], List[Field]]]:
        """The back end's split of a field block (CRLF-separated lines), None if it refuses.

        ``(fields, specials)``: every field, values stripped, and those named in
        :data:`~clbproxy.http.parse_rules.SPECIAL` as ``(lower-case name, value)``.
        A back end refuses NUL, bare CR or LF and obs-fold, besides its own rules.
        """
        raise NotImplementedError


class RequestParser(_Parser):
    """The request side, less the back end's :attr:`_split` (see the module doc)."""

    #: The back end's split of a field block: its fields, values stripped, or None if it
    #: refuses (NUL, bare CR or LF, obs-fold, besides its own rules).
    _split: Callable[[bytes], Optional[List[Field]]]

    def __init__(self, handler: RequestHandler, limits: HTTPLimits) -> None:
        super().__init__()
        self._handler = handler
        self._limits = limits
        self._max_line = max_line(limits)
        self._exact: Optional[ExactHead] = None
        self._scanned = 0

    def resume(self) -> None:
        if self._buffer or self._state != _HEAD:
            super().resume()
        else:
            self._paused = False  # nothing to read: the next feed reads the next request

    def _head(self) -> bool:
        buffer = self._buffer
        head = None
        if self._exact is None and not buffer.startswith(b"\r\n"):
            scanned = self._scanned
            end = buffer.find(b"\r\n\r\n", scanned - 3 if scanned > 3 else 0)
            if end == -1:
                self._scanned = len(buffer)
                first = buffer.find(b"\r\n", scanned - 1 if scanned else 0)
                if first == -1 and len(buffer) < self._max_line + 2:
                    return False
            elif end <= self._limits.max_header_size:
                head = self._fast(buffer, end)
                consumed = end + 4
        if head is None:
            if self._exact is None:
                self._exact = ExactHead(self._limits)
            try:
                result = self._exact.feed(buffer)
                if result is None:
                    return False
                method, target, version, fields, framing, consumed = result
                target, host, fields = host_rules(version, target, fields, framing.hosts)
            except Refused as e:
                self._fail(e.status, e.detail)
                return False
            head = _request_head(
                method,
                target,
                version,
                fields,
                host,
                framing.content_length,
                framing.chunked,
                framing.connection,
                framing.upgrade,
                framing.expect,
                _grouped(fields),
            )
        self._buffer = buffer[consumed:]
        self._exact = None
        self._scanned = 0
        self.body_received = 0
        self._handler.request_head(head)
        if self._state != _HEAD:
            return False
        if head.chunked or head.content_length:
            self._start_body(head.content_length, head.chunked, self._limits.max_header_size)
        else:
            self._paused = True  # _complete([]): the state is _HEAD, no chunked body
            self._handler.message_complete([])
        return True

    def _fast(self, buffer: bytes, end: int) -> Optional[RequestHead]:
        """The head ending at ``end`` when it is ordinary, else None (see the module doc).

        One walk of the fields finds the framing and Host fields (the
        :data:`~clbproxy.http.parse_rules.SPECIAL` names); anything unusual is
        left to :class:`~clbproxy.http.parse_rules.ExactHead`, which gives the
        listener's verdict, so nothing here refuses.
        """
        eol = buffer.find(b"\r\n", 0, end)
        if eol == -1:
            eol = end
        if eol > self._limits.max_request_line:
            return None
        parsed = request_line(buffer[:eol])
        if parsed is None:
            return None
        if eol == end:
            fields: List[Field] = []
        else:
            fields = self._split(buffer[eol + 2 : end])
            if fields is None or len(fields) > MAX_FIELDS:
                return None
        hosts = []
        connection = []
        content_length = None
        chunked = upgrade = False
        expect = None
        # The fields grouped by canonical name on the way (the request's headers
        # are made of them), the special ones found by that name.
        grouped: Dict[bytes, List[bytes]] = {}
        for name, value in fields:
            key = known_key(name)
            if key is None:
                try:
                    key = field_key(name)
                except InvalidHeaderName:
                    return None  # (no back end lets one through) the replay's verdict
            if key in grouped:
                grouped[key].append(value)
            else:
                grouped[key] = [value]
            special = _SPECIAL_KEYS.get(key)
            if special is None:
                continue
            if special == b"host":
                hosts.append(value)
            elif special == b"connection":
                connection.append(value)
            elif special == b"content-length":
                if content_length is not None or chunked or not value.isdigit():
                    return None
                content_length = int(value)
            elif special == b"transfer-encoding":
                if chunked or content_length is not None or value.lower() != b"chunked":
                    return None
                chunked = True
            elif special == b"upgrade":
                upgrade = True
            elif expect is None:
                expect = value
        limit = self._limits.max_body_size
        if limit and content_length is not None and content_length > limit:
            return None
        method, target, version = parsed
        if len(hosts) == 1 and target[:1] == b"/" and hosts[0] in GOOD_HOSTS:
            host: Optional[bytes] = hosts[0]  # host_rules' first answer, without the call
        else:
            try:
                target, host, checked = host_rules(version, target, fields, hosts)
            except Refused:
                return None
            if checked is not fields:  # Host taken from an absolute-form target
                fields, grouped = checked, _grouped(checked)
        return _request_head(
            method,
            target,
            version,
            fields,
            host,
            content_length,
            chunked,
            connection,
            upgrade,
            expect,
            grouped,
        )


def _grouped(fields: List[Field]) -> Dict[bytes, List[bytes]]:
    """``fields`` of a checked head (tokens for names, no CR or LF in a value) by canonical name.

    As :meth:`~clbproxy.http.field_headers.FieldHeaders.from_pairs` groups them.
    """
    grouped: Dict[bytes, List[bytes]] = {}
    for name, value in fields:
        key = known_key(name) or field_key(name)
        if key in grouped:
            grouped[key].append(value)
        else:
            grouped[key] = [value]
    return grouped


#: The canonical names (:func:`~clbproxy.http.field_headers.field_key`) of the
#: fields that frame or route a request, to their lower-case names.
_SPECIAL_KEYS = {field_key(name): name for name in SPECIAL.values()}


#: The tokens of the ``Connection`` values lately seen alone (a client sends the same one).
_CONNECTION: Dict[bytes, frozenset] = {}


def _request_head(
    method: bytes,
    target: bytes,
    version: bytes,
    fields: List[Field],
    host: Optional[bytes],
    content_length: Optional[int],
    chunked: bool,
    connection: List[bytes],
    upgrade: bool,
    expect: Optional[bytes],
    grouped: Optional[Dict[bytes, List[bytes]]] = None,
) -> RequestHead:
    """The :class:`RequestHead` of a head read and checked, its persistence worked out."""
    if connection:
        one = len(connection) == 1
        tokens = _CONNECTION.get(connection[0]) if one else None
        if tokens is None:
            tokens = frozenset(connection_tokens(connection))
            if one and len(connection[0]) <= 64 and len(_CONNECTION) < 256:
                _CONNECTION[connection[0]] = tokens
        close = b"close" in tokens
        keep_alive = not close if version == b"1.1" else b"keep-alive" in tokens and not close
        upgrade = upgrade and b"upgrade" in tokens
    else:
        keep_alive = version == b"1.1"
        upgrade = False
    return RequestHead(
        method,
        target,
        version,
        fields,
        host,
        content_length,
        chunked,
        keep_alive,
        upgrade,
        expect is not None and version == b"1.1" and expect.lower() == b"100-continue",
        connection,
        grouped,
    )


class ResponseParser(_Parser):
    """The response side, less the back end's :meth:`_fields` (see the module doc)."""

    _request = False

    def __init__(
        self,
        handler: ResponseHandler,
        method: bytes = b"GET",
        max_head_size: int = MAX_RESPONSE_HEAD,
    ) -> None:
        super().__init__()
        self._handler = handler
        self._method = method
        self._max_head = max_head_size
        self._scanned = 0
        self._eof = False
        self._idle = False
        self.response_read = False

    def next_response(self, method: bytes) -> None:
        self._method = method
        self._idle = False
        if self._buffer or self._eof:
            self.resume()
        else:
            self._paused = False  # nothing to read yet (most often): resume() would find that

    def _complete(self, trailers: List[Field]) -> None:
        # _Parser._complete, with _idle: one call per response, not two.
        self._idle = True
        self._state = _HEAD
        self._chunked = None
        self._paused = True
        self._handler.message_complete(trailers)

    def eof(self) -> None:
        self._eof = True
        if not self._paused and not self._running:
            self._closed()

    def resume(self) -> None:
        super().resume()
        if self._eof and not self._paused and not self._running:
            self._closed()

    def _closed(self) -> None:
        """The backend has closed and everything it sent is parsed."""
        self._eof = False
        if self._state == _UNTIL_CLOSE:
            self._complete([])
        elif self._state in (_BODY, _CHUNKED) or (self._buffer and not self._idle):
            self._fail(502, "the backend closed the connection in the middle of a response")

    def _error(self, detail: str) -> bool:
        self._fail(502, detail)
        return False

    def _head(self) -> bool:
        buffer = self._buffer
        scanned = self._scanned
        end = buffer.find(b"\r\n\r\n", scanned - 3 if scanned > 3 else 0)
        if end == -1:
            self._scanned = len(buffer)
            if len(buffer) > self._max_head:
                return self._error(f"the response head is larger than {self._max_head} bytes")
            return False
        self._scanned = 0
        head = buffer[:end]
        if end > self._max_head:
            return self._error(f"the response head is larger than {self._max_head} bytes")
        line, _, block = head.partition(b"\r\n")
        known = STATUS_LINES.get(line)
        if known is None:
            known = status_line(line)
            if type(known) is str:
                return self._error(known)
        status, reason, version = known
        split = self._fields(block)
        if split is not None:
            fields = split[0]
        else:
            if unusual_bytes(block):
                return self._error("a bare CR or LF, a NUL or obs-fold in the response head")
            fields = split_fields(block)
            if fields is None:
                return self._error("a malformed response header field")
        self._buffer = buffer[end + 4 :]
        if status < 200 and status != 101:
            self._handler.interim(status, fields)
            return self._state == _HEAD
        return self._final(status, reason, version, fields)

    def _final(self, status: int, reason: bytes, version: bytes, fields: List[Field]) -> bool:
        content_length = None
        chunked = False
        connection: List[bytes] = []
        kinds = FRAMING_KINDS
        for name, value in fields:
            kind = kinds.get(name)
            if kind is None:
                kind = framing_kind(name)
            if not kind:
                continue
            if kind == CONTENT_LENGTH:
                if content_length is not None or not value.isdigit():
                    return self._error("a repeated or invalid Content-Length")
                content_length = int(value)
            elif kind == TRANSFER_ENCODING:
                if chunked or value.lower() != b"chunked":
                    return self._error("a Transfer-Encoding other than chunked")
                chunked = True
            else:
                connection.append(value)
        if chunked and content_length is not None:
            return self._error("Content-Length with Transfer-Encoding")
        if connection:
            said = CONNECTION_VALUES.get(connection[0]) if len(connection) == 1 else None
            close, alive = said if said is not None else connection_says(connection)
            keep_alive = not close and (version == b"1.1" or alive)
        else:
            keep_alive = version == b"1.1"
        no_body = status in (101, 204, 304) or self._method == b"HEAD"
        if no_body:
            content_length, chunked = None, False
        until_close = not no_body and not chunked and content_length is None
        buffer = self._buffer
        self.response_read = no_body or (
            content_length is not None and len(buffer) >= content_length
        )
        head = ResponseHead(
            status,
            reason,
            version,
            fields,
            content_length,
            chunked,
            until_close,
            keep_alive and not until_close,
            status == 101,
        )
        self.body_received = 0
        self._handler.response_head(head)
        if self._state != _HEAD:
            return False
        if until_close:
            self._state = _UNTIL_CLOSE
            return True
        buffer = self._buffer
        if content_length and self.response_read and not self._paused:
            # The whole body is here (most responses): what _body does, at once.
            if len(buffer) == content_length:
                data, self._buffer = buffer, b""
            else:
                data, self._buffer = buffer[:content_length], buffer[content_length:]
            self._state = _BODY
            self.body_received = content_length
            self._handler.body_data(data)
            if self._state == _BODY:
                self._complete([])
            return True
        self._start_body(content_length, chunked, self._max_head)
        return True
