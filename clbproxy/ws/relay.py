"""The WebSocket relay: one client session, one backend session, messages streamed between.

A session starts when a listener hands a WebSocket upgrade to Autobahn.  The
client's handshake is held open (``onConnect`` returns a Deferred) while the relay
picks a backend, connects, and performs its own handshake with it; only when the
backend accepts does the client get its ``101``, with the subprotocol the backend
chose.  A backend that refuses gets its status, headers and body passed back to
the client; one that cannot be reached gets 502 (after trying another), one that
does not answer in time 504.

Once both hops are open, messages are streamed frame by frame in both directions
(Autobahn's streaming API), so a message of any size never sits whole in memory;
each hop negotiates permessage-deflate and answers pings on its own.  Each hop's
transport has a :class:`WriteBufferWatch` as its streaming producer (as in
``twisted.protocols.portforward``): when one side cannot keep up, the other is
no longer read, nor is that side itself (it does not read our pongs either;
meanwhile only its latest ping is answered, once the buffer drains).  Why a hop
is not read is held by its :class:`~clbproxy.ws.pauses.ReadPauses`.  How the end
of one hop ends the other is decided by :mod:`clbproxy.ws.closecodes`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence

import attrs
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectingRequest, ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import (
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.http.forwarded import (
    FORWARDING_HEADERS,
    TrustedProxies,
    client_header_passes,
    forwarded_headers,
    hop_by_hop_names,
    is_hop_by_hop,
    real_client_ip,
    untrusted_headers,
)
from clbproxy.http.forwarder import VIA, origin_form
from clbproxy.http.responses import raw_error_response, raw_response
from clbproxy.net.endpoints import disable_nagle
from clbproxy.net.tls import BackendConnector, client_certificate_headers
from clbproxy.observability import accesslog
from clbproxy.routing.actions import header_changes, rewrite_target
from clbproxy.routing.router import Router
from clbproxy.upstream.balancer import Lease, RequestInfo, TargetGroup
from clbproxy.util import autobahnlog
from clbproxy.util.logtext import printable
from clbproxy.ws.closecodes import (
    HopEnd,
    HopEvent,
    Side,
    close_for_other_hop,
    received_close_problem,
)
from clbproxy.ws.fastpath import control_frame, send_now, socket_under, start_fast_path
from clbproxy.ws.frames import PONG
from clbproxy.ws.handshake import RefusalReader, parse_response_head
from clbproxy.ws.pauses import InflateBudget, PauseReason, ReadPauses
from clbproxy.ws.timers import IdleQueue, ITimerOwner, SessionTimers

log = Logger()

_NOTHING: Mapping = MappingProxyType({})
#: Shared: an empty frozenset is a new object each time it is built (216 bytes).
_NOBODY: frozenset = frozenset()

# Autobahn's debug-log arguments cost a third of a short session's CPU when built eagerly.
autobahnlog.install()

OPEN = WebSocketProtocol.STATE_OPEN
CONNECTING = WebSocketProtocol.STATE_CONNECTING

#: Request headers Autobahn writes itself on the backend handshake, or that
#: describe only the client's hop.
_HANDSHAKE_REQUEST_HEADERS = frozenset(
    {
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "origin",
        "user-agent",
        "pragma",
        "cache-control",
        "content-length",
    }
)

#: Backend 101 response headers that describe only the backend's hop.
_HANDSHAKE_RESPONSE_HEADERS = frozenset(
    {
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
        "server",
        "date",
    }
)


class HandshakeRefused(Exception):
    """The client's handshake is answered with a complete HTTP response, not a 101."""

    def __init__(self, response: bytes, status: int, detail: str) -> None:
        super().__init__(detail)
        self.response = response
        self.status = status
        self.detail = detail


def _refuse(status: int, detail: str, headers: list[tuple[str, str]] = ()) -> HandshakeRefused:
    return HandshakeRefused(raw_error_response(status, detail, headers), status, detail)


@attrs.frozen
class RelaySettings:
    """What a listener's relay needs to know, taken from its configuration."""

    listener: ListenerConfig
    router: Router
    groups: dict
    scheme: str = "http"
    trusted: TrustedProxies = TrustedProxies()

    @classmethod
    def from_config(cls, listener: ListenerConfig, groups: dict[str, TargetGroup]) -> RelaySettings:
        return cls(
            listener=listener,
            router=Router(listener.rules, listener.default_domain),
            groups=groups,
            scheme="https" if listener.protocol == "https" else "http",
            trusted=TrustedProxies.from_cidrs(listener.trusted_proxies),
        )

    def allowed_origins(self, rule: RuleConfig) -> tuple[str, ...]:
        if rule.allowed_origins is not None:
            return rule.allowed_origins
        return self.listener.allowed_origins

    def max_message_size(self, rule: RuleConfig) -> int:
        if rule.max_message_size is not None:
            return rule.max_message_size
        return self.listener.max_message_size


@implementer(IPushProducer)
class WriteBufferWatch:
    """Registered as the producer of one hop's transport: tells ``hop`` when it fills and drains.

    Twisted pauses a transport's producer when its write buffer passes
    ``bufferSize`` (the listener's ``session_buffer``) and resumes it once the
    buffer is empty; the hop then stops reading the other hop and itself (see
    ``write_buffer_full``), which is what bounds a session's memory when one side
    reads slower than the other writes, or sends pings and reads no pongs.
    When the session moves to the fast path, ``hop`` becomes its
    :class:`~clbproxy.ws.fastpath.Hop`.
    """

    __slots__ = ("hop",)

    def __init__(self, hop) -> None:
        self.hop = hop

    def pauseProducing(self) -> None:
        self.hop.write_buffer_full()

    def resumeProducing(self) -> None:
        self.hop.write_buffer_drained()

    def stopProducing(self) -> None:
        pass


def read_again(hop) -> None:
    """Read ``hop`` whatever held it: its closing handshake must get through."""
    pauses = getattr(hop, "pauses", None)
    if pauses is not None:
        pauses.release()
    elif hop.transport is not None:
        hop.transport.resumeProducing()


def _innermost_transport(transport):
    """The socket transport under any protocol wrappers (connection limiter, TLS, PROXY protocol).

    A wrapper answers for its transport's attributes (``ProtocolWrapper.__getattr__``),
    so it is recognised by its type, not by the attributes it seems to have:
    setting ``bufferSize`` or ``producer`` on it would not reach the socket.
    """
    for _ in range(8):
        if not isinstance(transport, ProtocolWrapper) or transport.transport is None:
            break
        transport = transport.transport
    return transport


class _Relaying:
    """Streaming message relay shared by both hops; ``peer`` is the opposite hop.

    Each inbound frame chunk is held until the next one arrives, so a message that
    arrives in one piece (most messages) leaves as one frame, and a long message
    leaves as a stream of frames with at most one chunk held.
    """

    side: Side
    session: Optional[RelaySession] = None
    peer = None
    #: The fast path's hop that took this connection over (see :mod:`clbproxy.ws.fastpath`).
    _fast = None
    _pending: Optional[bytes] = None
    _begun = False
    _binary = False
    _messages = 0
    #: Why this hop is not read, once the session is open.
    pauses: Optional[ReadPauses] = None
    #: The payload of the latest ping whose pong waits for the write buffer to drain.
    _owed_pong: Optional[bytes] = None
    #: Pings read in this read, not answered yet (None outside a read).
    _pings: Optional[list] = None
    _inflate_call = None

    @property
    def messages_in(self) -> int:
        """Complete messages received on this hop by Autobahn."""
        return self._messages

    @property
    def octets_in(self) -> int:
        return self.trafficStats.incomingOctetsWireLevel

    @property
    def octets_out(self) -> int:
        return self.trafficStats.outgoingOctetsWireLevel

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        """Autobahn's ``sendData``, but a frame goes to the kernel at once when nothing is queued.

        Twisted's ``write`` queues the bytes until the reactor's next turn and
        registers the socket for writing and then unregisters it: two epoll
        changes per frame, which on a session kept on Autobahn (permessage-deflate
        on one hop) cost more than the frame's own work.  Plain TCP hops only
        (:func:`clbproxy.ws.fastpath.socket_under`); anything unusual is Autobahn's.
        """
        connection = None if sync or chopsize or self.send_queue else socket_under(self.transport)
        if connection is None or self.logOctets or self.state != OPEN:
            super().sendData(data, sync, chopsize)
            return
        send_now(connection, data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)

    def consumeData(self) -> None:
        fast = self._fast
        if fast is None:
            if self.pauses is None:
                super().consumeData()
                return
            # The pongs for what this read holds leave in one write (see onPing).
            self._pings = []
            try:
                super().consumeData()
            finally:
                self._answer_pings()
        elif self.data:
            # Bytes read with the handshake, before the fast path took the connection over.
            data, self.data = self.data, b""
            fast.dataReceived(data)

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._binary = isBinary
        self._pending = None
        self._begun = False

    def onMessageFrameData(self, payload: bytes) -> None:
        if self.failedByMe:
            return
        session = self.session
        timers = session.timers if session is not None else None
        if timers is not None:
            timers.activity()
        if (
            self._perMessageCompress is not None
            and session is not None
            and session.inflate_budget is not None
        ):
            self._inflated(session.inflate_budget, len(payload))
        pending = self._pending
        self._pending = payload
        if pending is None:
            return
        peer = self.peer
        if not self._begun:
            self._begun = True
            peer.beginMessage(isBinary=self._binary)
        peer.sendMessageFrame(pending)

    def onMessageFrameEnd(self) -> None:
        self.frame_data = None

    def onMessageEnd(self) -> None:
        self.message_data = None
        if self.failedByMe:
            return
        self._messages += 1
        peer = self.peer
        pending, self._pending = self._pending, None
        if peer is None or peer.state != OPEN:
            return
        if not self._begun:
            peer.sendMessage(pending or b"", isBinary=self._binary)
            return
        if pending:
            peer.sendMessageFrame(pending)
        peer.endMessage()

    def onPing(self, payload: bytes) -> None:
        pings = self._pings
        if pings is not None:
            pings.append(payload)
        else:
            super().onPing(payload)
        if self.session is not None and self.session.timers is not None:
            self.session.timers.activity()

    def _answer_pings(self) -> None:
        """Pongs for the pings of this read, in one write; while pongs are queued, one owed."""
        pings, self._pings = self._pings, None
        if not pings or self.state != OPEN:
            return
        if self.pauses.held & PauseReason.OWN_WRITE_BUFFER:
            # Pongs already wait to be read: the latest ping replaces any still owed.
            self._owed_pong = pings[-1]
        elif len(pings) == 1:
            self.sendPong(pings[0])
        else:
            mask = self.side is Side.BACKEND
            self.sendData(b"".join([control_frame(PONG, p, mask) for p in pings]))

    def write_buffer_full(self) -> None:
        """This hop's transport cannot take more: stop reading the other hop, and this one."""
        self.pauses.add(PauseReason.OWN_WRITE_BUFFER)
        self.peer.pauses.add(PauseReason.PEER_BACKPRESSURE)

    def write_buffer_drained(self) -> None:
        """This hop's transport wrote all it held: answer the latest ping, read both again."""
        payload = self._owed_pong
        if payload is not None:
            self._owed_pong = None
            if self.state == OPEN:
                self.sendPong(payload)
        self.pauses.remove(PauseReason.OWN_WRITE_BUFFER)
        self.peer.pauses.remove(PauseReason.PEER_BACKPRESSURE)

    def _inflated(self, budget: InflateBudget, size: int) -> None:
        """Charge bytes Autobahn inflated; over the session's rate, stop reading this hop."""
        wait = budget.spend(size)
        if wait > 0 and self._inflate_call is None:
            self.pauses.add(PauseReason.INFLATE)
            self._inflate_call = self.session.reactor.callLater(wait, self._inflate_paid)

    def _inflate_paid(self) -> None:
        self._inflate_call = None
        if self.pauses is not None:
            self.pauses.remove(PauseReason.INFLATE)

    def onPong(self, payload: bytes) -> None:
        if self.session is not None and self.session.timers is not None:
            self.session.timers.pong(self.side, payload)

    def onCloseFrame(self, code, reasonRaw):
        self._answer_pings()  # pongs for pings read before the Close go first
        problem = None if self.failedByMe else received_close_problem(code, reasonRaw)
        if problem is not None:
            self._fail_connection(*problem)
        if self.failedByMe:
            # Our Close for the peer's violation is queued: Autobahn would abort the
            # connection here and lose it, so close after it has been written.
            self.dropConnection(abort=False)
            return True
        peer_initiated = self.state == OPEN
        stop = super().onCloseFrame(code, reasonRaw)
        if peer_initiated and not stop and not self.failedByMe and self.session:
            self.session.hop_ended(
                HopEvent(
                    self.side, HopEnd.CLOSED, self.remoteCloseCode, self.remoteCloseReason or ""
                )
            )
        return stop

    def _fail_connection(self, code=1001, reason="going away"):
        """Fail the hop (RFC 6455 7.1.7): send our Close with the code, then close TCP.

        Autobahn would wait for the peer's answering Close, but a peer that broke
        the protocol owes none; the Close is flushed before the connection closes.
        """
        already_closed = self.state == WebSocketProtocol.STATE_CLOSED
        self._answer_pings()  # pongs for pings read before the violation go first
        super()._fail_connection(code, reason)
        if not already_closed and self.session and self.peer is not None:
            self.session.hop_ended(HopEvent(self.side, HopEnd.FAILED, code, reason))
        if not already_closed and self.state == WebSocketProtocol.STATE_CLOSING:
            self.dropConnection(abort=False)

    _abort_call = None

    def dropConnection(self, abort: bool = False) -> None:
        """Never abort while a Close we sent may still sit in the write buffer.

        Autobahn ends a server's closing handshake with an abortive drop.  When our
        Close (for a protocol error, or relaying the other hop's end) crossed the
        peer's Close, it is still unwritten and the abort would discard it: the peer
        would see a reset instead of its close code.  Close gracefully instead, and
        abort only if the peer has not taken the bytes within the close timeout.
        """
        transport = self.transport
        closing = self.state == WebSocketProtocol.STATE_CLOSING
        if abort and closing and transport is not None and not self.wasCloseHandshakeTimeout:
            super().dropConnection(abort=False)
            if self.session is not None and self._abort_call is None:
                self._abort_call = self.session.reactor.callLater(
                    self.closeHandshakeTimeout or 5, transport.abortConnection
                )
            return
        super().dropConnection(abort)

    def onClose(self, wasClean: bool, code, reason) -> None:
        # Autobahn leaves this timer running after the TCP connection is gone; it would
        # keep the protocol (and its session) alive for closeHandshakeTimeout seconds.
        cancel_close_timer(self)
        if self._inflate_call is not None and self._inflate_call.active():
            self._inflate_call.cancel()
        self._inflate_call = None
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        if self.session is not None:
            self.session.hop_lost(self.side, wasClean, code, reason)


def cancel_close_timer(protocol: WebSocketProtocol) -> None:
    """Cancel a pending closing-handshake timeout of a protocol whose connection is gone."""
    call = getattr(protocol, "closeHandshakeTimeoutCall", None)
    if call is not None:
        protocol.closeHandshakeTimeoutCall = None
        call.cancel()


@attrs.frozen
class Route:
    """A listener's decision for one WebSocket upgrade, handed to the relay.

    The listener matched ``rule`` (None: no rule matches) for ``target`` (the
    request target as received, in origin form) under ``settings``, and its
    admission (allow/deny of the listener and the rule, limits, handshake rate)
    let the client in.  Routing happens there and only there.
    """

    settings: RelaySettings
    rule: Optional[RuleConfig]
    target: str


class RelayServerProtocol(_Relaying, WebSocketServerProtocol):
    """The client's hop: holds the client's handshake until the backend has answered."""

    side = Side.CLIENT
    _refusal: Optional[bytes] = None
    #: The listener's decision for this upgrade, until the handshake takes it.
    route: Optional[Route] = None

    def onConnect(self, request):
        # The listener routed this upgrade and admitted the client (allow/deny,
        # limits): the relay takes that decision and never routes again, so the
        # rule that was checked is the rule whose backends are connected.
        route, self.route = self.route, None
        if route is None:
            raise self._deny_with(_refuse(500, "the upgrade was not routed by a listener"))
        settings, rule, path = route.settings, route.rule, route.target
        if rule is None:
            raise self._deny_with(_refuse(404, "no forwarding rule matches this host and path"))
        allowed = settings.allowed_origins(rule)
        if allowed and request.origin and request.origin.lower() not in allowed:
            raise self._deny_with(_refuse(403, f"origin {request.origin} is not allowed"))
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
                _peer_ip(self.transport), request.headers.items(), request.params
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
            response = raw_error_response(code, reason, list(responseHeaders or ()))
        if self.session is None:
            accesslog.emit(refusal_record(self, code))
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
        settings: RelaySettings,
        reactor: IReactorTime,
        connector: Optional[
            Callable[[BackendConfig, TargetGroupConfig], IStreamClientEndpoint]
        ] = None,
    ) -> None:
        super().__init__(server="clbproxy")
        self.settings = settings
        self.reactor = reactor
        #: Live sessions, from the client's upgrade request until both hops are closed.
        self.sessions: set[RelaySession] = set()
        #: Idle timeouts of open sessions, one queue per timeout (see :func:`idle_queue`).
        self.idle_queues: dict[float, IdleQueue] = {}
        #: Backend client factories shared by sessions (see :func:`backend_factory`).
        self.backend_factories: dict = {}
        self.connector = connector or (BackendConnector(reactor).endpoint)
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
        protocol.route = self._route
        return protocol


def client_deflate_offer(extensions) -> Optional[PerMessageDeflateOffer]:
    """The client's first permessage-deflate offer, parsed (raises on invalid parameters)."""
    for name, params in extensions:
        if name == "permessage-deflate":
            return PerMessageDeflateOffer.parse(params)
    return None


def accept_first_deflate_offer(
    offers: Sequence[object],
) -> Optional[PerMessageDeflateOfferAccept]:
    """Accept the first permessage-deflate offer as offered, or none when there is none.

    What the relay's client side does (it has the backend's answer in hand by
    then) and what the demo and test backends do to show compression passing.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def _accept_backend_deflate(response):
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def request_target(uri: str) -> str:
    """Path and query of a request target, also when it is in absolute form.

    The same reading as the HTTP forwarder's (:func:`clbproxy.http.server.origin_form`);
    other forms are routed as they are.
    """
    target = origin_form(uri.encode("latin-1"))
    return target.decode("latin-1") if target is not None else (uri or "/")


class RelayClientProtocol(_Relaying, WebSocketClientProtocol):
    """The backend's hop, opened by the proxy on behalf of one client session."""

    side = Side.BACKEND
    _refusal_reader: Optional[RefusalReader] = None

    #: The handshake request for the backend (set by the session's :class:`_BackendBuilder`).
    connecting_request: Optional[ConnectingRequest] = None
    #: The backend's answer to an end to end permessage-deflate offer.
    deflate_response: Optional[PerMessageDeflateResponse] = None

    def connectionMade(self) -> None:
        disable_nagle(self.transport)
        super().connectionMade()

    def onConnecting(self, transport_details):
        offer = self.session.deflate_offer if self.session is not None else None
        if offer is not None:
            # End to end: the client's offer, and the answer kept for the client.
            self.perMessageCompressionOffers = [offer]
            self.perMessageCompressionAccept = self._deflate_answered
        return self.connecting_request

    def _deflate_answered(self, response):
        if isinstance(response, PerMessageDeflateResponse):
            self.deflate_response = response
            return PerMessageDeflateResponseAccept(response)
        return None

    def processHandshake(self):
        """Let Autobahn handle a 101; read any other answer for the client ourselves."""
        if self._refusal_reader is None:
            head_end = self.data.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.data) > 65536:
                    self._bad_answer("response headers larger than 64 KiB")
                return None
            head = parse_response_head(self.data[: head_end + 4])
            if head is None:
                self._bad_answer("malformed HTTP response")
                return None
            if head.status == 101:
                return super().processHandshake()
            self._refusal_reader = RefusalReader(head, self.factory.max_refusal_body)
            self.data = self.data[head_end + 4 :]
        reader = self._refusal_reader
        reader.feed(self.data)
        self.data = b""
        if reader.malformed is not None:
            self._bad_answer(f"malformed chunked body: {reader.malformed}")
        elif reader.done:
            self.session.backend_refused(reader)
            self.dropConnection(abort=True)
        return None

    def _bad_answer(self, reason: str) -> None:
        self.wasNotCleanReason = f"backend handshake failed: {reason}"
        self.dropConnection(abort=True)

    def onConnect(self, response):
        self.session.backend_accepted(self, response)

    def onClose(self, wasClean, code, reason):
        reader = self._refusal_reader
        if reader is not None and not reader.done and reader.until_close:
            reader.finish()
            self.session.backend_refused(reader)
        super().onClose(wasClean, code, reason)


class RelayClientFactory(WebSocketClientFactory):
    """How to greet backends on the clients' behalf: shared by sessions with the same needs.

    Autobahn's client factory is costly to build (its ~40 options, a timer wheel),
    so one is kept per (response timeout, refusal body limit, subprotocols
    offered, deflate) in the listener's :class:`RelayServerFactory`; what is
    per session (the session, its handshake request) is set on each protocol by
    the session's :class:`_BackendBuilder`.
    """

    protocol = RelayClientProtocol
    #: Built per listener and key: "Starting factory" lines would only add noise.
    noisy = False

    def __init__(
        self,
        protocols: tuple[str, ...],
        deflate: bool,
        response_timeout: float,
        max_refusal_body: int,
    ) -> None:
        super().__init__(url="ws://localhost/", protocols=list(protocols))
        self.max_refusal_body = max_refusal_body
        options = dict(
            openHandshakeTimeout=response_timeout,
            closeHandshakeTimeout=5,
            serverConnectionDropTimeout=1,
            failByDrop=False,
            maxMessagePayloadSize=0,
        )
        if deflate:
            options.update(
                perMessageCompressionOffers=[
                    PerMessageDeflateOffer(
                        accept_no_context_takeover=True, accept_max_window_bits=True
                    )
                ],
                perMessageCompressionAccept=_accept_backend_deflate,
            )
        self.setProtocolOptions(**options)


def backend_factory(
    cache: dict, protocols: tuple[str, ...], deflate: bool, response_timeout: float, limit: int
) -> RelayClientFactory:
    """The shared client factory for these needs, from ``cache`` (built when missing)."""
    key = (protocols, deflate, response_timeout, limit)
    factory = cache.get(key)
    if factory is None:
        if len(cache) >= 256:
            cache.clear()  # many distinct subprotocol lists: keep the cache bounded
        factory = cache[key] = RelayClientFactory(protocols, deflate, response_timeout, limit)
    return factory


@implementer(IProtocolFactory)
class _BackendBuilder:
    """The factory a backend connection is made with: builds its Autobahn client protocol.

    Twisted's connector keeps the factory it was given for the connection's whole
    life; this small object stands in for Autobahn's per-session factory and lets
    go of it once the session is on the fast path (:meth:`release`).
    """

    __slots__ = ("factory", "session", "request")

    def __init__(
        self, factory: RelayClientFactory, session: RelaySession, request: ConnectingRequest
    ) -> None:
        self.factory: Optional[RelayClientFactory] = factory
        self.session: Optional[RelaySession] = session
        self.request: Optional[ConnectingRequest] = request

    def buildProtocol(self, addr):
        factory, session = self.factory, self.session
        if factory is None or session is None:
            return None
        protocol = factory.buildProtocol(addr)
        protocol.session = session
        protocol.connecting_request = self.request
        session.backend = protocol
        return protocol

    def doStart(self) -> None:
        if self.factory is not None:
            self.factory.doStart()

    def doStop(self) -> None:
        if self.factory is not None:
            self.factory.doStop()

    def release(self) -> None:
        self.factory = self.session = self.request = None


def idle_queue(factory, clock: IReactorTime, timeout: float) -> Optional[IdleQueue]:
    """The listener's shared idle queue for ``timeout`` (None when there is no timeout).

    Kept on the listener's relay factory, one per timeout in use (a reload may
    change it; sessions keep the one they started with).
    """
    if not timeout:
        return None
    queues = getattr(factory, "idle_queues", None)
    if queues is None:
        return None
    queue = queues.get(timeout)
    if queue is None:
        queue = queues[timeout] = IdleQueue(clock, timeout)
    return queue


@implementer(ITimerOwner)
class RelaySession(Lease):
    """One relayed WebSocket session: its backend choice, handshake, relay and end.

    The session exists from the client's upgrade request until both hops are
    closed; it owns the decision of what one hop's end means for the other.  It
    is also its own :class:`~clbproxy.upstream.balancer.Lease` on the backend it relays to
    (``group``, ``backend_config``), held from the connect until the session ends.
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
    )

    #: On its backend's ``on_unhealthy = "close"``, :meth:`close` ends the session.
    closable = True

    def __init__(
        self,
        *,
        reactor: IReactorTime,
        settings: RelaySettings,
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
        self._connecting: Optional[defer.Deferred] = None
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
        self._builder: Optional[_BackendBuilder] = None
        #: End to end permessage-deflate: the client's offer, passed to the backend,
        #: until the backend has answered.
        self.deflate_offer: Optional[PerMessageDeflateOffer] = None
        #: Once agreed end to end: whether the client and the backend start each
        #: compressed message with a fresh window (their ``no_context_takeover``).
        self.deflate: Optional[tuple[bool, bool]] = None
        #: The session's allowance of inflated bytes (``websocket_inflate_rate``),
        #: once open with permessage-deflate on a hop and a rate set.
        self.inflate_budget: Optional[InflateBudget] = None

    # -- handshake -------------------------------------------------------------------

    def start(self) -> defer.Deferred:
        """Connect to a backend; fires with what the client's 101 carries, or fails."""
        self._handshake = defer.Deferred()
        if self.settings.listener.websocket_deflate == "end_to_end":
            try:
                self.deflate_offer = client_deflate_offer(self.front.websocket_extensions)
            except Exception as e:
                self._fail(_refuse(400, f"invalid permessage-deflate offer: {e}"))
                return self._handshake
        self._connect_next()
        return self._handshake

    def _connect_next(self) -> None:
        backend = self.group.pick(self.request, exclude=self._tried)
        if backend is None:
            if self._tried:
                self._fail(_refuse(502, "no backend of the target group could be reached"))
            else:
                self._fail(_refuse(503, f"no backend available in target group {self.group.name}"))
            return
        self._tried.append(backend)
        self.group.hold(self, backend)
        request = self._backend_request(backend)
        factory = backend_factory(
            self.factory.backend_factories,
            tuple(request.protocols),
            # End to end, the backend is offered the client's own offer (onConnecting).
            self._client_deflate() and self.settings.listener.websocket_deflate == "per_hop",
            self.group.config.response_timeout,
            self.settings.listener.max_refusal_body,
        )
        self._builder = _BackendBuilder(factory, self, request)
        try:
            endpoint = self.connector(backend, self.group.config)
        except Exception:
            self._connecting = defer.fail()
        else:
            self._connecting = endpoint.connect(self._builder)
        self._connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, protocol) -> None:
        self._connecting = None

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self.release()
        if self._handshake is None or self._handshake.called:
            return
        self.group.report_failure(self.backend_config, failure.getErrorMessage())
        log.warn(
            "websocket: cannot connect to backend {backend} of {group}: {reason}",
            backend=self.backend_config.address,
            group=self.group.name,
            reason=failure.getErrorMessage(),
        )
        if len(self._tried) <= self.group.config.retries:
            self._connect_next()
        else:
            self._fail(_refuse(502, "no backend of the target group could be reached"))

    def _client_deflate(self) -> bool:
        return any(name == "permessage-deflate" for name, _ in self.front.websocket_extensions)

    def _backend_request(self, backend: BackendConfig) -> ConnectingRequest:
        front = self.front
        headers = front.http_headers
        drop, add = header_changes(self.rule, [])
        peer_ip = _peer_ip(front.transport)
        skip = (
            hop_by_hop_names([headers.get("connection", "")])
            | _HANDSHAKE_REQUEST_HEADERS
            | FORWARDING_HEADERS
            | untrusted_headers(peer_ip, self.settings.trusted)
            | drop
        )
        underscores = self.settings.listener.underscores_in_headers
        extra: dict[str, str] = {}
        for name, value in headers.items():
            if client_header_passes(name, skip, underscores=underscores, ours=drop):
                extra[name] = value
        extra.update(add)
        for name, value in forwarded_headers(
            peer_ip=peer_ip,
            scheme=self.settings.scheme,
            host=headers.get("host"),
            forwarded_for=[headers["x-forwarded-for"]] if "x-forwarded-for" in headers else [],
            forwarded_proto=headers.get("x-forwarded-proto"),
            forwarded_host=headers.get("x-forwarded-host"),
            trusted=self.settings.trusted,
            port=getattr(_host_address(front.transport), "port", None),
        ):
            extra[name] = value
        for name, value in client_certificate_headers(front.transport):
            extra[name] = value
        if self.settings.listener.via:
            extra["Via"] = VIA.decode("ascii")
        host, port = _split_host_header(
            headers.get("host"), backend, 443 if self.settings.scheme == "https" else 80
        )
        return ConnectingRequest(
            host=host,
            port=port,
            resource=self.target,
            headers=extra,
            useragent=headers.get("user-agent"),
            origin=headers.get("origin"),
            protocols=list(front.websocket_protocols or ()),
        )

    def backend_accepted(self, backend: RelayClientProtocol, response) -> None:
        """The backend answered 101: complete the client's handshake the same way."""
        if self._handshake is None or self._handshake.called:
            backend.dropConnection(abort=True)
            return
        headers: dict[str, list[str]] = {}
        head = parse_response_head(backend.http_response_data)
        if head is not None:
            hop = hop_by_hop_names(head.values("connection"))
            for name, value in head.headers:
                lower = name.lower()
                if is_hop_by_hop(lower, hop) or lower in _HANDSHAKE_RESPONSE_HEADERS:
                    continue
                headers.setdefault(name, []).append(value)
        if self.deflate_offer is not None and not self._agree_deflate(backend):
            return
        self.group.report_success(self.backend_config)
        for name, value in self.group.persistence_headers(self.request, self.backend_config):
            headers.setdefault(name, []).append(value)
        self._handshake_done(101)
        self._handshake.callback((response.protocol, headers))

    def _agree_deflate(self, backend: RelayClientProtocol) -> bool:
        """Answer the client's deflate offer as the backend answered it (end to end).

        The backend was offered exactly what the client offered, so its answer is
        one the client may get: the client is told the backend's parameters for
        the client's direction (``client_no_context_takeover``,
        ``client_max_window_bits``) and both hops then compress alike, which lets
        the fast path pass compressed frames on unchanged.  A backend that
        declined gets a client without deflate; an answer that does not fit the
        offer (RFC 7692 7.1) is a backend error: 502.
        """
        offer, self.deflate_offer = self.deflate_offer, None
        response = backend.deflate_response
        accept = None
        if response is not None:
            try:
                accept = PerMessageDeflateOfferAccept(
                    offer,
                    request_no_context_takeover=bool(response.client_no_context_takeover),
                    request_max_window_bits=response.client_max_window_bits or 0,
                    no_context_takeover=bool(response.server_no_context_takeover),
                    window_bits=response.server_max_window_bits or None,
                )
            except Exception as e:
                backend.dropConnection(abort=True)
                self._fail(
                    _refuse(502, f"backend's permessage-deflate answer does not fit the offer: {e}")
                )
                return False
            self.deflate = (
                bool(response.client_no_context_takeover),
                bool(response.server_no_context_takeover),
            )
        self.front.perMessageCompressionAccept = lambda _offers: accept
        return True

    def backend_refused(self, reader: RefusalReader) -> None:
        """The backend answered the handshake with another status: pass it to the client."""
        if self._handshake is None or self._handshake.called:
            return
        head = reader.head
        hop = hop_by_hop_names(head.values("connection"))
        headers = [
            (name, value)
            for name, value in head.headers
            if name.lower() not in hop and name.lower() not in ("content-length",)
        ]
        if reader.truncated:
            log.warn(
                "websocket: backend {backend} refused the handshake with {status} and a body "
                "over max_refusal_body; the client gets the first {limit} bytes",
                backend=self.backend_config.address,
                status=head.status,
                limit=len(reader.body),
            )
        self.group.report_status(self.backend_config, head.status)
        response = raw_response(head.status, headers, reader.body, head.reason)
        self._fail(HandshakeRefused(response, head.status, f"backend answered {head.status}"))

    def close(self, reason: str) -> None:
        """The backend was taken out of service: end the session with 1001 to the client."""
        if self.front.state == OPEN:
            self.front.sendCloseFrame(code=1001, reasonUtf8=reason.encode("utf-8")[:123])
        if self.backend is not None and self.backend.state == OPEN:
            self.backend.sendCloseFrame(code=1001, reasonUtf8=b"proxy: backend out of service")

    def _fail(self, refused: HandshakeRefused) -> None:
        self.release()
        if self._handshake is None or self._handshake.called:
            return
        log.info(
            "websocket: {client} {path}: handshake refused with {status}: {detail}",
            client=_peer_ip(self.front.transport),
            path=printable(self.target),
            status=refused.status,
            detail=printable(refused.detail),
        )
        self._handshake_done(refused.status)
        self._handshake.errback(refused)

    def _handshake_done(self, status: int) -> None:
        self.record.status = status
        self.record.handshake_ms = (self.reactor.seconds() - self._started) * 1000

    # -- open ------------------------------------------------------------------------

    def client_opened(self) -> None:
        """Both hops are open: link them and let messages flow."""
        front, backend = self.front, self.backend
        if backend is None or backend.state != OPEN:
            return
        self._opened = self.reactor.seconds()
        front.peer, backend.peer = backend, front
        listener = self.settings.listener
        self.timers = SessionTimers(
            self.reactor,
            idle_timeout=listener.websocket_idle_timeout,
            # A tunnel does not read frames, so it cannot answer or see pongs.
            ping_interval=0 if self.tunnel else listener.websocket_ping_interval,
            ping_timeout=listener.websocket_ping_timeout,
            owner=self,
            idle_queue=idle_queue(self.factory, self.reactor, listener.websocket_idle_timeout),
        )
        self.timers.start()
        fill_request_fields(self.record, front)
        self._filled = True
        limit = listener.session_buffer
        deflating = self.deflate is not None or bool(
            front.websocket_extensions_in_use or backend.websocket_extensions_in_use
        )
        if deflating and listener.websocket_inflate_rate and not self.tunnel:
            self.inflate_budget = InflateBudget(self.reactor, listener.websocket_inflate_rate)
        watches = []
        for hop in (front, backend):
            transport = hop.transport
            hop.pauses = ReadPauses(transport, self.timers)
            socket = _innermost_transport(transport)
            if hasattr(socket, "bufferSize"):
                socket.bufferSize = limit
            if getattr(socket, "producer", None) is not None:
                socket.unregisterProducer()
            watch = WriteBufferWatch(hop)
            transport.registerProducer(watch, True)
            watches.append(watch)
        log.info(
            "websocket: {client} {path} -> {backend} ({group}) open",
            client=_peer_ip(front.transport),
            path=printable(self.target),
            backend=self.backend_config.address,
            group=self.group.name,
        )
        hops = start_fast_path(front, backend, tunnel=self.tunnel, deflate=self.deflate)
        if hops is not None:
            # From here on the session holds only the fast path's hops: Autobahn's
            # protocols (and the backend hop's factory) are no longer referenced.
            self.front, self.backend = hops
            for hop, watch in zip(hops, watches):
                watch.hop = hop
                socket = _innermost_transport(hop.transport)
                if getattr(socket, "producer", None) is watch:
                    # The hop is its own watch (see Hop.pauseProducing).
                    socket.producer = hop
            self._handshake = None
            # What only choosing the backend needed.
            self.request = None
            self._tried = ()
            if self._builder is not None:
                self._builder.release()
                self._builder = None
            self.reactor.callLater(0, _scrub, front, backend)

    # -- timers and shutdown ---------------------------------------------------------

    def _hop(self, side: Side):
        return self.front if side is Side.CLIENT else self.backend

    def timer_ping(self, side: Side, payload: bytes) -> None:
        hop = self._hop(side)
        if hop is not None and hop.state == OPEN:
            hop.sendPing(payload)

    def timer_idle(self) -> None:
        listener = self.settings.listener
        log.info(
            "websocket: {client} {path}: no frame for {timeout:g} s, closing with 1001",
            client=_peer_ip(self.front.transport),
            path=printable(self.target),
            timeout=listener.websocket_idle_timeout,
        )
        self._count("websocket_idle_closes")
        self.close_both(1001, 1001, b"idle timeout")

    def timer_dead(self, side: Side) -> None:
        hop = self._hop(side)
        timeout = self.settings.listener.websocket_ping_timeout
        self._count("websocket_ping_timeouts")
        log.info(
            "websocket: {client} {path}: the {side} did not answer a ping within {timeout:g} s",
            client=_peer_ip(self.front.transport),
            path=printable(self.target),
            side=side.name.lower(),
            timeout=timeout,
        )
        if hop is not None and hop.transport is not None:
            hop.wasNotCleanReason = f"no pong within {timeout:g} s"
            hop.dropConnection(abort=True)

    def _count(self, name: str) -> None:
        stats = getattr(self.factory, "stats", None)
        if stats is not None:
            stats.increment(name)

    def close_both(self, client_code: int, backend_code: int, reason: bytes) -> None:
        """Close both hops ourselves (idle timeout, shutdown), not by the close-code table."""
        self._told = frozenset((Side.CLIENT, Side.BACKEND))
        for hop, code in ((self.front, client_code), (self.backend, backend_code)):
            if hop is None:
                continue
            read_again(hop)
            if hop.state == OPEN:
                hop.sendCloseFrame(code=code, reasonUtf8=reason)
            elif hop.state in (CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING):
                hop.dropConnection(abort=True)

    def shut_down(self) -> None:
        """The proxy is stopping: 1001 to the client, a normal close to the backend.

        A session still in its handshake is refused with 503.
        """
        if self._opened is None:
            if self._connecting is not None:
                self._connecting.cancel()
            if self.backend is not None:
                self.backend.dropConnection(abort=True)
            self._fail(_refuse(503, "the proxy is shutting down"))
            return
        if self.timers is not None:
            self.timers.stop()
        self.close_both(1001, 1000, b"proxy shutting down")

    # -- end -------------------------------------------------------------------------

    def hop_ended(self, event: HopEvent) -> None:
        """One hop is closing: tell the other hop once, as the close-code table says."""
        other_side = event.side.other
        if other_side in self._told or event.side in self._told:
            return
        self._told = self._told | {other_side}
        if self.record.closed_by is None:
            self.record.closed_by = event.side.name.lower()
        other = self.backend if other_side is Side.BACKEND else self.front
        if other is None:
            return
        for hop in (self.front, self.backend):
            if hop is not None:
                read_again(hop)
        if other.state == OPEN:
            action = close_for_other_hop(event)
            other.sendCloseFrame(code=action.code, reasonUtf8=action.reason or None)
        elif other.state in (CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING):
            other.dropConnection(abort=True)

    def hop_lost(self, side: Side, was_clean: bool, code, reason) -> None:
        """One hop's TCP connection is gone."""
        hop = self.front if side is Side.CLIENT else self.backend
        self._ended = {**self._ended, side: _describe_end(hop, was_clean, code)}
        self._closes = {**self._closes, side: (code, reason)}
        if self.timers is not None:
            self.timers.stop()
        if side is Side.CLIENT and self._opened is None:
            self._client_left_during_handshake()
        elif side is Side.BACKEND and self._handshake is not None and not self._handshake.called:
            self._backend_failed_handshake(hop, reason)
        elif hop is not None and hop.failedByMe:
            self.hop_ended(HopEvent(side, HopEnd.FAILED, hop.localCloseCode, reason or ""))
        else:
            if side is Side.BACKEND and self._opened is not None:
                self.group.report_failure(self.backend_config, "connection reset")
            self.hop_ended(HopEvent(side, HopEnd.LOST))
        if len(self._ended) == 2 or (side is Side.CLIENT and self.backend is None):
            self.release()
            self.factory.sessions.discard(self)
            self._log_end()

    def _client_left_during_handshake(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.backend is not None:
            self.backend.dropConnection(abort=True)
        self._fail(_refuse(499, "client closed the connection during the handshake"))

    def _backend_failed_handshake(self, backend, reason) -> None:
        if getattr(backend, "wasOpenHandshakeTimeout", False):
            self._fail(_refuse(504, "the backend did not answer the WebSocket handshake in time"))
        else:
            detail = getattr(backend, "wasNotCleanReason", None) or reason or "connection lost"
            self.group.report_failure(self.backend_config, f"handshake failed: {detail}")
            self._fail(_refuse(502, f"the backend's handshake failed: {detail}"))

    def buffered_bytes(self) -> int:
        """Bytes waiting in this session's outgoing transport buffers, both directions."""
        total = 0
        for hop in (self.front, self.backend):
            socket = _innermost_transport(hop.transport) if hop is not None else None
            if socket is not None:
                total += len(getattr(socket, "dataBuffer", b""))
                total += getattr(socket, "_tempDataLen", 0)
        return total

    def _log_end(self) -> None:
        now = self.reactor.seconds()
        log.info(
            "websocket: {client} {path} -> {backend} closed after {duration:.3f}s; "
            "client: {client_end}, backend: {backend_end}; "
            "messages client->backend {up}, backend->client {down}",
            client=_peer_ip(self.front.transport),
            path=printable(self.target),
            backend=self.backend_config.address if self.backend_config else "-",
            duration=now - (self._opened or self._started),
            client_end=self._ended.get(Side.CLIENT, "-"),
            backend_end=self._ended.get(Side.BACKEND, "-"),
            up=self.front.messages_in,
            down=self.backend.messages_in if self.backend else 0,
        )
        accesslog.emit(self._access_record(now))

    def _access_record(self, now: float) -> accesslog.SessionRecord:
        record, front = self.record, self.front
        if not self._filled:
            fill_request_fields(record, front)
        record.rule = accesslog.rule_label(self.rule.host, self.rule.path) if self.rule else None
        record.group = self.group.name
        record.backend = self.backend_config.address if self.backend_config else None
        if self._opened is not None:
            record.duration_s = now - self._opened
            record.bytes_in = front.octets_in
            record.bytes_out = front.octets_out
            record.messages_in = front.messages_in
            record.messages_out = self.backend.messages_in if self.backend else 0
            code, reason = self._closes.get(Side.CLIENT, (None, None))
            record.client_close_code, record.client_close_reason = code, reason or None
            code, reason = self._closes.get(Side.BACKEND, (None, None))
            record.backend_close_code, record.backend_close_reason = code, reason or None
        else:
            record.closed_by = None
        return record


def _scrub(*protocols) -> None:
    """Empty Autobahn protocols the fast path took over, breaking their reference cycles.

    Nothing calls them any more, but their cycles (Deferreds, bound methods) would
    keep ~20 KB per session alive until the next full garbage collection; freed at
    once, that memory serves the next handshakes.  Run after the handshake's own
    call chain has returned.
    """
    for protocol in protocols:
        protocol.__dict__.clear()


def fill_request_fields(record: accesslog.SessionRecord, front: RelayServerProtocol) -> None:
    """The client-side fields of a session's access record, from its upgrade request."""
    settings: RelaySettings = front.factory.settings
    headers = getattr(front, "http_headers", None) or {}
    forwarded = [headers["x-forwarded-for"]] if "x-forwarded-for" in headers else []
    record.listener = settings.listener.name
    record.client = real_client_ip(_peer_ip(front.transport), forwarded, settings.trusted)
    record.path = printable(request_target(getattr(front, "http_request_uri", None) or "/"))
    record.host = printable(headers.get("host"))
    record.user_agent = printable(headers.get("user-agent"))


def refusal_record(front: RelayServerProtocol, status: int) -> accesslog.SessionRecord:
    """The access record of a handshake refused before any backend was chosen."""
    record = accesslog.SessionRecord(status=status, handshake_ms=0.0)
    fill_request_fields(record, front)
    return record


def _describe_end(hop, was_clean: bool, code) -> str:
    if hop is None:
        return "-"
    if was_clean:
        sent = hop.localCloseCode
        received = hop.remoteCloseCode
        return f"clean (sent {sent}, received {received})"
    return f"unclean ({hop.wasNotCleanReason or 'connection lost'})"


def _host_address(transport):
    """The listening side's address of a connection (under PROXY protocol: the original)."""
    try:
        return transport.getHost()
    except Exception:
        return None


def _peer_ip(transport) -> str:
    try:
        peer = transport.getPeer()
    except Exception:
        return "-"
    return getattr(peer, "host", None) or str(peer)


def _split_host_header(
    host: Optional[str], backend: BackendConfig, default_port: int
) -> tuple[str, int]:
    """Host and port to present to the backend: the client's Host, else the backend's."""
    if not host:
        return backend.host, backend.port
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, port_text = host.split(":", 1)
    else:
        name, port_text = host, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        port = default_port
    return name, port
