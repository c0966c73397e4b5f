"""Plain HTTP forwarding: a client's request goes to one backend, the response streams back.

The listener's root resource hands every non-WebSocket request to
:class:`HTTPForwarder` as soon as its headers are parsed
(:class:`clbproxy.listener.connection.ListenerConnection`); its body is still arriving and
streams on as a :class:`clbproxy.http.server.RequestBody`.  The forwarder picks
a backend from the target group, builds the backend's request head as bytes
(:func:`clbproxy.http.proxy_headers.request_head`), sends it over the group's
keep-alive :class:`clbproxy.http.upstream_client.UpstreamPool` and relays the
response as the pool's parser reports it, with plain method calls (no
``Agent``, ``Deferred`` or twisted ``Headers`` per request on a kept-alive
connection):

- A request that never reached a backend (refused, unresolvable, connect
  timeout) is retried on another backend, up to the group's ``retries``; a
  request that may have reached one is not, except that an idempotent request
  whose kept-alive connection the backend had already closed is sent again on
  a new connection to the same backend (as Twisted's client did), when none of
  its body was sent.
- Failures before the response headers become proxy error pages: 503 when the
  group has no backend that takes traffic, 502 when no backend answered, 504
  when the backend's headers did not arrive within ``response_timeout`` of the
  last request body bytes sent (an upload that stalls that long is cut too).
- Once the backend's headers are relayed the status is committed: if the
  backend then fails mid-body, the client connection is aborted, so a truncated
  body never looks complete (a malformed response none of whose body reached
  the client still becomes a 502 page).
- Backpressure both ways: while the client cannot take more of the response
  the backend connection is not read (the exchange is the client response's
  streaming producer, unless the backend's whole response was read with its
  head: then it is all written before anything could pause it), and while the
  backend's socket is full the client's body is not read (its producer is
  paused).  A client that goes away aborts
  the backend exchange, so nothing is left running.

This module holds the exchange (each request's attempts, timeouts, errors and
the end of its response) and :class:`HTTPForwarder`, which owns the pools.
The pieces it drives live beside it: the connections and the response parser
in :mod:`clbproxy.http.upstream_client`, the headers both ways in
:mod:`clbproxy.http.proxy_headers`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from clbproxy.config import BackendConfig, RuleConfig, TargetGroupConfig
from clbproxy.http.field_headers import FieldHeaders, field_key
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.parse_rules import Field
from clbproxy.http.parsing import ResponseHead
from clbproxy.http.proxy_headers import (
    VIA,
    Fields,
    backend_host,
    backend_request_fields,
    copy_response_headers,
    never_copied,
    proxy_named,
    request_head,
    request_trailer_drop,
    response_carries_trailers,
)
from clbproxy.http.responses import negotiated_error
from clbproxy.http.server import BodyTooLarge, ClientBodyLost, RequestBody, origin_form
from clbproxy.http.tracecontext import NO_TRACE
from clbproxy.http.trailers import forwardable
from clbproxy.http.upstream_client import UpstreamExchange, UpstreamPool
from clbproxy.net.tls_client import BackendConnector
from clbproxy.observability.accesslog import RequestRecord
from clbproxy.routing.actions import rewrite_target
from clbproxy.upstream.balancer import Lease, RequestInfo, TargetGroup

log = Logger()

#: Builds one target group's pool: ``pool_factory(reactor, group, connect)``, where
#: ``connect(backend)`` gives the endpoint to a backend (tests swap the factory).
PoolFactory = Callable[
    [Any, TargetGroupConfig, Callable[[BackendConfig], IStreamClientEndpoint]], UpstreamPool
]

#: The start of an :class:`UpstreamPool` failure that means the backend hung up
#: in the middle of a response (not one that broke the protocol).
_CLOSED = "the backend closed"


def render_error(request: Request, status: int, detail: str) -> bytes:
    """Prepare ``request`` for a proxy error page and return the page's body."""
    accept = request.getHeader(b"accept")
    content_type, body = negotiated_error(
        status,
        detail,
        accept.decode("latin-1") if accept else None,
        getattr(request, "request_id", None),
    )
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", content_type.encode("ascii"))
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    return body


def request_info(request: Request, target: bytes) -> RequestInfo:
    """What balancing and session persistence may look at in ``request``."""
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    ]
    query = parse_qs(urlsplit(target.decode("latin-1")).query) if b"?" in target else {}
    client = getattr(request.getClientAddress(), "host", None) or ""
    return RequestInfo.build(client, headers, query)


#: The request fields that say it has a body (``FieldHeaders`` keys).
_CONTENT_LENGTH = field_key(b"content-length")
_TRANSFER_ENCODING = field_key(b"transfer-encoding")


@implementer(IPushProducer)
class _Exchange(Lease):
    """One client request's way through the proxy: backend attempts, then the response relay.

    It is each attempt's :class:`~clbproxy.http.upstream_client.UpstreamSink`
    and, once a backend's head is in and more of its response is to be read,
    the streaming producer of the client's response (pausing it stops reading
    the backend).  It is also the request's :class:`~clbproxy.upstream.balancer.Lease`
    (held with :meth:`TargetGroup.hold` while an attempt is in flight), as a
    WebSocket session is its own: no lease object per request.
    """

    #: Not held until an attempt is sent (a class default over the slot of
    #: :class:`Lease`: ``hold`` and ``release`` store the instance's own).
    released = True

    # What an exchange starts with, as class attributes: no store per request.
    _target = b"/"
    #: The backend request's fields (set by ``start``, before any attempt).
    _fields: Fields
    _backend: Optional[BackendConfig] = None
    #: The backends attempts went to, in order (a tuple: no list per request).
    _tried: Tuple[BackendConfig, ...] = ()
    #: The current attempt's backend exchange (None until it is sent).
    _upstream: Optional[UpstreamExchange] = None
    _body: Optional[RequestBody] = None
    _buffered: Optional[bytes] = None
    #: The request head's framing line; None: the request has no body.
    _framing: Optional[bytes] = None
    _body_started = False
    _body_timer: Optional[IDelayedCall] = None
    _head: Optional[ResponseHead] = None
    _hop: frozenset[str] = frozenset()
    #: What picking reads of the request (None: the group's picking reads nothing).
    _info: Optional[RequestInfo] = None
    #: A backend's status and headers were put on the client's response.
    _committed = False
    #: Response body bytes were written to the client.
    _wrote = False
    _producing = False
    #: The client's response was finished or its connection aborted by us.
    _done = False
    #: The client's response headers before the backend's were put on it (the
    #: copy gives the response new ones and leaves these as they were).
    _own_headers = None
    _client_gone = False

    def __init__(
        self,
        forwarder: HTTPForwarder,
        request: Request,
        group: TargetGroup,
        rule: Optional[RuleConfig] = None,
        record: Optional[RequestRecord] = None,
    ) -> None:
        self._forwarder = forwarder
        self._rule = rule
        self._reactor = forwarder.reactor
        self._request = request
        self._group = group
        self._record = record if record is not None else RequestRecord()
        self._record.group = group.name
        self._started = self._reactor.seconds()
        request_id = getattr(request, "request_id", None)
        #: ``(header, ID)`` of the request, None when IDs are off.
        self._request_id = None if request_id is None else (forwarder.id_header, request_id)

    def start(self) -> None:
        on_lost = getattr(self._request, "on_lost", None)
        if on_lost is not None:
            on_lost(self._client_lost)  # a listener request: no Deferred per request
        else:
            self._request.notifyFinish().addErrback(self._client_lost)
        target = origin_form(self._request.uri)
        if target is None:
            self._error(400, "the request target is not supported")
            return
        if self._rule is not None and self._rule.rewrite is not None:
            self._target = rewrite_target(self._rule, target.decode("latin-1")).encode("latin-1")
        else:
            self._target = target  # as the client sent it (rewrite_target's answer)
        self._fields = backend_request_fields(
            self._request,
            scheme=self._forwarder.scheme,
            trusted=self._forwarder.trusted,
            rule=self._rule,
            via=self._forwarder.via,
            underscores=self._forwarder.underscores,
            request_id=self._request_id,
            trace=getattr(self._request, "trace", NO_TRACE),
        )
        self._take_body()
        if self._group.reads_requests:
            self._info = request_info(self._request, target)
        group = self._group
        backend = group.pick(self._info)  # nothing tried yet
        if backend is None:
            self._error(503, f"no backend available in target group {group.name}")
            return
        # self._send(backend), without a call (or a lease to let go) on a first attempt:
        self._tried = (backend,)
        self._backend = backend
        group.hold(self, backend)
        self._record.backend = backend.address
        self._dispatch(backend)

    def _take_body(self) -> None:
        """Find the request's body: streamed from the client, or buffered by twisted.web."""
        request = self._request
        streamed = getattr(request, "body", None)
        if isinstance(streamed, RequestBody):
            streamed.drop_trailers = request_trailer_drop(
                request,
                self._rule,
                proxy_named(
                    self._request_id[0].decode("latin-1") if self._request_id else None,
                    getattr(request, "trace", NO_TRACE),
                ),
            )
            self._body = streamed
            if streamed.length is UNKNOWN_LENGTH:
                self._framing = b"Transfer-Encoding: chunked"
            else:
                self._framing = b"Content-Length: %d" % (streamed.length,)
            return
        client = request.requestHeaders
        if type(client) is FieldHeaders:
            # A listener's request with no streamed body (most requests): hasHeader's
            # questions, asked of the dict it looks in, without a call each.
            raw = client.grouped()
            if _CONTENT_LENGTH not in raw and _TRANSFER_ENCODING not in raw:
                return
        elif not (client.hasHeader(b"content-length") or client.hasHeader(b"transfer-encoding")):
            return  # (before ``content``: a listener request makes its buffer when asked)
        content = getattr(request, "content", None)
        if content is None:
            return
        content.seek(0)
        self._buffered = content.read()
        self._framing = b"Content-Length: %d" % (len(self._buffered),)

    def _send(self, backend: BackendConfig) -> None:
        self._tried = (*self._tried, backend)
        self._backend = backend
        if not self.released:  # a retry: the attempt before is over
            self.release()
        self._group.hold(self, backend)
        self._record.backend = backend.address
        self._dispatch(backend)

    def _dispatch(self, backend: BackendConfig) -> None:
        """Send the request head to ``backend`` through the group's pool (one attempt)."""
        config = self._group.config
        forwarder = self._forwarder
        known = forwarder._pools.get(config.name)
        if known is not None and known.config is config:
            pool = known.pool  # forwarder.pool_for(config), without a call per request
        else:
            pool = forwarder.pool_for(config)
        fields = self._fields
        host = None
        if b"Host" not in fields:
            host = backend_host(backend.host, backend.port, config.tls)
        head = request_head(
            self._request.method,
            self._target,
            fields,
            self._framing,
            persistent=pool.persistent,
            host=host,
        )
        self._upstream = None
        exchange = pool.send(
            backend,
            head,
            self,
            method=self._request.method,
            body=self._framing is not None,
            response_timeout=config.response_timeout,
        )
        if exchange.connecting is not None:
            # Still connecting: nothing happened yet.  (Otherwise it is attached,
            # and connected() took it, or it failed, and maybe went on to another.)
            self._upstream = exchange

    # -- the request body

    def connected(self, exchange: UpstreamExchange) -> None:
        self._upstream = exchange
        try:
            if self._body is not None:
                self._body_started = True
                self._body_timer = self._reactor.callLater(
                    self._group.config.response_timeout, self._upload_timed_out
                )
                # Starting it sends the client its deferred "100 Continue".
                sending = self._body.startProducing(exchange)
                sending.addCallbacks(
                    self._body_sent, self._body_failed, (exchange,), None, (exchange,)
                )
            elif self._buffered is not None:
                exchange.write_body(self._buffered)
                exchange.finish_body()
        except Exception:
            self.unexpected(Failure())

    def body_paused(self) -> None:
        if self._body is not None:
            self._body.pauseProducing()

    def body_resumed(self) -> None:
        if self._body is not None:
            self._body.resumeProducing()

    def _body_sent(self, _: object, exchange: UpstreamExchange) -> None:
        self._cancel_body_timer()
        exchange.finish_body(self._body.forwarded_trailers())

    def _body_failed(self, failure: Failure, exchange: UpstreamExchange) -> None:
        self._cancel_body_timer()
        exchange.abort()  # no last chunk: the backend must not take the body as complete
        if self._done or self._client_gone:
            return
        self.release()
        if failure.check(ClientBodyLost):
            # The client left (or timed out) mid-body: its connection's loss ends
            # the exchange next, logged as a client that went away.
            return
        if self._committed:
            self._abort_client()
        elif failure.check(BodyTooLarge):
            self._error(413, "the request body is too large")
        else:
            self.unexpected(failure)

    def _upload_timed_out(self) -> None:
        """``response_timeout`` since the upload began: cut it unless bytes went since.

        Like nginx's ``proxy_send_timeout``, a streamed upload is timed between
        writes, so a slow but moving upload is never cut.  The deadline is
        checked here, when it falls due, from the time of the last write the
        exchange keeps (``body_written_at``): moving a timer on every 64 KiB
        written cost more than the check.
        """
        self._body_timer = None
        upstream = self._upstream
        if upstream is not None:
            timeout = self._group.config.response_timeout
            left = upstream.body_written_at + timeout - self._reactor.seconds()
            if left > 0:
                self._body_timer = self._reactor.callLater(left, self._upload_timed_out)
                return
            upstream.abort()
        self.response_failed(
            504, f"no response within {self._group.config.response_timeout:g} s", False
        )

    def _cancel_body_timer(self) -> None:
        timer, self._body_timer = self._body_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _stop_body(self) -> None:
        """The response ended before the body: stop sending it (and resume the client)."""
        if self._body_started and not self._body.complete:
            self._body.stopProducing()

    # -- the response

    def interim(self, status: int, fields: List[Field]) -> None:
        """1xx answers are the backend's to its hop (the proxy answers 100-continue itself)."""

    def response_head(self, head: ResponseHead) -> None:
        if self._body_timer is not None:
            self._cancel_body_timer()
        backend = self._backend
        self._group.report_status(backend, head.status)
        self._record.response_ms = (self._reactor.seconds() - self._started) * 1000
        if self._client_gone:
            return
        try:
            request = self._request
            self._committed = True
            self._head = head
            forwarder = self._forwarder
            group = self._group
            added = group.persistence_headers(self._info, backend) if group.persists else ()
            if forwarder.via:
                added = [*added, (b"Via", VIA)]
            # Left as they are by the copy, which gives the response new headers.
            self._own_headers = request.responseHeaders
            # The response keeps the ID the listener gave it (the one the backend
            # was sent), whatever the backend answers under that name.
            self._hop = copy_response_headers(head, request, forwarder.never_copied, added)
            upstream = self._upstream
            if upstream is None or not upstream.response_read:
                self._producing = True
                request.registerProducer(self, True)
        except Exception:
            self.unexpected(Failure())

    def response_data(self, data: bytes) -> None:
        if not self._client_gone and not self._done:
            self._wrote = True
            self._request.write(data)

    def response_complete(self, trailers: List[Field]) -> None:
        # Done with the backend's exchange, which holds this one as its sink: letting
        # go of it leaves no cycle, so the request is freed at once, not by the collector.
        self._upstream = None
        self.release()
        if self._body_started:
            self._stop_body()
        if self._client_gone or self._done:
            return
        try:
            self._done = True
            if self._producing:
                self._unregister()
            if trailers:
                self._pass_trailers(trailers)
            self._request.finish()
        except Exception:
            self.unexpected(Failure())

    def response_failed(self, status: int, reason: str, retryable: bool) -> None:
        self._cancel_body_timer()
        backend = self._backend
        if self._client_gone or self._done:
            self.release()
            return
        upstream = self._upstream
        if (
            retryable
            and upstream is not None
            and upstream.reused
            and not self._body_started
            and not self._committed
        ):
            # The backend closed a kept-alive connection as it was reused: a new one.
            log.debug(
                "Kept-alive connection to {backend} was closed; sending again on a new one",
                backend=backend.address,
            )
            self._dispatch(backend)
            return
        self.release()
        self._group.report_failure(backend, reason)
        if self._committed:
            self._stop_body()
            if self._wrote or reason.startswith(_CLOSED):
                self._log_failure(backend, reason, "client connection aborted")
                self._abort_client()
            else:
                self._log_failure(backend, reason, "answered 502")
                self._unregister()
                self._request.setResponseCode(200)
                self._request.responseHeaders = self._own_headers
                self._error(502, "the backend's response is malformed")
            return
        config = self._group.config
        if status == 504:
            self._stop_body()
            self._log_failure(backend, reason, "answered 504")
            self._error(504, "the backend did not respond in time")
        elif retryable and not self._body_started:
            retry = None
            if len(self._tried) <= config.retries:
                retry = self._group.pick(exclude=self._tried)
            if retry is not None:
                self._log_failure(backend, reason, f"retrying on {retry.address}")
                self._send(retry)
            else:
                self._log_failure(backend, reason, "answered 502")
                self._error(502, "no backend could be reached")
        else:
            self._stop_body()
            self._log_failure(backend, reason, "answered 502")
            self._error(502, "the backend closed the connection without a response")

    # IPushProducer: the client's side of the response
    def pauseProducing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_response()

    def resumeProducing(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_response()

    def stopProducing(self) -> None:
        if self._upstream is not None:
            self._upstream.abort()

    def _unregister(self) -> None:
        if self._producing:
            self._producing = False
            self._request.unregisterProducer()

    def _pass_trailers(self, trailers: List[Field]) -> None:
        """Give the client's response the backend's trailers (written if it is chunked)."""
        if not hasattr(self._request, "response_trailers"):
            return
        if response_carries_trailers(self._head, self._request):
            self._request.response_trailers = forwardable(trailers, self._hop)
        else:
            log.debug("Trailers of a response that is not chunked to the client are dropped")

    def _client_lost(self, reason: Failure) -> None:
        if self._done:
            return
        self._client_gone = True
        self._cancel_body_timer()
        self.release()
        log.info(
            "Client went away before the response from backend {backend} of target group"
            " {group} was complete: {reason} request_id={request_id}",
            backend=self._backend.address if self._backend else None,
            group=self._group.name,
            reason=_describe(reason),
            request_id=self._shown_id(),
        )
        if self._upstream is not None:
            self._upstream.abort()

    def _log_failure(self, backend: Optional[BackendConfig], reason: str, outcome: str) -> None:
        log.warn(
            "HTTP request to backend {backend} of target group {group} failed: {reason}"
            " ({outcome}) request_id={request_id}",
            backend=backend.address if backend else None,
            group=self._group.name,
            reason=reason,
            outcome=outcome,
            request_id=self._shown_id(),
        )

    def _shown_id(self) -> str:
        """The request's ID as log lines show it (``-``: IDs are off)."""
        return self._request_id[1] if self._request_id is not None else "-"

    def _error(self, status: int, detail: str) -> None:
        if self._done or self._client_gone:
            return
        self._done = True
        body = render_error(self._request, status, detail)
        self._request.write(body)
        self._request.finish()

    def _abort_client(self) -> None:
        self._done = True
        channel = self._request.channel
        if channel is None:
            return
        transport = channel.transport
        abort = getattr(transport, "abortConnection", None) or transport.loseConnection
        abort()

    def unexpected(self, failure: Failure) -> None:
        """Last resort for bugs: log with the traceback, answer 502 or cut the response."""
        log.failure(
            "Unexpected error forwarding an HTTP request to target group {group}"
            " request_id={request_id}",
            failure,
            group=self._group.name,
            request_id=self._shown_id(),
        )
        self._cancel_body_timer()
        self.release()
        if self._upstream is not None:
            self._upstream.abort()
        if self._done or self._client_gone:
            return
        if self._committed:
            self._abort_client()
        else:
            self._error(502, "the proxy failed to forward the request")


def _describe(failure: Failure) -> str:
    """One line saying why a connection ended."""
    message = failure.getErrorMessage()
    name = type(failure.value).__name__
    return f"{name}: {message}" if message and message != name else name


def pool_settings(group: TargetGroupConfig) -> tuple:
    """What a group's pooled connections depend on: a change needs a new pool."""
    return (
        group.tls,
        group.verify,
        group.ca_file,
        group.server_name,
        group.http_pool_max_idle,
        group.http_pool_idle_timeout,
    )


class _GroupPool:
    """A group's pool and the settings its new connections are made with now."""

    __slots__ = ("config", "pool")

    def __init__(self, config: TargetGroupConfig) -> None:
        self.config = config
        self.pool: Optional[UpstreamPool] = None


class HTTPForwarder:
    """Forwards plain HTTP requests to a target group's backends.

    One per listener.  It owns one keep-alive
    :class:`~clbproxy.http.upstream_client.UpstreamPool` per target group
    (``close`` empties them), connecting through ``connector``
    (:class:`~clbproxy.net.tls_client.BackendConnector`: the group's connect
    timeout, TLS, SNI and verification).  A reload that changes a group's TLS
    or pool settings retires its pool: new requests open new connections; one
    that changes only its connect timeout keeps the pool.
    ``pool_factory(reactor, group, connect)`` builds the pools; tests swap it.
    """

    def __init__(
        self,
        reactor,
        *,
        scheme: str,
        trusted: TrustedProxies,
        via: bool = False,
        connector: Optional[BackendConnector] = None,
        underscores: bool = False,
        id_header: bytes = b"X-Request-Id",
        pool_factory: Optional[PoolFactory] = None,
    ) -> None:
        self.reactor = reactor
        self.via = via
        self.set_id_header(id_header)
        #: The listener's ``underscores_in_headers``.
        self.underscores = underscores
        self.scheme = scheme
        self.trusted = trusted
        self._connector = connector if connector is not None else BackendConnector(reactor)
        self._pool_factory: PoolFactory = pool_factory if pool_factory is not None else UpstreamPool
        #: By group name.
        self._pools: dict[str, _GroupPool] = {}

    def set_id_header(self, id_header: bytes) -> None:
        """Name requests' IDs ``id_header`` (the listener's ``request_id_header``; b"": off)."""
        #: The name requests' IDs are sent under.
        self.id_header = id_header
        #: The backend response's names not copied to the client: the hop-by-hop
        #: ones and the ID's (the response already carries the request's own).
        self.never_copied = never_copied(id_header)

    def pool_for(self, group: TargetGroupConfig) -> UpstreamPool:
        """The keep-alive pool for a target group's settings."""
        known = self._pools.get(group.name)
        if known is not None:
            if known.config is group:
                return known.pool
            if pool_settings(known.config) == pool_settings(group):
                known.config = group  # e.g. a new connect timeout, for new connections
                return known.pool
            known.pool.retire()
        entry = _GroupPool(group)
        connector = self._connector
        entry.pool = self._pool_factory(
            self.reactor, group, lambda backend: connector.endpoint(backend, entry.config)
        )
        self._pools[group.name] = entry
        return entry.pool

    def keep_groups(self, names: Iterable[str]) -> None:
        """Forget the pools of groups not in ``names`` (gone after a reload)."""
        kept = set(names)
        for name in [name for name in self._pools if name not in kept]:
            self._pools.pop(name).pool.retire()

    def forward(
        self,
        request: Request,
        group: TargetGroup,
        rule: Optional[RuleConfig] = None,
        record: Optional[RequestRecord] = None,
    ) -> object:
        """Send ``request`` to a backend of ``group`` and relay the answer; NOT_DONE_YET.

        ``rule`` (the matched forwarding rule) rewrites the path and changes headers;
        ``record`` (the access log's) learns the backend and the response time.
        """
        exchange = _Exchange(self, request, group, rule, record)
        try:
            exchange.start()
        except Exception:
            exchange.unexpected(Failure())
        return NOT_DONE_YET

    def close(self) -> Deferred:
        """Close the idle keep-alive connections to backends, and the others once idle."""
        pools = [entry.pool for entry in self._pools.values()]
        self._pools = {}
        return gatherResults([pool.retire() for pool in pools]).addCallback(lambda _: None)
