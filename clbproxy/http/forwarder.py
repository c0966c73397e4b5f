"""Plain HTTP forwarding: a client's request goes to one backend, the response streams back.

The listener's root resource hands every non-WebSocket request to
:class:`HTTPForwarder` as soon as its headers are parsed
(:class:`clbproxy.http.server.ProxyChannel`); its body is still arriving and
streams on as a :class:`clbproxy.http.server.RequestBody`.  The forwarder picks
a backend from the target group, sends the request with Twisted's ``Agent``
over the group's keep-alive connection pool, and relays the response as it
arrives:

- A request that never reached a backend (refused, unresolvable, connect
  timeout) is retried on another backend, up to the group's ``retries``; a
  request that may have reached one is never retried.
- Failures before the response headers become proxy error pages: 503 when the
  group has no backend that takes traffic, 502 when no backend answered, 504
  when the backend's headers did not arrive within ``response_timeout`` (counted
  per attempt, connecting included).
- Once the backend's headers are relayed the status is committed: if the
  backend then fails mid-body, the client connection is aborted, so a truncated
  body never looks complete.
- A slow client slows the backend: while twisted.web cannot write to the
  client, the backend connection is not read.  A client that goes away closes
  the backend connection (or cancels the attempt) so nothing is left running.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, Sequence
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import RequestNotSent
from twisted.web.client import (
    URI,
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss, _MalformedChunkedDataError
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    UNKNOWN_LENGTH,
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IResponse,
)
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from clbproxy.config import BackendConfig, RuleConfig, TargetGroupConfig
from clbproxy.http.forwarded import (
    FORWARDING_HEADERS,
    TrustedProxies,
    client_header_passes,
    forwarded_headers,
    hop_by_hop_names,
    is_hop_by_hop,
    untrusted_headers,
)
from clbproxy.http.responses import negotiated_error
from clbproxy.http.server import BodyTooLarge, ClientBodyLost, RequestBody, origin_form
from clbproxy.http.trailers import (
    FORBIDDEN,
    TrailerClientProtocol,
    accepts_trailers,
    forwardable,
    response_connection,
    response_trailers,
)
from clbproxy.net.tls import BackendConnector, client_certificate_headers
from clbproxy.observability.accesslog import RequestRecord
from clbproxy.routing.actions import header_changes, rewrite_target
from clbproxy.upstream.balancer import Lease, RequestInfo, TargetGroup

log = Logger()

#: Failures that prove the request never left the proxy, so another backend may take it.
NOT_SENT_ERRORS = (ConnectError, ConnectingCancelledError, DNSLookupError, RequestNotSent)

#: Client request headers never copied to the backend request: the framing is
#: rebuilt by the Agent for the streamed body (its length, or chunked), and
#: ``100-continue`` is the proxy's own to answer (see
#: :class:`clbproxy.http.server.ProxyChannel`).
_REQUEST_ONLY_HEADERS = frozenset({"content-length", "expect"})

#: The ``Via`` header value of a listener with ``via = true``.
VIA = b"1.1 clbproxy"

#: Response statuses that never carry a body.
_BODYLESS_STATUSES = frozenset({204, 304})

AgentFactory = Callable[[Any, HTTPConnectionPool, TargetGroupConfig], IAgent]


def render_error(request: Request, status: int, detail: str) -> bytes:
    """Prepare ``request`` for a proxy error page and return the page's body."""
    accept = request.getHeader(b"accept")
    content_type, body = negotiated_error(
        status, detail, accept.decode("latin-1") if accept else None
    )
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", content_type.encode("ascii"))
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    return body


class _QuietClientFactory(_HTTP11ClientFactory):
    """Backend connections that carry trailers; quiet, as one factory per connection
    would flood the log with "Starting factory" lines."""

    noisy = False

    def buildProtocol(self, addr) -> TrailerClientProtocol:
        return TrailerClientProtocol(self._quiescentCallback)


class BackendPool(HTTPConnectionPool):
    """One target group's idle keep-alive connections to its backends.

    Each group has its own pool, so a connection is only reused for the TLS
    settings (``verify``, ``ca_file``, ``server_name``) it was opened and checked
    with; Twisted's pool keys connections by scheme, host and port only.  At
    most ``http_pool_max_idle`` connections per backend are kept idle (0: none,
    every request has its own connection), each for ``http_pool_idle_timeout``
    seconds.  A retired pool (its group's settings changed, or the listener
    stopped) closes every connection as soon as it is idle.
    """

    _factory = _QuietClientFactory

    def __init__(self, reactor, group: TargetGroupConfig) -> None:
        super().__init__(reactor, persistent=group.http_pool_max_idle > 0)
        self.maxPersistentPerHost = group.http_pool_max_idle
        self.cachedConnectionTimeout = group.http_pool_idle_timeout
        self._retired = False

    def retire(self) -> Deferred:
        """Keep no connection from now on; fires once the idle ones are closed."""
        self._retired = True
        return self.closeCachedConnections()

    def _putConnection(self, key, connection) -> None:
        # Twisted calls this when a request on ``connection`` is done and it may be reused.
        if self._retired:
            connection.transport.loseConnection()
            return
        super()._putConnection(key, connection)


def _pool_settings(group: TargetGroupConfig) -> tuple:
    """What a group's pooled connections depend on: a change needs a new pool."""
    return (
        group.tls,
        group.verify,
        group.ca_file,
        group.server_name,
        group.http_pool_max_idle,
        group.http_pool_idle_timeout,
    )


@implementer(IAgentEndpointFactory)
class _BackendEndpointFactory:
    """Endpoints to one target group's backends: TCP with a connect timeout, TLS for https.

    Twisted's ``URI`` keeps the brackets of an IPv6 literal in ``host``, which
    the standard endpoint factory would try to resolve as a name.
    """

    def __init__(self, reactor, group: TargetGroupConfig, connector=None) -> None:
        self._group = group
        self._connector = connector if connector is not None else BackendConnector(reactor)

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return self._connector.endpoint(BackendConfig(host, uri.port), self._group)


class ExactTargetAgent(Agent):
    """An ``Agent`` that sends the request target exactly as it stands in the URL.

    ``Agent.request`` re-parses the URL and rebuilds the target from its parts,
    which drops an empty trailing ``;`` (``/exact;`` becomes ``/exact``) and a
    fragment: a request routed as one path would reach the backend as another.
    Here everything after ``scheme://authority`` goes on the request line as
    it is, so the backend receives the bytes the router matched.  (Twisted's
    ``_requestWithEndpoint`` is private; tests pin its use.)
    """

    def request(self, method, uri, headers=None, bodyProducer=None):
        parsed = URI.fromBytes(uri)
        try:
            endpoint = self._getEndpoint(parsed)
        except SchemeNotSupported:
            return fail()
        target = uri[len(parsed.scheme) + 3 + len(parsed.netloc) :] or b"/"
        key = (parsed.scheme, parsed.host, parsed.port)
        return self._requestWithEndpoint(
            key, endpoint, method, parsed, headers, bodyProducer, target
        )


def backend_agent(
    reactor, pool: HTTPConnectionPool, group: TargetGroupConfig, connector=None
) -> IAgent:
    """The ``Agent`` that sends requests to ``group``'s backends through ``pool``."""
    return ExactTargetAgent.usingEndpointFactory(
        reactor, _BackendEndpointFactory(reactor, group, connector), pool=pool
    )


def _texts(values: Optional[Sequence[bytes]]) -> List[str]:
    return [value.decode("latin-1") for value in values or ()]


def _last(headers: Headers, name: bytes) -> Optional[str]:
    values = headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else None


def _dropped(name: bytes, hop: frozenset[str]) -> bool:
    return is_hop_by_hop(name.decode("latin-1"), hop)


def response_hop_by_hop(response: IResponse) -> frozenset[str]:
    """The hop-by-hop header names of a backend response, with those its ``Connection`` names."""
    connection = response_connection(response) + list(
        response.headers.getRawHeaders(b"connection", ())
    )
    return hop_by_hop_names(_texts(connection))


def request_info(request: Request, target: bytes) -> RequestInfo:
    """What balancing and session persistence may look at in ``request``."""
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    ]
    query = parse_qs(urlsplit(target.decode("latin-1")).query)
    client = getattr(request.getClientAddress(), "host", None) or ""
    return RequestInfo.build(client, headers, query)


def _trailer_names(values: Optional[Sequence[bytes]], drop: Iterable[str]) -> Optional[bytes]:
    """A ``Trailer`` header value without the names that are never forwarded, else None."""
    skip = FORBIDDEN | frozenset(drop)
    names = [
        token.strip()
        for value in values or ()
        for token in value.split(b",")
        if token.strip() and token.strip().decode("latin-1").lower() not in skip
    ]
    return b", ".join(names) if names else None


def request_trailer_drop(request: Request, rule: Optional[RuleConfig] = None) -> frozenset[str]:
    """Lower-case names never forwarded among ``request``'s trailers, besides ``FORBIDDEN``.

    The headers the proxy drops or sets for the backend (hop-by-hop, those the
    client's ``Connection`` names, the rule's removed and set headers) must not
    come back as trailers.
    """
    drop, _ = header_changes(rule, [])
    connection = _texts(request.requestHeaders.getRawHeaders(b"connection"))
    return frozenset(hop_by_hop_names(connection) | FORWARDING_HEADERS | drop)


def backend_request_headers(
    request: Request,
    *,
    scheme: str,
    trusted: TrustedProxies,
    rule: Optional[RuleConfig] = None,
    via: bool = False,
    underscores: bool = False,
) -> Headers:
    """The headers a backend receives for ``request``.

    End-to-end headers are copied with duplicates and the client's Host kept;
    hop-by-hop headers (and those ``Connection`` names), client-sent
    forwarding headers, an untrusted peer's ``Forwarded`` and names with an
    underscore (see :func:`clbproxy.http.forwarded.client_header_passes`;
    ``underscores`` is the listener's ``underscores_in_headers``) are dropped,
    then the proxy's forwarding headers added
    (X-Forwarded-Port is the listener's port), then the rule's header changes
    applied, then ``Via`` when asked for.

    Trailers: an HTTP/1.1 client's ``TE: trailers`` is passed on as
    ``TE: trailers`` (the proxy relays response trailers to it, so the promise
    holds for the whole chain, as Envoy does); the client's ``Trailer`` header is
    passed on, without the names never forwarded, when its body is chunked.
    """
    client = request.requestHeaders
    drop, add = header_changes(rule, [])
    peer = getattr(request.getClientAddress(), "host", None) or "unknown"
    skip = (
        hop_by_hop_names(_texts(client.getRawHeaders(b"connection")))
        | FORWARDING_HEADERS
        | _REQUEST_ONLY_HEADERS
        | untrusted_headers(peer, trusted)
        | drop
    )
    headers = Headers()
    if request.clientproto == b"HTTP/1.1" and accepts_trailers(client.getRawHeaders(b"te", ())):
        headers.setRawHeaders(b"TE", [b"trailers"])
    body = getattr(request, "body", None)
    if isinstance(body, RequestBody) and body.length is UNKNOWN_LENGTH:
        announced = _trailer_names(client.getRawHeaders(b"trailer"), skip)
        if announced is not None:
            headers.setRawHeaders(b"Trailer", [announced])
    for name, values in client.getAllRawHeaders():
        if client_header_passes(name.decode("latin-1"), skip, underscores=underscores, ours=drop):
            headers.setRawHeaders(name, list(values))
    for name, value in client_certificate_headers(request.channel.transport):
        headers.addRawHeader(name.encode("latin-1"), value.encode("utf-8"))
    for name, value in forwarded_headers(
        peer_ip=peer,
        scheme=scheme,
        host=_last(client, b"host"),
        forwarded_for=_texts(client.getRawHeaders(b"x-forwarded-for")),
        forwarded_proto=_last(client, b"x-forwarded-proto"),
        forwarded_host=_last(client, b"x-forwarded-host"),
        trusted=trusted,
        port=getattr(request.getHost(), "port", None),
    ):
        headers.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
    for name, value in add:
        headers.setRawHeaders(name.encode("latin-1"), [value.encode("latin-1")])
    if via:
        headers.addRawHeader(b"Via", VIA)
    return headers


def response_carries_trailers(response: IResponse, request: Request) -> bool:
    """True when the client's response will be chunked, so it can end with trailers.

    twisted.web chunks a response to an HTTP/1.1 client that has a body and no
    Content-Length; the forwarder sets Content-Length exactly when the backend
    sent one.
    """
    return (
        request.clientproto == b"HTTP/1.1"
        and request.method != b"HEAD"
        and response.code not in _BODYLESS_STATUSES
        and response.length is UNKNOWN_LENGTH
    )


def copy_response_headers(response: IResponse, request: Request) -> None:
    """Put the backend's status and end-to-end headers on the client's response.

    twisted.web frames the client's response itself: a backend Content-Length
    is set explicitly (so it is not chunked), otherwise HTTP/1.1 clients get
    chunked encoding.  The backend's ``Trailer`` header is kept (without the
    names never forwarded) only when that chunked response can carry trailers.
    Hop-by-hop headers never reach the client: those the backend's
    ``Connection`` names (read from the connection headers
    :class:`clbproxy.http.trailers.TrailerClientProtocol` keeps, as Twisted's client
    leaves ``Connection`` out of ``response.headers``), ``Keep-Alive``, ``TE``,
    ``Trailer``, ``Upgrade``, ``Transfer-Encoding``, ``Proxy-*``; the body length
    comes from ``response.length``.
    """
    request.setResponseCode(response.code, response.phrase)
    request.defaultContentType = None
    # The backend's own Server header, or none: not the proxy's.
    request.responseHeaders.removeHeader(b"server")
    backend = response.headers
    hop = response_hop_by_hop(response)
    for name, values in backend.getAllRawHeaders():
        if name.lower() == b"content-length" or _dropped(name, hop):
            continue
        request.responseHeaders.setRawHeaders(name, list(values))
    if request.method == b"HEAD":
        length = backend.getRawHeaders(b"content-length")
        if length:
            request.responseHeaders.setRawHeaders(b"Content-Length", [length[-1]])
    elif response.code not in _BODYLESS_STATUSES and response.length is not UNKNOWN_LENGTH:
        request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % (response.length,)])
    if response_carries_trailers(response, request):
        announced = _trailer_names(backend.getRawHeaders(b"trailer"), hop)
        if announced is not None:
            request.responseHeaders.setRawHeaders(b"Trailer", [announced])


def _caused_by(failure: Failure, error_type: type) -> bool:
    """True when ``failure`` or a reason wrapped in it (Agent's wrappers) is ``error_type``."""
    if failure.check(error_type):
        return True
    return any(_caused_by(reason, error_type) for reason in getattr(failure.value, "reasons", ()))


def describe_failure(failure: Failure) -> str:
    """One line saying why a backend exchange failed, unwrapping Agent's wrapper exceptions."""
    error = failure.value
    inner = getattr(error, "reasons", None)
    if isinstance(error, (ResponseFailed, RequestTransmissionFailed)) and inner:
        causes = "; ".join(describe_failure(reason) for reason in inner)
        return f"{type(error).__name__}: {causes}"
    message = failure.getErrorMessage()
    name = type(error).__name__
    return f"{name}: {message}" if message and message != name else name


class _Unclosable:
    """A read-only view of the request body that ``FileBodyProducer`` cannot close.

    The body belongs to twisted.web's request (it closes it); keeping it open
    lets a retried request send it again.
    """

    def __init__(self, body) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        return self._body.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._body.seek(offset, whence)

    def tell(self) -> int:
        return self._body.tell()

    def close(self) -> None:
        pass


@implementer(IPushProducer)
class _ResponseRelay(Protocol):
    """Receives a backend response body and writes it to the client, paced by the client.

    Registered on the client's request as a streaming producer: twisted.web
    pauses it when the client's socket buffer is full.  Its transport is what
    ``IResponse.deliverBody`` documents, an ``IPushProducer`` for the backend
    connection (Twisted's ``TransportProxyProducer``): pausing it stops reading
    from the backend, stopping it closes the backend connection.
    """

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self._stopped = False

    def connectionMade(self) -> None:
        self._exchange.relay_started(self)

    def dataReceived(self, data: bytes) -> None:
        self._exchange.relay_data(data)

    def connectionLost(self, reason: Failure) -> None:
        self._exchange.relay_finished(reason)

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.transport.stopProducing()


class _Exchange:
    """One client request's way through the proxy: backend attempts, then the response relay."""

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
        self._headers = Headers()
        self._target = b"/"
        self._tried: List[BackendConfig] = []
        self._backend: Optional[BackendConfig] = None
        self._pending: Optional[Deferred] = None
        self._timer: Optional[IDelayedCall] = None
        self._timed_out = False
        self._relay: Optional[_ResponseRelay] = None
        self._response: Optional[IResponse] = None
        self._info = RequestInfo()
        self._lease: Optional[Lease] = None
        #: A backend's status and headers were put on the client's response.
        self._committed = False
        #: The client's response was finished or its connection aborted by us.
        self._done = False
        #: The client's response headers before the backend's were put on it.
        self._own_headers: Optional[Headers] = None
        self._client_gone = False
        self._record = record if record is not None else RequestRecord()
        self._record.group = group.name
        self._started = self._reactor.seconds()

    def start(self) -> None:
        self._request.notifyFinish().addErrback(self._client_lost)
        target = origin_form(self._request.uri)
        if target is None:
            self._error(400, "the request target is not supported")
            return
        self._target = rewrite_target(self._rule, target.decode("latin-1")).encode("latin-1")
        self._headers = backend_request_headers(
            self._request,
            scheme=self._forwarder.scheme,
            trusted=self._forwarder.trusted,
            rule=self._rule,
            via=self._forwarder.via,
            underscores=self._forwarder.underscores,
        )
        self._info = request_info(self._request, target)
        backend = self._group.pick(self._info, exclude=self._tried)
        if backend is None:
            self._error(503, f"no backend available in target group {self._group.name}")
            return
        self._send(backend)

    def _send(self, backend: BackendConfig) -> None:
        self._tried.append(backend)
        self._backend = backend
        self._release()
        self._lease = self._group.acquire(backend)
        self._record.backend = backend.address
        config = self._group.config
        self._timed_out = False
        self._timer = self._reactor.callLater(config.response_timeout, self._response_timed_out)
        d = maybeDeferred(self._request_backend, backend)
        self._pending = d
        d.addCallbacks(
            self._got_response,
            self._attempt_failed,
            callbackArgs=(backend,),
            errbackArgs=(backend,),
        )
        d.addErrback(self.unexpected)

    def _request_backend(self, backend: BackendConfig) -> Deferred:
        config = self._group.config
        agent = self._forwarder.agent_for(config)
        scheme = "https" if config.tls else "http"
        url = f"{scheme}://{backend.address}".encode("ascii") + self._target
        return agent.request(self._request.method, url, self._headers.copy(), self._body())

    def _body(self) -> Optional[IBodyProducer]:
        streamed = getattr(self._request, "body", None)
        if isinstance(streamed, RequestBody):
            streamed.drop_trailers = request_trailer_drop(self._request, self._rule)
            streamed.on_progress = self._body_progress
            return streamed
        client = self._request.requestHeaders
        content = self._request.content
        if content is None or not (
            client.hasHeader(b"content-length") or client.hasHeader(b"transfer-encoding")
        ):
            return None
        content.seek(0)
        return FileBodyProducer(_Unclosable(content))

    def _body_progress(self) -> None:
        """Body bytes went to the backend: its response timeout starts again from now.

        Like nginx's ``proxy_send_timeout``, a streamed upload is timed between
        writes, so a slow but moving upload is never cut by ``response_timeout``.
        """
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._group.config.response_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _response_timed_out(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._pending is not None:
            self._pending.cancel()

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()

    def _attempt_failed(self, failure: Failure, backend: BackendConfig) -> None:
        self._cancel_timer()
        self._pending = None
        self._release()
        if failure.check(*NOT_SENT_ERRORS, ResponseFailed) and not self._client_gone:
            self._group.report_failure(backend, describe_failure(failure))
        if self._client_gone:
            return
        config = self._group.config
        if _caused_by(failure, BodyTooLarge):
            self._error(413, "the request body is too large")
        elif _caused_by(failure, ClientBodyLost):
            # The client left (or timed out) mid-body: its connection's loss ends
            # the exchange next, logged as a client that went away.
            return
        elif self._timed_out:
            self._log_failure(
                backend, f"no response within {config.response_timeout:g} s", "answered 504"
            )
            self._error(504, "the backend did not respond in time")
        elif failure.check(*NOT_SENT_ERRORS):
            retry = None
            if len(self._tried) <= config.retries:
                retry = self._group.pick(exclude=self._tried)
            if retry is not None:
                self._log_failure(
                    backend, describe_failure(failure), f"retrying on {retry.address}"
                )
                self._send(retry)
            else:
                self._log_failure(backend, describe_failure(failure), "answered 502")
                self._error(502, "no backend could be reached")
        elif failure.check(ResponseFailed, RequestTransmissionFailed):
            self._log_failure(backend, describe_failure(failure), "answered 502")
            self._error(502, "the backend closed the connection without a response")
        else:
            self.unexpected(failure)

    def _got_response(self, response: IResponse, backend: BackendConfig) -> None:
        self._cancel_timer()
        self._pending = None
        self._group.report_status(backend, response.code)
        self._record.response_ms = (self._reactor.seconds() - self._started) * 1000
        self._response = response
        if not self._client_gone:
            self._committed = True
            self._own_headers = self._request.responseHeaders.copy()
            copy_response_headers(response, self._request)
            for name, value in self._group.persistence_headers(self._info, backend):
                self._request.responseHeaders.addRawHeader(name, value)
            if self._forwarder.via:
                self._request.responseHeaders.addRawHeader(b"Via", VIA)
        response.deliverBody(_ResponseRelay(self))

    def relay_started(self, relay: _ResponseRelay) -> None:
        if self._client_gone:
            relay.stopProducing()
            return
        self._relay = relay
        self._request.registerProducer(relay, True)

    def relay_data(self, data: bytes) -> None:
        if not self._client_gone:
            self._request.write(data)

    def relay_finished(self, reason: Failure) -> None:
        self._release()
        relay, self._relay = self._relay, None
        if self._client_gone:
            return
        if relay is not None:
            self._request.unregisterProducer()
        # PotentialDataLoss: the backend delimited the body by closing the
        # connection (no Content-Length, not chunked).  That is valid framing
        # and indistinguishable from truncation, so, like every proxy, we
        # take it as the end of the body.
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done = True
            self._pass_trailers()
            self._request.finish()
        elif self._unsent_malformed(reason):
            self._log_failure(self._backend, describe_failure(reason), "answered 502")
            self._request.setResponseCode(200)
            self._request.responseHeaders = self._own_headers
            self._error(502, "the backend's response is malformed")
        else:
            self._log_failure(self._backend, describe_failure(reason), "client connection aborted")
            self._abort_client()

    def _unsent_malformed(self, reason: Failure) -> bool:
        """A backend response with broken chunked framing, nothing of it sent yet (502)."""
        return (
            not self._request.startedWriting
            and self._own_headers is not None
            and _caused_by(reason, _MalformedChunkedDataError)
        )

    def _pass_trailers(self) -> None:
        """Give the client's response the backend's trailers (written if it is chunked)."""
        response = self._response
        fields = response_trailers(response)
        if response is None or not fields or not hasattr(self._request, "response_trailers"):
            return
        if response_carries_trailers(response, self._request):
            hop = response_hop_by_hop(response)
            self._request.response_trailers = forwardable(fields, hop)
        else:
            log.debug("Trailers of a response that is not chunked to the client are dropped")

    def _client_lost(self, reason: Failure) -> None:
        if self._done:
            return
        self._client_gone = True
        self._cancel_timer()
        if self._pending is None and self._relay is None:
            self._release()
        log.info(
            "Client went away before the response from backend {backend} of target group"
            " {group} was complete: {reason}",
            backend=self._backend.address if self._backend else None,
            group=self._group.name,
            reason=describe_failure(reason),
        )
        if self._pending is not None:
            self._pending.cancel()
        if self._relay is not None:
            self._relay.stopProducing()

    def _log_failure(self, backend: Optional[BackendConfig], reason: str, outcome: str) -> None:
        log.warn(
            "HTTP request to backend {backend} of target group {group} failed: {reason}"
            " ({outcome})",
            backend=backend.address if backend else None,
            group=self._group.name,
            reason=reason,
            outcome=outcome,
        )

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
            "Unexpected error forwarding an HTTP request to target group {group}",
            failure,
            group=self._group.name,
        )
        self._cancel_timer()
        self._release()
        if self._done or self._client_gone:
            return
        if self._committed:
            self._abort_client()
        else:
            self._error(502, "the proxy failed to forward the request")


class HTTPForwarder:
    """Forwards plain HTTP requests to a target group's backends.

    One per listener.  It owns one keep-alive :class:`BackendPool` per target
    group (``close`` empties them) and one ``Agent`` per group's settings.  A
    reload that changes a group's TLS or pool settings retires its pool: new
    requests open new connections.  ``agent_factory(reactor, pool, group)``
    builds the agents; tests swap it.
    """

    def __init__(
        self,
        reactor,
        *,
        scheme: str,
        trusted: TrustedProxies,
        agent_factory: Optional[AgentFactory] = None,
        via: bool = False,
        connector: Optional[BackendConnector] = None,
        underscores: bool = False,
    ) -> None:
        self.reactor = reactor
        self.via = via
        #: The listener's ``underscores_in_headers``.
        self.underscores = underscores
        self.scheme = scheme
        self.trusted = trusted
        if agent_factory is None:
            connector = connector if connector is not None else BackendConnector(reactor)

            def agent_factory(reactor, pool, group):
                return backend_agent(reactor, pool, group, connector)

        self._agent_factory = agent_factory
        #: By group name: the settings the group's agent was built for, its pool and agent.
        self._groups: dict[str, tuple[TargetGroupConfig, BackendPool, IAgent]] = {}

    def agent_for(self, group: TargetGroupConfig) -> IAgent:
        """The agent for a target group (its connect timeout, TLS and pool settings)."""
        known = self._groups.get(group.name)
        if known is not None and known[0] == group:
            return known[2]
        if known is not None and _pool_settings(known[0]) == _pool_settings(group):
            pool = known[1]
        else:
            if known is not None:
                known[1].retire()
            pool = BackendPool(self.reactor, group)
        agent = self._agent_factory(self.reactor, pool, group)
        self._groups[group.name] = (group, pool, agent)
        return agent

    def keep_groups(self, names: Iterable[str]) -> None:
        """Forget the pools of groups not in ``names`` (gone after a reload)."""
        kept = set(names)
        for name in [name for name in self._groups if name not in kept]:
            self._groups.pop(name)[1].retire()

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
        pools = [pool for _, pool, _ in self._groups.values()]
        self._groups = {}
        return gatherResults([pool.retire() for pool in pools]).addCallback(lambda _: None)
