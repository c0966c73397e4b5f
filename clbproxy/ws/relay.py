"""The WebSocket relay: one client session, one backend session, messages streamed between.

A session starts when a listener hands a WebSocket upgrade (with its
:class:`Route`: settings, matched rule, target) to the listener's
:class:`RelayServerFactory`; Autobahn builds the client's hop, a
:class:`RelayServerProtocol`, whose ``onConnect`` starts a :class:`RelaySession`.
The session goes through three stages, each in its own module:

- :mod:`clbproxy.ws.handshake_stage`: a backend is picked and connected, its
  handshake request built from the client's, permessage-deflate agreed, and the
  client answered (the backend's 101, its refusal, or ours);
- :mod:`clbproxy.ws.session`: both hops open, linked, timed, and moved to the
  fast path (:mod:`clbproxy.ws.fastpath`) when no hop needs Autobahn;
- :mod:`clbproxy.ws.closing`: what one hop's end means for the other
  (:mod:`clbproxy.ws.closecodes`), the session's log line and access record.

Each hop is an Autobahn protocol with :class:`~clbproxy.ws.hops.RelayingHop` mixed in.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping, Optional

import attrs
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clbproxy.config import BackendConfig, RuleConfig, TargetGroupConfig
from clbproxy.http.responses import raw_error_response
from clbproxy.http.tracecontext import NO_TRACE, TraceContext
from clbproxy.net.endpoints import ConnectOutcome
from clbproxy.net.tls_client import BackendConnector
from clbproxy.net.transports import peer_ip
from clbproxy.observability import accesslog
from clbproxy.routing.actions import rewrite_target
from clbproxy.routing.settings import ListenerSettings
from clbproxy.upstream.balancer import Lease, RequestInfo, TargetGroup
from clbproxy.util import autobahnlog
from clbproxy.ws.closecodes import Side
from clbproxy.ws.closing import Closing, refusal_record
from clbproxy.ws.controls import LifetimeQueue, SessionControls
from clbproxy.ws.deflate import accept_first_deflate_offer
from clbproxy.ws.fastpath import Hop
from clbproxy.ws.handshake_stage import (
    BackendBuilder,
    HandshakeRefused,
    HandshakeStage,
    RelayClientProtocol,
    refuse,
)
from clbproxy.ws.hops import RelayingHop
from clbproxy.ws.livecount import BackendKey, SessionSet
from clbproxy.ws.pauses import InflateBudget
from clbproxy.ws.session import OpenSession
from clbproxy.ws.timers import IdleQueue, ITimerOwner, SessionTimers

log = Logger()

_NOTHING: Mapping = MappingProxyType({})
#: Shared: an empty frozenset is a new object each time it is built (216 bytes).
_NOBODY: frozenset = frozenset()


@attrs.frozen
class Route:
    """A listener's decision for one WebSocket upgrade, handed to the relay.

    The listener matched ``rule`` (None: no rule matches) for ``target`` (the
    request target as received, in origin form) under ``settings``, and its
    admission (allow/deny of the listener and the rule, limits, handshake rate)
    let the client in.  Routing happens there and only there.  It also named
    the upgrade: ``request_id`` (None: IDs are off) and ``trace`` are the
    session's.
    """

    settings: ListenerSettings
    rule: Optional[RuleConfig]
    target: str
    request_id: Optional[str] = None
    trace: TraceContext = NO_TRACE


class RelayServerProtocol(RelayingHop, WebSocketServerProtocol):
    """The client's hop: holds the client's handshake until the backend has answered."""

    side = Side.CLIENT
    _refusal: Optional[bytes] = None
    #: The listener's decision for this upgrade, until the handshake takes it.
    route: Optional[Route] = None
    #: The upgrade's ID, the header it goes in, and its trace context (from its route).
    request_id: Optional[str] = None
    id_header: str = ""
    trace: TraceContext = NO_TRACE

    def onConnect(self, request):
        # The listener routed this upgrade and admitted the client (allow/deny,
        # limits): the relay takes that decision and never routes again, so the
        # rule that was checked is the rule whose backends are connected.
        route, self.route = self.route, None
        if route is None:
            raise self._deny_with(refuse(500, "the upgrade was not routed by a listener"))
        settings, rule, path = route.settings, route.rule, route.target
        if rule is None:
            raise self._deny_with(refuse(404, "no forwarding rule matches this host and path"))
        allowed = settings.allowed_origins(rule)
        if allowed and request.origin and request.origin.lower() not in allowed:
            raise self._deny_with(refuse(403, f"origin {request.origin} is not allowed"))
        self.maxMessagePayloadSize = settings.max_message_size(rule)
        group = settings.groups[rule.target_group]
        self.session = RelaySession(
            reactor=self.factory.reactor,
            settings=settings,
            group=group,
            front=self,
            target=rewrite_target(rule, path),
            connector=self.factory.connector,
            request=RequestInfo.build(
                peer_ip(self.transport), request.headers.items(), request.params
            ),
            rule=rule,
        )
        self.session.tunnel = rule.relay == "tunnel"
        self.factory.sessions.add(self.session)
        d = self.session.start()
        d.addErrback(self._deny)
        return d

    def _deny(self, failure: Failure):
        failure.trap(HandshakeRefused)
        raise self._deny_with(failure.value)

    def _deny_with(self, refused: HandshakeRefused) -> ConnectionDeny:
        """Remember the full response for :meth:`failHandshake`, which Autobahn calls next."""
        self._refusal = refused.response
        return ConnectionDeny(refused.status, refused.detail)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders=None) -> None:
        """Answer a failed handshake with a complete response (ours or the backend's)."""
        if any(name.lower() == "sec-websocket-version" for name, _ in responseHeaders or ()):
            code = 426  # RFC 6455 4.4: an unsupported version gets 426 and the versions we speak
        response = self._refusal
        if response is None:
            headers = list(responseHeaders or ())
            if self.request_id is not None:
                headers.append((self.id_header, self.request_id))
            response = raw_error_response(code, reason, headers)
        if self.session is None:
            accesslog.emit(refusal_record(self, code), self.factory.access)
        self.wasNotCleanReason = reason
        self.sendData(response)
        self.dropConnection(abort=False)

    def onOpen(self) -> None:
        if self.session is not None:
            self.session.client_opened()


class RelayServerFactory(WebSocketServerFactory):
    """One per listener: carries the listener's relay settings to each client hop."""

    protocol = RelayServerProtocol

    def __init__(
        self,
        settings: ListenerSettings,
        reactor: IReactorTime,
        connector: Optional[
            Callable[[BackendConfig, TargetGroupConfig], IStreamClientEndpoint]
        ] = None,
    ) -> None:
        super().__init__(server="clbproxy")
        # Autobahn's debug-log arguments cost a third of a short session's CPU when built eagerly.
        autobahnlog.install()
        self.settings = settings
        self.reactor = reactor
        #: Where the listener's access events go (``listener_service`` sets Observability's).
        self.access = accesslog.log
        #: Live sessions, from the client's upgrade request until both hops are closed
        #: (counted as the status page's charts read them).
        self.sessions: SessionSet = SessionSet()
        #: Idle timeouts of open sessions, one queue per timeout
        #: (see :func:`clbproxy.ws.session.idle_queue`).
        self.idle_queues: dict[float, IdleQueue] = {}
        #: Backend client factories shared by sessions
        #: (see :func:`clbproxy.ws.handshake_stage.backend_factory`).
        self.backend_factories: dict = {}
        #: Lifetimes of open sessions (see :mod:`clbproxy.ws.controls`).
        self.lifetimes = LifetimeQueue(reactor)
        self.connector = connector or (BackendConnector(reactor).relay_endpoint)
        self.setProtocolOptions(
            # The open handshake waits for the backend, bounded by its own timeouts.
            openHandshakeTimeout=0,
            closeHandshakeTimeout=5,
            failByDrop=False,
            maxMessagePayloadSize=settings.listener.max_message_size,
            perMessageCompressionAccept=accept_first_deflate_offer,
            versions=[13],
            # Origins are the listener's policy (allowed_origins); "null" is just an origin.
            allowNullOrigin=True,
        )
        self._resource = WebSocketResource(self)
        self._route: Optional[Route] = None

    def upgrade(self, request, route: Route):
        """Take over ``request``'s connection for the WebSocket handshake, on ``route``.

        Autobahn's resource builds the client hop (:meth:`buildProtocol`) and
        replays the request to it synchronously, so the hop is given the route
        before its ``onConnect`` runs.
        """
        self._route = route
        try:
            return self._resource.render(request)
        finally:
            self._route = None

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        route = self._route
        protocol.route = route
        if route is not None:
            protocol.request_id = route.request_id
            protocol.id_header = route.settings.request_ids.name
            protocol.trace = route.trace
        return protocol


@implementer(ITimerOwner)
class RelaySession(HandshakeStage, OpenSession, Closing, Lease):
    """One relayed WebSocket session: its backend choice, handshake, relay and end.

    Its stages are the classes it is made of
    (:class:`~clbproxy.ws.handshake_stage.HandshakeStage`,
    :class:`~clbproxy.ws.session.OpenSession`, :class:`~clbproxy.ws.closing.Closing`);
    this class holds their state.  The
    session exists from the client's upgrade request until both hops are closed;
    it owns the decision of what one hop's end means for the other.  It is also
    its own :class:`~clbproxy.upstream.balancer.Lease` on the backend it relays
    to (``group``, ``backend_config``), held from the connect until the session
    ends.
    """

    __slots__ = (
        "reactor",
        "factory",
        "request",
        "rule",
        "settings",
        "front",
        "target",
        "connector",
        "backend",
        "_handshake",
        "_connecting",
        "_tried",
        "_told",
        "_ended",
        "_started",
        "_opened",
        "record",
        "_closes",
        "timers",
        "tunnel",
        "_filled",
        "_builder",
        "deflate_offer",
        "deflate",
        "inflate_budget",
        "controls",
        "request_id",
        "trace",
        "client_ip",
        "live_key",
    )

    #: On its backend's ``on_unhealthy = "close"``,
    #: :meth:`~clbproxy.ws.closing.Closing.close` ends the session.
    closable = True

    def last_activity(self) -> Optional[float]:
        """When a frame last passed either way; None until both hops are open.

        Rebalancing relieves the quietest sessions first; a session that never
        carried a frame counts from its open, so among those the oldest goes first.
        """
        if self._opened is None or self.released:
            return None
        timers = self.timers
        return timers.last_activity if timers is not None else self._opened

    @property
    def opened_at(self) -> Optional[float]:
        """When both hops were open (the reactor's time); None before (the status charts)."""
        return self._opened

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        settings: ListenerSettings,
        group: TargetGroup,
        front: RelayServerProtocol,
        target: str,
        connector: Callable[[BackendConfig, TargetGroupConfig], IStreamClientEndpoint],
        request: Optional[RequestInfo] = None,
        rule: Optional[RuleConfig] = None,
    ) -> None:
        self.reactor = reactor
        #: The listener's relay factory: its live sessions and counters.
        self.factory = front.factory
        self.request = request or RequestInfo()
        self.rule = rule
        # Counted on its backend (least_conn, max_conns) from the connect until it ends.
        super().__init__(group, None)
        self.settings = settings
        self.front = front
        self.target = target
        self.connector = connector
        self.backend: Optional[RelayClientProtocol] = None
        self._handshake: Optional[defer.Deferred] = None
        #: The backend connect under way (a Deferred, or its ConnectOutcome: see _connect_next).
        self._connecting: Optional[defer.Deferred | ConnectOutcome] = None
        self._tried: list[BackendConfig] = []
        # Empty shared objects until the session ends: an open session holds none.
        self._told: frozenset[Side] = _NOBODY
        self._ended: Mapping[Side, str] = _NOTHING
        self._started = reactor.seconds()
        self._opened: Optional[float] = None
        self.record = accesslog.SessionRecord()
        self._closes: Mapping[Side, tuple] = _NOTHING
        #: The idle timeout and pings, once both hops are open.
        self.timers: Optional[SessionTimers] = None
        #: Splice bytes after the handshake instead of relaying checked frames.
        self.tunnel = False
        #: The access record's request fields are filled (at open, from the upgrade request).
        self._filled = False
        self._builder: Optional[BackendBuilder] = None
        #: End to end permessage-deflate: the client's offer, passed to the backend,
        #: until the backend has answered.
        self.deflate_offer: Optional[PerMessageDeflateOffer] = None
        #: Once agreed end to end: whether the client and the backend start each
        #: compressed message with a fresh window (their ``no_context_takeover``).
        self.deflate: Optional[tuple[bool, bool]] = None
        #: The session's allowance of inflated bytes (``websocket_inflate_rate``),
        #: once open with permessage-deflate on a hop and a rate set.
        self.inflate_budget: Optional[InflateBudget] = None
        #: Rate limits and lifetime, once open, when the listener or rule sets any.
        self.controls: Optional[SessionControls] = None
        #: The session's ID (None: IDs are off) and trace context, named by the listener.
        self.request_id: Optional[str] = getattr(front, "request_id", None)
        self.trace: TraceContext = getattr(front, "trace", NO_TRACE)
        #: The client's address, read once (each ``getPeer`` builds an address object).
        self.client_ip: str = self.request.client_ip or peer_ip(front.transport)
        #: Its backend as the listener's :class:`~clbproxy.ws.livecount.SessionSet`
        #: counts it, from the client's 101 until it ends (None: not counted).
        self.live_key: Optional[BackendKey] = None


#: The protocols of a client connection that became a WebSocket session on the
#: Autobahn path (see :func:`clbproxy.ws.passthrough.is_relay_hop` for all paths).
RELAY_HOPS = (WebSocketServerProtocol, Hop)
