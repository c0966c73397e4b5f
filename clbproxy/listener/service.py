"""A listener: one socket, one HTTP/1.1 parser, WebSocket and plain HTTP on the same port.

Each connection is a :class:`~clbproxy.listener.connection.ListenerConnection`
(the sans-IO request parser); it hands every request to
:class:`ListenerResource`.  Requests that ask for a WebSocket upgrade are
handed, transport and all, to the relay; all others are routed by the
listener's rules and forwarded to a backend.  No configuration turns WebSocket
on: an HTTP listener carries WS, as on a cloud balancer.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import attrs
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from clbproxy.config import FixedResponseConfig, ListenerConfig
from clbproxy.http.field_headers import FieldHeaders, field_key
from clbproxy.http.forwarded import claimed_client_ip
from clbproxy.http.forwarder import HTTPForwarder, render_error
from clbproxy.http.redirect import RedirectToHTTPS, local_host, redirect_host
from clbproxy.http.request_id import new_request_id
from clbproxy.http.responses import reason_phrase
from clbproxy.http.tracecontext import NO_TRACE, trace_context
from clbproxy.http2.connection import H2Limits, H2ServerConnection
from clbproxy.listener.connection import ListenerSite
from clbproxy.listener.limits import (
    Admission,
    ConnectionGate,
    ConnectionLimiter,
    LimitStats,
    Refusal,
    socket_bind,
)
from clbproxy.net.alpn import ALPNChoice
from clbproxy.net.certificates import CertificateError
from clbproxy.net.tls import ServerTLS, server_tls, tls_factory
from clbproxy.net.tls_client import BackendConnector
from clbproxy.net.transports import innermost_protocol
from clbproxy.observability.accesslog import request_record
from clbproxy.routing.actions import rule_redirect
from clbproxy.routing.router import BadPath
from clbproxy.routing.settings import ListenerSettings
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.util.logtext import printable
from clbproxy.ws.handshake import request_target
from clbproxy.ws.passthrough import pass_through
from clbproxy.ws.relay import RelayServerFactory, Route

log = Logger()

#: Methods a ``405`` lists in ``Allow``: the proxy forwards any method but ``TRACE``
#: (and ``CONNECT``, see :func:`clbproxy.http.parse_rules.request_line_problem`).
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

#: TRACE would echo a request's headers (cookies, credentials the proxy adds)
#: back to whoever sent it; nginx answers 405 as well.
TRACE_REFUSED = Refusal(405, "TRACE is not allowed", "trace", (("Allow", ALLOWED_METHODS),))


def is_websocket_upgrade(request: Request) -> bool:
    """True when the request asks to switch to WebSocket (``Upgrade: websocket``).

    On HTTP/2, an extended CONNECT (RFC 8441) is one: the connection lets
    through only ``:protocol websocket``, and only with ``websocket_over_http2``.
    """
    if getattr(request, "protocol", None) is not None:
        return True
    return _names_websocket(request.requestHeaders.getRawHeaders(b"upgrade", []))


def _names_websocket(upgrades) -> bool:
    """True when one of the ``Upgrade`` values names ``websocket`` among its tokens."""
    for value in upgrades:
        if value.strip().lower() == b"websocket":  # one token, as clients send it
            return True
        if any(token.strip().lower() == b"websocket" for token in value.split(b",")):
            return True
    return False


#: The request fields :meth:`ListenerResource.render` reads (``FieldHeaders`` keys).
_UPGRADE, _HOST, _X_FORWARDED_FOR = (
    field_key(name) for name in (b"upgrade", b"host", b"x-forwarded-for")
)
#: The W3C ``traceparent`` field's key.
_TRACEPARENT = field_key(b"traceparent")


def identify(
    request: Request, settings: ListenerSettings, grouped: Optional[Mapping] = None
) -> None:
    """Name ``request`` and read its trace context, before anything answers it.

    Its ID (:class:`clbproxy.http.request_id.RequestIds`) becomes its
    ``request_id`` and a header of its response, so every answer carries it,
    the proxy's own included; its ``trace`` is its
    :class:`clbproxy.http.tracecontext.TraceContext`.
    ``grouped``: a listener request's fields as its ``FieldHeaders`` group
    them (its response's are ``FieldHeaders`` too), read and set through their
    keys; None: through ``getRawHeaders``/``setRawHeaders``.
    """
    policy = settings.request_ids
    headers = request.requestHeaders
    if policy.name:
        if grouped is not None:
            received = grouped.get(policy.field) or None
        else:
            received = headers.getRawHeaders(policy.key)
        if received is None:
            request_id = new_request_id()  # nothing to weigh: no ID was sent
        else:
            peer = getattr(request.getClientAddress(), "host", None) or ""
            request_id = policy.choose(received, peer)
        request.request_id = request_id
        value = request_id.encode()  # ASCII (new or well formed): UTF-8's fast path
        if grouped is not None:
            request.responseHeaders.set_field(policy.field, value)
        else:
            request.responseHeaders.setRawHeaders(policy.raw_name, [value])
    if grouped is not None:
        traceparents = grouped.get(_TRACEPARENT) or None
    else:
        traceparents = headers.getRawHeaders(b"traceparent")
    request.trace = trace_context(traceparents, settings.trace)


class ListenerResource(Resource):
    """The root of a listener's site: upgrades to the relay, other requests to the forwarder.

    The listener's settings are read from the relay factory on every request, so a
    reload that swaps them applies to the next request (sessions keep theirs).
    """

    isLeaf = True

    def __init__(self, relay: RelayServerFactory, forwarder, admission: Admission) -> None:
        super().__init__()
        self._relay = relay
        self._forwarder = forwarder
        self._admission = admission

    def _record(
        self, request: Request, settings: ListenerSettings, rule, client: Optional[str] = None
    ):
        """The access-log record of a request this resource answers (not a relayed session).

        ``client``: its address as admission worked it out (None: not yet).
        """
        forwarder = self._forwarder
        return request_record(
            request,
            settings.listener.name,
            rule,
            forwarder.reactor,
            forwarder.trusted,
            self._relay.access,
            client,
        )

    def render(self, request: Request):
        settings: ListenerSettings = self._relay.settings
        headers = request.requestHeaders
        # A listener's request: its fields read in their dict.
        grouped = headers.grouped() if type(headers) is FieldHeaders else None
        identify(request, settings, grouped)
        if request.method == b"TRACE":
            self._record(request, settings, None)
            return self._refuse(request, TRACE_REFUSED)
        if grouped is not None:
            get = grouped.get
            upgrades, hosts, claimed = get(_UPGRADE), get(_HOST), get(_X_FORWARDED_FOR)
        else:
            get = headers.getRawHeaders
            upgrades, hosts, claimed = get(b"upgrade"), get(b"host"), get(b"x-forwarded-for")
        over_http2 = getattr(request, "protocol", None) is not None
        # is_websocket_upgrade(request), its fields read above
        upgrade = over_http2 or (upgrades is not None and _names_websocket(upgrades))
        if over_http2 and settings.listener.websocket_deflate != "end_to_end":
            # Refused by the configuration's checks; kept so a stream never reaches Autobahn.
            self._record(request, settings, None)
            return render_error(request, 501, "WebSocket over HTTP/2 needs end_to_end deflate")
        if upgrade and request.clientproto != b"HTTP/1.1" and not over_http2:
            self._record(request, settings, None)
            return render_error(request, 400, "a WebSocket handshake needs HTTP/1.1")
        if upgrade and getattr(request, "body", None) is not None:
            # Autobahn takes the connection over at the headers, so a body's bytes
            # would be parsed as HTTP on a channel that no longer has a transport.
            self._record(request, settings, None)
            request.setHeader(b"Connection", b"close")
            request.channel.persistent = False
            return render_error(request, 400, "a WebSocket handshake has no body")
        host = hosts[-1] if hosts else None  # getHeader's value
        host_text = host.decode("latin-1") if host else None
        target = request_target(request.uri.decode("latin-1"))
        try:
            rule = settings.router.match_target(host_text, target)
        except BadPath as e:
            self._record(request, settings, None)
            log.info(
                "{client} {method} {path}: 400 {detail} request_id={request_id}",
                client=getattr(request.getClientAddress(), "host", "-"),
                method=printable(request.method.decode("latin-1")),
                path=printable(request.uri.decode("latin-1")),
                detail=printable(str(e)),
                request_id=getattr(request, "request_id", None) or "-",
            )
            if upgrade:
                request.setHeader(b"Connection", b"close")
                request.channel.persistent = False
            return render_error(request, 400, str(e))
        peer = getattr(request.getClientAddress(), "host", "") or ""
        # (the peer itself when no X-Forwarded-For was sent: claimed_client_ip's answer)
        client = claimed_client_ip(peer, claimed, settings.trusted) if claimed else peer
        refusal = self._admission.check(client, rule, websocket=upgrade)
        # The access record's client too, unless the peer has no address (the
        # record's is then "-"-based, admission's ""-based).
        known = client if peer else None
        if refusal is not None:
            self._record(request, settings, rule, known)
            return self._refuse(request, refusal)
        if upgrade and (rule is None or rule.target_group is not None):
            # The relay answers (or refuses) the handshake itself, on this route.
            route = Route(
                settings,
                rule,
                target,
                getattr(request, "request_id", None),
                getattr(request, "trace", NO_TRACE),
            )
            if settings.listener.websocket_deflate == "end_to_end":
                pass_through(self._relay, request, route)
                result = NOT_DONE_YET
            else:
                result = self._relay.upgrade(request, route)
            if request in getattr(request.channel, "requests", ()):
                # Autobahn's resource (per_hop) took the transport without hand_off():
                # the connection still holds the request (the pass-through let go).
                self._forwarder.reactor.callLater(0, release_upgraded, request)
            return result
        forwarder = self._forwarder
        record = self._record(request, settings, rule, known)
        if upgrade:
            # A fixed response or redirect ends the connection, as the relay's refusals do.
            request.setHeader(b"Connection", b"close")
            request.channel.persistent = False
        if rule is None:
            return render_error(request, 404, "no forwarding rule matches this host and path")
        if rule.fixed_response is not None:
            return render_fixed_response(request, rule.fixed_response)
        if rule.redirect is not None:
            status, headers = rule_redirect(
                rule,
                method=request.method,
                scheme=forwarder.scheme,
                host=redirect_host(host_text, local_host(request), keep_port=True),
                request_uri=target,
            )
            request.setResponseCode(status)
            for name, value in headers:
                request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
            return render_error(request, status, f"moved to {headers[0][1]}")
        return forwarder.forward(request, settings.groups[rule.target_group], rule, record)

    def _refuse(self, request: Request, refusal: Refusal) -> bytes:
        log.info(
            "{client} {method} {path}: {status} {detail} request_id={request_id}",
            client=getattr(request.getClientAddress(), "host", "-"),
            method=printable(request.method.decode("latin-1")),
            path=printable(request.uri.decode("latin-1")),
            status=refusal.status,
            detail=printable(refusal.detail),
            request_id=getattr(request, "request_id", None) or "-",
        )
        body = render_error(request, refusal.status, refusal.detail)
        request.setResponseCode(refusal.status, reason_phrase(refusal.status).encode("ascii"))
        for name, value in refusal.headers:
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        if refusal.status in (429, 503) or is_websocket_upgrade(request):
            request.setHeader(b"connection", b"close")
            request.channel.persistent = False
        return body


def release_upgraded(request: Request) -> None:
    """Let an upgraded request and its channel be freed as soon as nothing uses them.

    Autobahn's resource (the ``per_hop`` path) took the connection over in the
    middle of the request without
    :meth:`~clbproxy.listener.connection.ListenerConnection.hand_off`, so the
    request is never finished: the connection's request list and the request
    keep each other (and the upgrade's headers, a few KB) alive until the next
    full garbage collection, which in a burst of handshakes comes late.  Run
    once the request's own call chain has returned.
    """
    channel = request.channel
    if channel is not None and channel.transport is None and request in channel.requests:
        channel.requests.remove(request)


def render_fixed_response(request: Request, fixed: FixedResponseConfig) -> bytes:
    """Answer a rule's fixed response."""
    body = fixed.body.encode("utf-8")
    request.setResponseCode(fixed.status)
    request.setHeader(b"Content-Type", fixed.content_type.encode("latin-1"))
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    return b"" if request.method == b"HEAD" else body


class ListenerService(StreamServerEndpointService):
    """Listens on a listener's endpoint; on stop, also closes its backend connections.

    ``swap(listener, groups)`` gives the running listener new settings (a reload
    that keeps its ``bind``): connections and sessions already open keep theirs.
    """

    def __init__(
        self,
        endpoint,
        limiter: ConnectionLimiter,
        forwarder: HTTPForwarder,
        relay: RelayServerFactory,
        site: ListenerSite,
        admission: Admission,
    ) -> None:
        super().__init__(endpoint, limiter)
        self._forwarder = forwarder
        self.relay = relay
        self.site = site
        self.limiter = limiter
        self.admission = admission
        self.stats = admission.stats
        #: The listener's :class:`clbproxy.net.tls.ServerTLS` (HTTPS listeners), else None.
        self.tls = None
        #: The site's resource when the listener forwards (not ``redirect_to_https``).
        self.resource: Optional[Resource] = None
        # Fail start-up on a bind error instead of only logging it.
        self._raiseSynchronously = True

    @property
    def forwarder(self) -> HTTPForwarder:
        return self._forwarder

    @property
    def listener(self) -> ListenerConfig:
        return self.relay.settings.listener

    def privilegedStartService(self):
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port):
        self.limiter.listening(port)
        return port

    def needs_new_tls(self, listener: ListenerConfig) -> bool:
        """Whether ``listener`` turns this plain listener into an HTTPS one."""
        return listener.tls is not None and self.tls is None

    def swap(
        self,
        listener: ListenerConfig,
        groups: Mapping[str, TargetGroup],
        tls: Optional[ServerTLS] = None,
    ) -> None:
        """Use ``listener``'s settings and ``groups`` for every new request and session.

        The protocol may change (``http`` <-> ``https``) on the same socket: new
        connections are then accepted with or without TLS, while connections already
        open go on as they started.  Turning TLS on needs ``tls``, built beforehand
        (:meth:`needs_new_tls`, :func:`clbproxy.net.tls.server_tls`) so that a broken
        certificate refuses the whole reload instead of half-applying it.
        """
        before = self.listener
        settings = ListenerSettings.from_config(listener, dict(groups))
        self.relay.settings = settings
        self.relay.setProtocolOptions(maxMessagePayloadSize=listener.max_message_size)
        self._forwarder.trusted = settings.trusted
        self._forwarder.via = listener.via
        self._forwarder.underscores = listener.underscores_in_headers
        self._forwarder.set_id_header(settings.request_ids.raw_name)
        self._forwarder.scheme = settings.scheme
        self._forwarder.keep_groups(groups)
        if listener.tls is None:
            if self.tls is not None:
                self.limiter.wrappedFactory = self.site
                self.tls = None
        elif self.tls is None:
            if tls is None:
                raise ValueError("turning TLS on needs the listener's ServerTLS")
            self.tls = tls
            self.limiter.wrappedFactory = served_over_tls(tls, self.site, self.site.reactor)
        else:
            try:
                self.tls.reload(listener)
            except CertificateError:
                pass  # Logged by reload; the old certificates keep serving.
        if self.resource is not None:
            redirecting = isinstance(self.site.resource, RedirectToHTTPS)
            if listener.redirect_to_https:
                if not redirecting or self.site.resource.https_port != listener.https_port:
                    self.site.resource = RedirectToHTTPS(listener.https_port)
            elif redirecting:
                self.site.resource = self.resource
        self.site.configure(listener)
        self.admission.configure(listener)
        self.limiter.configure(
            max_connections=listener.max_connections,
            max_per_ip=listener.max_connections_per_ip,
            trusted=settings.trusted,
        )
        if self.name != f"listener:{listener.name}":
            _rename(self, f"listener:{listener.name}")
        if connection_settings_changed(before, listener):
            self.goaway_http2("its TLS or HTTP/2 settings changed")

    def goaway_http2(self, reason: str) -> int:
        """Send every open HTTP/2 connection ``GOAWAY``: its open streams finish, then it
        closes, and the client reconnects with the settings in force now.  Returns how
        many were told (logged with ``reason``)."""
        told = 0
        for connection in list(self.limiter.protocols):
            channel = innermost_protocol(connection)
            if isinstance(channel, H2ServerConnection) and not channel.draining:
                channel.drain()
                told += 1
        if told:
            log.info(
                "listener {listener}: GOAWAY to {count} HTTP/2 connection(s): {reason}",
                listener=self.listener.name,
                count=told,
                reason=reason,
            )
        return told

    def stopService(self):
        d = super().stopService()
        self.limiter.stopped()
        d.addBoth(lambda result: self._forwarder.close())
        return d


def connection_settings_changed(before: ListenerConfig, after: ListenerConfig) -> bool:
    """Whether a reload changes what an open HTTP/2 connection was set up with.

    Its TLS (certificates configured, protocols, client certificates), its
    protocol or any ``http2*`` key: an HTTP/2 connection lasts as long as its
    client keeps it, so without a GOAWAY it would never see them.  Everything
    else (rules, groups, limits, headers) applies to its next stream, and
    certificate files renewed under the same names go to new handshakes: a
    reload that changes only those, as a fleet push mostly does, leaves every
    HTTP/2 client alone.
    """
    if before.protocol != after.protocol or before.tls != after.tls:
        return True
    return any(
        getattr(before, name) != getattr(after, name)
        for name in attrs.fields_dict(type(after))
        if name.startswith(("http2", "websocket_over_http2"))
    )


def _rename(service, name: str) -> None:
    parent = service.parent
    if parent is not None and getattr(parent, "namedServices", {}).get(service.name) is service:
        del parent.namedServices[service.name]
        parent.namedServices[name] = service
    service.name = name


def served_over_tls(tls: ServerTLS, site: ListenerSite, reactor):
    """The site behind TLS, its connections served by the protocol ALPN chose.

    With ``http2`` on, a client that chose ``h2`` gets an
    :class:`~clbproxy.http2.connection.H2ServerConnection` whose streams go to
    the same resource (rules, admission, forwarder, access log) as HTTP/1.1
    requests, each checked against the connection's certificate (421); the
    listener's limits are read per connection, so a reload applies to new ones.
    """

    def http2_protocol() -> H2ServerConnection:
        return H2ServerConnection(
            site.resource,
            H2Limits.from_listener(site.listener),
            reactor,
            site.request_ids,
            authority_check=lambda transport: tls.authority_check(transport.getHandle()),
            stats=site.stats,
        )

    return tls_factory(tls, ALPNChoice(site, http2_protocol, reactor), reactor)


def listener_service(
    listener: ListenerConfig,
    groups: Mapping[str, TargetGroup],
    reactor,
    gate: Optional[ConnectionGate] = None,
    endpoint_for: Optional[Callable[[str], IStreamServerEndpoint]] = None,
    access: Optional[Logger] = None,
) -> ListenerService:
    """The service for one ``[[listener]]``, named ``listener:NAME``.

    ``gate`` counts connections against the global ``max_connections``.  An HTTPS
    listener wraps the site in TLS (inside the connection limiter and the bind
    endpoint), so under ``haproxy:`` the PROXY header comes first and the TLS
    handshake after: the limiter reads that header (see
    :class:`clbproxy.listener.limits.ProxiedConnection`), so the endpoint is the socket
    without ``haproxy:``.  ``endpoint_for(bind)`` gives the endpoint to listen on
    for the full ``bind`` (default: ``serverFromString`` of the socket's part; a
    worker process adopts the supervisor's sockets through it).  ``access`` is the
    logger its access events go through (:attr:`Observability.access_events
    <clbproxy.observability.service.Observability.access_events>`; default: the
    global publisher).  Its ``tls``
    attribute (:class:`clbproxy.net.tls.ServerTLS`) reloads certificates.
    """
    settings = ListenerSettings.from_config(listener, dict(groups))
    stats = LimitStats()
    connector = BackendConnector(reactor)
    forwarder = HTTPForwarder(
        reactor,
        scheme=settings.scheme,
        trusted=settings.trusted,
        via=listener.via,
        connector=connector,
        underscores=listener.underscores_in_headers,
        id_header=settings.request_ids.raw_name,
    )
    relay = RelayServerFactory(settings, reactor, connector=connector.relay_endpoint)
    if access is not None:
        relay.access = access
    relay.stats = stats
    admission = Admission(listener, reactor, stats)
    forwarding = ListenerResource(relay, forwarder, admission)
    root = forwarding
    if listener.redirect_to_https:
        root = RedirectToHTTPS(listener.https_port)
    site = ListenerSite(root, listener, reactor, stats)
    tls = None
    served = site
    if listener.tls is not None:
        tls = server_tls(listener)
        served = served_over_tls(tls, site, reactor)
    limiter = ConnectionLimiter(
        served,
        gate if gate is not None else ConnectionGate(),
        clock=reactor,
        max_connections=listener.max_connections,
        max_per_ip=listener.max_connections_per_ip,
        trusted=settings.trusted,
        stats=stats,
        proxy_protocol=socket_bind(listener.bind) != listener.bind,
    )
    if endpoint_for is None:
        endpoint = serverFromString(reactor, socket_bind(listener.bind))
    else:
        endpoint = endpoint_for(listener.bind)
    service = ListenerService(endpoint, limiter, forwarder, relay, site, admission)
    service.setName(f"listener:{listener.name}")
    service.tls = tls
    service.resource = forwarding
    return service
