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

This module holds the exchange (each request's attempts, timeouts, errors and
the end of its response) and :class:`HTTPForwarder`, which owns the pools.
The pieces it drives live beside it: the agent, endpoints and pool in
:mod:`clbproxy.http.backend_client`, the headers both ways in
:mod:`clbproxy.http.proxy_headers`, the response body relay in
:mod:`clbproxy.http.response_relay`.
"""

from __future__ import annotations

from typing import Iterable, List, Optional
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    FileBodyProducer,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss, _MalformedChunkedDataError
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.server import NOT_DONE_YET, Request

from clbproxy.config import BackendConfig, RuleConfig, TargetGroupConfig
from clbproxy.http.backend_client import (
    NOT_SENT_ERRORS,
    AgentFactory,
    BackendPool,
    backend_agent,
    caused_by,
    describe_failure,
    pool_settings,
)
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.proxy_headers import (
    VIA,
    backend_request_headers,
    copy_response_headers,
    proxy_named,
    request_trailer_drop,
    response_carries_trailers,
    response_hop_by_hop,
)
from clbproxy.http.response_relay import ResponseRelay, UnclosableBody
from clbproxy.http.responses import negotiated_error
from clbproxy.http.server import BodyTooLarge, ClientBodyLost, RequestBody, origin_form
from clbproxy.http.tracecontext import NO_TRACE
from clbproxy.http.trailers import forwardable, response_trailers
from clbproxy.net.tls_client import BackendConnector
from clbproxy.observability.accesslog import RequestRecord
from clbproxy.routing.actions import rewrite_target
from clbproxy.upstream.balancer import Lease, RequestInfo, TargetGroup

log = Logger()


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
    query = parse_qs(urlsplit(target.decode("latin-1")).query)
    client = getattr(request.getClientAddress(), "host", None) or ""
    return RequestInfo.build(client, headers, query)


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
        self._relay: Optional[ResponseRelay] = None
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
        request_id = getattr(request, "request_id", None)
        #: ``(header, ID)`` of the request, None when IDs are off.
        self._request_id = None if request_id is None else (forwarder.id_header, request_id)

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
            request_id=self._request_id,
            trace=getattr(self._request, "trace", NO_TRACE),
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
            streamed.drop_trailers = request_trailer_drop(
                self._request,
                self._rule,
                proxy_named(
                    self._request_id[0].decode("latin-1") if self._request_id else None,
                    getattr(self._request, "trace", NO_TRACE),
                ),
            )
            streamed.on_progress = self._body_progress
            return streamed
        client = self._request.requestHeaders
        content = self._request.content
        if content is None or not (
            client.hasHeader(b"content-length") or client.hasHeader(b"transfer-encoding")
        ):
            return None
        content.seek(0)
        return FileBodyProducer(UnclosableBody(content))

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
        if caused_by(failure, BodyTooLarge):
            self._error(413, "the request body is too large")
        elif caused_by(failure, ClientBodyLost):
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
            if self._request_id is not None:
                # The client is told the ID the backend was sent, whatever it answers.
                name, value = self._request_id
                self._request.responseHeaders.setRawHeaders(name, [value.encode("ascii")])
            for name, value in self._group.persistence_headers(self._info, backend):
                self._request.responseHeaders.addRawHeader(name, value)
            if self._forwarder.via:
                self._request.responseHeaders.addRawHeader(b"Via", VIA)
        response.deliverBody(ResponseRelay(self))

    def relay_started(self, relay: ResponseRelay) -> None:
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
            and caused_by(reason, _MalformedChunkedDataError)
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
            " {group} was complete: {reason} request_id={request_id}",
            backend=self._backend.address if self._backend else None,
            group=self._group.name,
            reason=describe_failure(reason),
            request_id=self._shown_id(),
        )
        if self._pending is not None:
            self._pending.cancel()
        if self._relay is not None:
            self._relay.stopProducing()

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

    One per listener.  It owns one keep-alive
    :class:`~clbproxy.http.backend_client.BackendPool` per target group
    (``close`` empties them) and one ``Agent`` per group's settings.  A
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
        id_header: bytes = b"X-Request-Id",
    ) -> None:
        self.reactor = reactor
        self.via = via
        #: The listener's ``request_id_header``, the name requests' IDs are sent under.
        self.id_header = id_header
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
        if known is not None and pool_settings(known[0]) == pool_settings(group):
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
