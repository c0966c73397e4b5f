"""What a listener's connections share, HTTP/1.1 and HTTP/2: limits, Host rules, the streamed body.

A listener reads HTTP/1.1 with its own connection
(:class:`clbproxy.listener.connection.ListenerConnection`, on the sans-IO
parsers of :mod:`clbproxy.http.parsing`) and HTTP/2 with
:mod:`clbproxy.http2`; both take from here the sizes a client may send
(:class:`HTTPLimits`), the Host rules (:func:`request_host`,
:func:`valid_authority`), the request body that streams to a backend while it
arrives (:class:`RequestBody`) and the ``Server`` header of the proxy's own
answers (:data:`SERVER`).

The Host rules, as RFC 9112 3.2 and RFC 9110 7.2 ask: more than one ``Host``
header, none in an HTTP/1.1 request, or one that is not a valid
``host[:port]`` (empty, ``a:80:80``, ``a, b``, ``a/b``, ``a@b``) is refused
(400), for upgrades too.  An absolute-form target (``GET http://a.test/x``) is
read as RFC 9112 3.2.2 says: its authority replaces the Host header and the
target becomes origin-form (``/x``), so routing, access lists, logs and the
backend all see one host.

:class:`RequestBody` streams: a request is dispatched as soon as its head is
in, and its body is handed to the forwarder as an ``IBodyProducer`` that
pauses reading from the client while the backend cannot take more.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, List, Optional, Sequence
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from clbproxy.http.trailers import Field, forwardable

#: A ``reg-name`` as hosts are named (DNS names, with ``_`` and ``~`` that RFC 3986
#: allows): the sub-delimiters and percent-escapes RFC 3986 also allows are refused,
#: since name-based backends read them differently (``a,b``) and no client sends them.
_HOST_NAME = re.compile(rb"\A[A-Za-z0-9._~-]+\Z")

#: An authority's port: RFC 3986's ``*DIGIT``, at most five of them.
_PORT = re.compile(rb"\A[0-9]{0,5}\Z")

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
        #: Body bytes the client sent so far (the access log's ``bytes_in``).
        self.received = 0
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
        self.received += len(data)
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
