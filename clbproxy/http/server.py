"""twisted.web's HTTP/1.1 parser, stricter and streaming: the listener's rules, as reference.

A listener's connections no longer use :class:`ProxyChannel`: they frame
requests with the sans-IO parser (:mod:`clbproxy.http.parsing`, in
:class:`clbproxy.listener.connection.ListenerConnection`), which is tested to
accept and refuse exactly what :class:`ProxyChannel` does
(``tests/unit/http/test_parsing_parity.py``).  What both share lives here: the
limits (:class:`HTTPLimits`), the Host rules (:func:`request_host`), the
streamed body (:class:`RequestBody`) and ``SERVER``.  The rules, as
:class:`ProxyChannel` applies them:

:class:`ProxyChannel` adds to ``HTTPChannel`` what a proxy in front of other
HTTP parsers needs (request smuggling defences) and the limits of a cloud
balancer, each answered with its own status and a clean page:

- request line longer than ``max_request_line``: 414; header section larger
  than ``max_header_size``: 431; declared or streamed body larger than
  ``max_body_size``: 413 (a declared one before ``100 Continue`` is sent);
- obs-fold (a header line starting with a space or tab), a CR inside a line,
  a ``Transfer-Encoding`` other than exactly ``chunked``, a request target with a
  byte outside visible ASCII (a control character, DEL, raw UTF-8): 400;
- more than 500 header fields (twisted.web's ``maxHeaders``): 431;
- a major HTTP version other than 1: 505 (a later 1.x minor is read as 1.1);
  CONNECT: 501; a chunk size over 2^63-1 or a malformed chunk size line: 400;
- a chunked body's trailer section that breaks the same rules (or is not
  ``name: value``), or is larger than ``max_header_size``: 400.  Well-formed
  trailers are kept on the :class:`RequestBody` for the backend;
- a request target with a fragment (``#``; RFC 9112 3.2 has none): 400, as
  nginx and HAProxy answer, so the path that is routed is the path the backend
  receives;
- more than one ``Host`` header, none in an HTTP/1.1 request (RFC 9112
  3.2), or one that is not a valid ``host[:port]`` (RFC 9110 7.2, RFC 3986 3.2.2:
  :func:`valid_authority`; empty, ``a:80:80``, ``a, b``, ``a/b``, ``a@b``): 400,
  for upgrades too.  An absolute-form target (``GET http://a.test/x``) is read as RFC
  9112 3.2.2 says: its authority replaces the Host header and the target becomes
  origin-form (``/x``), so routing, access lists, logs and the backend all see
  one host (:func:`request_host`).

``Expect: 100-continue`` is answered only once the request is going to a
backend (its body is being sent on), so a request refused, redirected or
answered by the proxy itself gets its final status without the client sending
its body first.

twisted.web already answers 400 (and closes) for: Content-Length together with
Transfer-Encoding, a repeated or non-numeric Content-Length, a header name that
is not a token, NUL/CR/LF in a value, a malformed chunk size or chunk end; we
replace its bare ``400`` with the same page as every other error.

:class:`ProxyRequest` streams request bodies: twisted.web buffers a body whole
before ``render``; here the request is dispatched as soon as its headers are
in, and the body is handed to the forwarder as an ``IBodyProducer``
(:class:`RequestBody`) that pauses reading from the client while the backend
cannot take more.
"""

from __future__ import annotations

import io
import ipaddress
import re
import sys
from typing import Callable, List, Optional, Sequence
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.web import server as _twisted_server
from twisted.web.http import HTTPChannel, _ChunkedTransferDecoder, _MalformedChunkedDataError
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.server import Request, Site
from zope.interface import implementer

from clbproxy.http.request_id import OFF, RequestIds, new_request_id
from clbproxy.http.responses import negotiated_error, raw_response
from clbproxy.http.tracecontext import NO_TRACE, TraceContext
from clbproxy.http.trailers import (
    Field,
    TrailerError,
    forwardable,
    parse_trailer_lines,
    trailer_section,
)
from clbproxy.util.logtext import printable

log = Logger()

#: What a request target may be made of (RFC 3986's characters, visible ASCII):
#: HAProxy's default; twisted.web's client refuses anything else towards a backend.
_URI_CHARACTERS = re.compile(rb"\A[\x21-\x7e]+\Z")

#: An ``HTTP-version`` as RFC 9112 spells it (case-sensitive ``HTTP``, one digit each).
_HTTP_VERSION = re.compile(rb"\AHTTP/([0-9])\.([0-9])\Z")

#: A ``reg-name`` as hosts are named (DNS names, with ``_`` and ``~`` that RFC 3986
#: allows): the sub-delimiters and percent-escapes RFC 3986 also allows are refused,
#: since name-based backends read them differently (``a,b``) and no client sends them.
_HOST_NAME = re.compile(rb"\A[A-Za-z0-9._~-]+\Z")

#: An authority's port: RFC 3986's ``*DIGIT``, at most five of them.
_PORT = re.compile(rb"\A[0-9]{0,5}\Z")

#: The largest chunk size accepted: sizes must fit the 64-bit counters of backends.
MAX_CHUNK_SIZE = 2**63 - 1

#: Request body bytes held for a backend that is not connected yet before the
#: client stops being read.
BODY_BUFFER = 64 * 1024


@attrs.frozen
class HTTPLimits:
    """Sizes a listener accepts from clients; 0 for ``max_body_size`` means unlimited."""

    max_request_line: int = 8 * 1024
    max_header_size: int = 32 * 1024
    max_body_size: int = 64 * 1024 * 1024


def origin_form(target: bytes) -> Optional[bytes]:
    """The path and query of a request target (origin- or absolute-form), else None."""
    if target.startswith(b"/"):
        return target
    parts = urlsplit(target)
    if parts.scheme and parts.netloc:
        path = parts.path or b"/"
        return path + b"?" + parts.query if parts.query else path
    return None


class BadHost(ValueError):
    """A request's Host header or target authority breaks RFC 9112; the message says how."""


def valid_authority(host: bytes) -> bool:
    """Whether ``host`` is a ``Host`` value clbproxy accepts: ``name[:port]`` or ``[v6][:port]``.

    RFC 9110 7.2 asks a server to refuse a Host that is not ``uri-host [ ":" port ]``.
    A name is letters, digits, ``-``, ``.``, ``_`` and ``~`` (see ``_HOST_NAME``); an
    IPv6 literal must parse as one.  A value a backend could read as another host
    (``a:80:80``, ``a, b``, ``a/b``, ``a@b``, empty) would let a request be routed
    by one name and served by another, so it never passes.
    """
    if host.startswith(b"["):
        end = host.find(b"]")
        if end == -1:
            return False
        literal, rest = host[1:end], host[end + 1 :]
        try:
            ipaddress.IPv6Address(literal.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return False
        if not rest:
            return True
        return rest.startswith(b":") and bool(_PORT.match(rest[1:]))
    name, colon, port = host.partition(b":")
    if colon and not _PORT.match(port):
        return False
    return bool(_HOST_NAME.match(name))


def request_host(
    version: bytes, target: bytes, hosts: Sequence[bytes]
) -> tuple[bytes, Optional[bytes]]:
    """``(target, host)``: the request target and the Host every later step uses.

    ``hosts`` are the request's Host header values.  More than one, or none in
    an HTTP/1.1 request, is :class:`BadHost` (RFC 9112 3.2).  An absolute-form
    ``http``/``https`` target gives its path and query (origin-form) and its
    authority, which wins over the Host header (RFC 9112 3.2.2); any other
    target is returned as it is with the Host header's value (None: no header).
    """
    if len(hosts) > 1:
        raise BadHost("more than one Host header (RFC 9112 3.2)")
    if not hosts and version == b"HTTP/1.1":
        raise BadHost("a Host header is required (HTTP/1.1, RFC 9112 3.2)")
    host = hosts[0] if hosts else None
    if host is not None and not valid_authority(host):
        raise BadHost("the Host header is not a valid host[:port] (RFC 9110 7.2)")
    if target.startswith(b"/"):
        return target, host
    parts = urlsplit(target)
    if parts.scheme.lower() not in (b"http", b"https") or not parts.netloc:
        return target, host
    if b"@" in parts.netloc:
        raise BadHost("a request target with userinfo is not accepted (RFC 9110 4.2.4)")
    if not valid_authority(parts.netloc):
        raise BadHost("the request target's authority is not a valid host[:port] (RFC 9110 7.2)")
    return origin_form(target) or b"/", parts.netloc


class BodyTooLarge(Exception):
    """A chunked request body grew past the listener's ``max_body_size``."""


class ClientBodyLost(Exception):
    """The client went away before its request body was complete."""


@implementer(IBodyProducer)
class RequestBody:
    """A client's request body, produced to a backend as it arrives from the client.

    ``length`` is the client's Content-Length, or ``UNKNOWN_LENGTH`` for a
    chunked body (sent chunked to the backend).  Until a backend connection
    consumes it, up to :data:`BODY_BUFFER` bytes are held; past that, and
    whenever the backend connection pauses us, the client is not read.
    """

    def __init__(self, client_transport, length: Optional[int]) -> None:
        self.length = UNKNOWN_LENGTH if length is None else length
        self._client = client_transport
        self._buffer: List[bytes] = []
        self._buffered = 0
        self._consumer = None
        self._finished: Optional[Deferred] = None
        self._complete = False
        self._error: Optional[Exception] = None
        self._sent = 0
        self._paused = False
        self._backend_paused = False
        #: The client's trailer fields (a chunked body), set before ``finish``.
        self.trailers: List[Field] = []
        #: Lower-case names never forwarded among the trailers, besides
        #: :data:`clbproxy.http.trailers.FORBIDDEN` (set by the forwarder).
        self.drop_trailers: frozenset[str] = frozenset()
        #: Called whenever body bytes go to the backend (set by the forwarder), so
        #: the backend's response timeout counts from the end of a slow upload.
        self.on_progress: Optional[Callable[[], None]] = None
        #: Called once when a backend starts taking the body (the channel's
        #: deferred ``100 Continue``).
        self.on_start: Optional[Callable[[], None]] = None

    @property
    def complete(self) -> bool:
        return self._complete

    def forwarded_trailers(self) -> List[Field]:
        """The trailer fields the backend receives after the last chunk."""
        return forwardable(self.trailers, self.drop_trailers)

    # -- from the client ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._error is not None:
            return
        if self._consumer is not None and not self._buffer:
            self._sent += len(data)
            self._consumer.write(data)
            if self.on_progress is not None:
                self.on_progress()
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > BODY_BUFFER:
            self._pause_client()

    def finish(self) -> None:
        self._complete = True
        if self._consumer is not None and not self._buffer and self._finished is not None:
            d, self._finished = self._finished, None
            d.callback(None)

    def fail(self, error: Exception) -> None:
        """The body cannot be completed: fail the backend request sending it."""
        if self._error is not None:
            return
        self._error = error
        self._buffer = []
        self._resume_client()
        if self._finished is not None:
            d, self._finished = self._finished, None
            d.errback(error)

    # -- IBodyProducer, driven by the backend connection ---------------------------

    def startProducing(self, consumer) -> Deferred:
        if self._error is not None:
            return fail(self._error)
        if self._sent:
            raise RuntimeError("a streamed request body cannot be sent twice")
        self._consumer = consumer
        self._finished = Deferred()
        d = self._finished
        on_start, self.on_start = self.on_start, None
        if on_start is not None:
            on_start()
        self._flush()
        return d

    def _flush(self) -> None:
        progressed = False
        while self._buffer and not self._backend_paused and self._consumer is not None:
            data = self._buffer.pop(0)
            self._buffered -= len(data)
            self._sent += len(data)
            self._consumer.write(data)
            progressed = True
        if progressed and self.on_progress is not None:
            self.on_progress()
        if not self._buffer:
            if self._complete and self._finished is not None:
                d, self._finished = self._finished, None
                d.callback(None)
            elif not self._backend_paused:
                self._resume_client()

    def pauseProducing(self) -> None:
        self._backend_paused = True
        self._pause_client()

    def resumeProducing(self) -> None:
        self._backend_paused = False
        self._flush()

    def stopProducing(self) -> None:
        self._consumer = None
        self._finished = None
        self._backend_paused = False
        self._resume_client()

    def _pause_client(self) -> None:
        if not self._paused and self._client is not None:
            self._paused = True
            self._client.pauseProducing()

    def _resume_client(self) -> None:
        if self._paused and self._client is not None:
            self._paused = False
            self._client.resumeProducing()


#: The ``Server`` header of the answers the proxy gives itself.
SERVER = b"clbproxy"


class ProxyRequest(Request):
    """A request dispatched when its headers are in; its body streams through ``body``.

    ``response_trailers`` are written after the last chunk of a chunked
    response; a response sent with Content-Length (or to an HTTP/1.0 client)
    cannot carry them and they are dropped.
    """

    body: Optional[RequestBody] = None
    response_trailers: Sequence[Field] = ()
    #: The request's ID, once the listener named it (:mod:`clbproxy.http.request_id`).
    request_id: Optional[str] = None
    #: Its W3C trace context, once the listener read it (:mod:`clbproxy.http.tracecontext`).
    trace: TraceContext = NO_TRACE
    _received = 0

    def setHeader(self, name, value) -> None:
        # twisted.web's process() names it and its version in every answer;
        # the proxy's own answers say only "clbproxy" (a backend's Server is
        # put on its response as the backend sent it).
        if name == b"Server" and value is _twisted_server.version:
            value = SERVER
        super().setHeader(name, value)

    def gotLength(self, length: Optional[int]) -> None:
        if length == 0:
            super().gotLength(length)
            return
        self.content = io.BytesIO()
        self.body = RequestBody(self.channel.transport, length)

    def dispatch_early(self, command: bytes, path: bytes, version: bytes) -> None:
        """Start handling the request while its body is still arriving."""
        Request.requestReceived(self, command, path, version)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body is None:
            super().handleContentChunk(data)
            return
        self._received += len(data)
        limit = self.channel.limits.max_body_size
        if limit and self._received > limit:
            self.body.fail(BodyTooLarge(f"request body over {limit} bytes"))
            if self.startedWriting:
                self.channel.transport.abortConnection()
            else:
                self.channel.reject(413, f"the request body is larger than {limit} bytes")
            return
        self.body.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body is None:
            super().requestReceived(command, path, version)
        else:
            self.body.finish()

    def write(self, data: bytes) -> None:
        if not self.startedWriting and self.body is not None and not self.body.complete:
            # The response starts before the body is in: nothing after this
            # request on the connection can be trusted to be framed right.
            self.channel.persistent = False
        super().write(data)

    def finish(self) -> None:
        if self.body is not None and not self.body.complete and self.channel is not None:
            self.channel.persistent = False
            self.channel.discard_input()
        if self.response_trailers and not self.finished and not self._disconnected:
            if not self.startedWriting:
                self.write(b"")
            if self.chunked:
                self.channel.write(trailer_section(self.response_trailers))
                self.chunked = 0  # the last chunk is written
        super().finish()

    def connectionLost(self, reason) -> None:
        if self.body is not None and not self.body.complete:
            self.body.fail(ClientBodyLost("the client went away during the request body"))
        super().connectionLost(reason)


def request_line_problem(method: bytes, version: bytes) -> Optional[tuple[int, str]]:
    """``(status, reason)`` for a request line this listener refuses, or ``None``.

    A major version other than 1 (``HTTP/2.0`` without an upgrade, the h2
    preface) is 505; CONNECT is 501: a reverse proxy opens no tunnels.
    """
    served = _HTTP_VERSION.match(version)
    if served is not None and served.group(1) != b"1":
        return 505, "only HTTP/1.0 and HTTP/1.1 are served here"
    if method == b"CONNECT":
        return 501, "CONNECT is not supported: this is a reverse proxy, not a tunnel"
    return None


def served_request_line(line: bytes, version: bytes) -> bytes:
    """``line``, with a later HTTP/1.x minor version read as 1.1 (RFC 9110 section 2.5)."""
    served = _HTTP_VERSION.match(version)
    if served is not None and served.group(1) == b"1" and served.group(2) not in b"01":
        return line[: -len(version)] + b"HTTP/1.1"
    return line


class StrictChunkedDecoder(_ChunkedTransferDecoder):
    """twisted's chunked decoder, refusing chunk sizes that overflow 64 bits, with a reason."""

    def __init__(self, dataCallback, finishCallback, reject) -> None:
        super().__init__(dataCallback, finishCallback)
        self._reject = reject

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        try:
            done = super()._dataReceived_CHUNK_LENGTH()
        except _MalformedChunkedDataError:
            self._reject(400, "a malformed chunk size line")
            raise
        if done and self.length > MAX_CHUNK_SIZE:
            self._reject(400, "the chunk size is larger than 2^63-1")
            raise _MalformedChunkedDataError("chunk size overflow")
        return done


class ProxyChannel(HTTPChannel):
    """``HTTPChannel`` with the listener's limits and stricter parsing (see the module doc)."""

    limits = HTTPLimits()
    totalHeadersSize = sys.maxsize
    _rejected = False
    _discarding = False
    _continue_asked = False

    def connectionMade(self) -> None:
        limits = getattr(self.factory, "limits", None)
        if limits is not None:
            self.limits = limits
        self.MAX_LENGTH = max(self.limits.max_request_line, self.limits.max_header_size) + 1
        super().connectionMade()

    def _first_line(self) -> bool:
        return bool(self._HTTPChannel__first_line)

    def dataReceived(self, data: bytes) -> None:
        if self._rejected or self._discarding:
            return
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if self._rejected or self._discarding:
            return
        super().rawDataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._rejected:
            return
        if self._first_line():
            if len(line) > self.limits.max_request_line:
                self.reject(414, "the request line is too long")
                return
            parts = line.split(b" ")
            if len(parts) == 3 and not _URI_CHARACTERS.match(parts[1]):
                self.reject(400, "the request target has a byte not allowed in a URI")
                return
            if len(parts) == 3 and b"#" in parts[1]:
                self.reject(400, "a request target has no fragment ('#', RFC 9112 3.2)")
                return
            if len(parts) == 3:
                problem = request_line_problem(parts[0], parts[2])
                if problem is not None:
                    self.reject(*problem)
                    return
                line = served_request_line(line, parts[2])
        elif line:
            if line[:1] in (b" ", b"\t"):
                self.reject(400, "obsolete line folding in a header is not accepted")
                return
            if self._receivedHeaderSize + len(line) > self.limits.max_header_size:
                self.reject(431, "the request headers are too large")
                return
        if b"\r" in line or b"\n" in line:
            self.reject(400, "a bare CR or LF in the request head")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._first_line():
            self.reject(414, "the request line is too long")
        else:
            self.reject(431, "the request headers are too large")

    def headerReceived(self, line: bytes) -> bool:
        name, _, value = line.partition(b":")
        lower = name.lower()
        if lower == b"transfer-encoding" and value.strip(b" \t").lower() != b"chunked":
            self.reject(400, "only Transfer-Encoding: chunked is accepted")
            return False
        if self._receivedHeaderCount >= self.maxHeaders:
            self.reject(431, f"more than {self.maxHeaders} header fields")
            return False
        if not super().headerReceived(line):
            return False
        decoder = self._transferDecoder
        if isinstance(decoder, _ChunkedTransferDecoder):
            if not isinstance(decoder, StrictChunkedDecoder):
                decoder = StrictChunkedDecoder(
                    decoder.dataCallback, decoder.finishCallback, self.reject
                )
                self._transferDecoder = decoder
            decoder._maxTrailerHeadersSize = self.limits.max_header_size
        if lower == b"content-length":
            limit = self.limits.max_body_size
            if limit and int(value.strip(b" \t")) > limit:
                self.reject(413, f"the request body is larger than {limit} bytes")
                return False
        return True

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        hosts = request.requestHeaders.getRawHeaders(b"host", [])
        try:
            target, host = request_host(self._version, self._path, hosts)
        except BadHost as e:
            self.reject(400, str(e))
            return
        if target != self._path:
            self._path = target
            request.requestHeaders.setRawHeaders(b"host", [host])
        self._continue_asked = False
        super().allHeadersReceived()
        streamed = isinstance(request, ProxyRequest) and request.body is not None
        if self._continue_asked and not self._rejected:
            if streamed:
                request.body.on_start = lambda: self._send_continue(request)
            elif not isinstance(request, ProxyRequest):
                HTTPChannel._send100Continue(self)
        if streamed and not self._rejected:
            request.dispatch_early(self._command, self._path, self._version)

    def _send100Continue(self) -> None:
        # Deferred until a backend takes the body: see allHeadersReceived.
        self._continue_asked = True

    def _send_continue(self, request: Request) -> None:
        """Send the ``100 Continue`` a request asked for, unless its answer has begun."""
        if self._rejected or self.transport is None or request.startedWriting:
            return
        if request.finished or request.channel is not self:
            return
        HTTPChannel._send100Continue(self)

    def allContentReceived(self) -> None:
        if self._rejected:
            return
        super().allContentReceived()

    def _finishRequestBody(self, data: bytes) -> None:
        decoder = self._transferDecoder
        lines = getattr(decoder, "_trailerHeaders", None)
        if isinstance(decoder, _ChunkedTransferDecoder) and lines:
            try:
                fields = parse_trailer_lines(lines)
            except TrailerError as e:
                self.reject(400, str(e))
                return
            request = self.requests[-1]
            if isinstance(request, ProxyRequest) and request.body is not None:
                request.body.trailers = fields
        super()._finishRequestBody(data)

    def discard_input(self) -> None:
        """Ignore the rest of the client's input (a response ended before its request)."""
        self._discarding = True

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.reject(400, "the request is malformed")

    def reject(self, status: int, detail: str) -> None:
        """Answer ``status`` with an error page and close, without reading anything more."""
        if self._rejected:
            return
        self._rejected = True
        writing = [request for request in self.requests if request.startedWriting]
        if writing:
            # A response is under way: an error page would land inside it.
            request_id = getattr(writing[0], "request_id", None)
            log.info(
                "Closed the connection from {peer} during a response: {detail}"
                " request_id={request_id}",
                peer=getattr(self.transport.getPeer(), "host", None),
                detail=printable(detail),
                request_id=request_id or "-",
            )
            self.transport.abortConnection()
            return
        request_id = self.refused_request_id()
        accept = None
        if self.requests:
            values = self.requests[-1].requestHeaders.getRawHeaders(b"accept")
            accept = values[-1].decode("latin-1") if values else None
        content_type, body = negotiated_error(status, detail, accept, request_id)
        log.info(
            "Rejected a request from {peer} with {status}: {detail} request_id={request_id}",
            peer=getattr(self.transport.getPeer(), "host", None),
            status=status,
            detail=printable(detail),
            request_id=request_id or "-",
        )
        headers = [("Content-Type", content_type)]
        if request_id is not None:
            headers.append((self.request_ids.name, request_id))
        self.transport.write(raw_response(status, headers, body))
        self.transport.loseConnection()

    @property
    def request_ids(self) -> RequestIds:
        """The listener's request-ID policy (its site's), :data:`~clbproxy.http.request_id.OFF`
        without one."""
        return getattr(self.factory, "request_ids", OFF)

    def refused_request_id(self) -> Optional[str]:
        """The ID of the request this connection is refusing (``None``: IDs are off).

        The one the listener gave it when it got that far; else chosen from the
        headers read so far (a request refused in its headers keeps a believed
        client's ID when that header came before the fault); a new one when
        its request line is refused (the last request, if any, is an earlier one).
        """
        policy = self.request_ids
        if not policy.enabled:
            return None
        if not self.requests or self._first_line():
            return new_request_id()
        request = self.requests[-1]
        named = getattr(request, "request_id", None)
        if named is not None:
            return named
        received = request.requestHeaders.getRawHeaders(policy.key)
        return policy.choose(received, getattr(self.transport.getPeer(), "host", None) or "")


class ProxySite(Site):
    """A listener's ``Site``: :class:`ProxyChannel` connections, :class:`ProxyRequest` requests."""

    protocol = ProxyChannel
    requestFactory = ProxyRequest
    #: Who names requests (the listener's ``request_id_header``/``request_id_from``).
    request_ids: RequestIds = OFF

    def __init__(self, resource, *, limits: HTTPLimits, **kwargs) -> None:
        super().__init__(resource, **kwargs)
        self.limits = limits
        self.displayTracebacks = False
