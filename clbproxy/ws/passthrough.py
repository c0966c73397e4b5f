"""The default WebSocket path: the client's upgrade passed through to a backend, not re-originated.

With ``websocket_deflate = "end_to_end"`` (the default) no hop's messages are
transformed, so the proxy does what nginx and HAProxy do: the client's upgrade
request, checked against RFC 6455 4.2.1 and RFC 7692 by
:mod:`clbproxy.ws.upgrade`, goes to the backend with the client's own key,
subprotocols and permessage-deflate offer (other extensions dropped), plus the
forwarding headers, the rule's header changes and persistence.  The backend's
answer is checked as a client would check it (its ``101``, ``Sec-WebSocket-Accept``
for that key, an extension and a subprotocol among those offered) and relayed;
any other answer is passed back whole, as :mod:`clbproxy.ws.handshake_stage`
does.  Then both connections go straight to the validating fast path
(:mod:`clbproxy.ws.fastpath`): no Autobahn protocol is built for the session.

A WebSocket over HTTP/2 (RFC 8441, ``websocket_over_http2``) takes this path
too: its extended CONNECT is checked by
:func:`~clbproxy.ws.upgrade.check_extended_connect`, the backend gets an
HTTP/1.1 upgrade with a key the proxy made, and the client hop's transport is
the stream (:class:`clbproxy.http2.tunnel.StreamTunnel`, which turns the
``101`` into the stream's ``200``).  Everything after the handshake is the same.

The session is a :class:`~clbproxy.ws.relay.RelaySession` whose handshake stage
is :class:`PassThroughStage`; until the ``101`` its hops are the two small
protocols here (:class:`ClientWaiting`, :class:`BackendUpgrade`), which offer
the closing stage (:mod:`clbproxy.ws.closing`) what it reads from a hop.
"""

from __future__ import annotations

from typing import Iterable, Optional
from urllib.parse import parse_qs, urlsplit

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from clbproxy.config import BackendConfig
from clbproxy.http.forwarded import (
    hop_by_hop_names,
    is_hop_by_hop,
)
from clbproxy.http.responses import raw_error_response
from clbproxy.http.tracecontext import NO_TRACE, TraceContext
from clbproxy.net.endpoints import disable_nagle
from clbproxy.net.transports import (
    peer_ip,
    send_now,
    socket_under,
    switch_protocol,
    unwrap_client,
)
from clbproxy.observability import accesslog
from clbproxy.routing.actions import rewrite_target
from clbproxy.upstream.balancer import NO_REQUEST_INFO, RequestInfo
from clbproxy.util.delays import DelayQueue, delay_queue
from clbproxy.util.leanlog import LeanLogger
from clbproxy.util.logtext import printable
from clbproxy.ws.closecodes import INTERNAL_ERROR, HopEnd, HopEvent, Side
from clbproxy.ws.closing import refusal_record
from clbproxy.ws.compaction import compact_when_settled
from clbproxy.ws.controls import rule_limits
from clbproxy.ws.fastpath import hop_kind, hop_scanners, watch_write_buffer
from clbproxy.ws.handshake import MalformedAnswer, RefusalReader, read_response_head
from clbproxy.ws.handshake_stage import HandshakeRefused, HandshakeStage, upgrade_headers
from clbproxy.ws.pauses import InflateBudget
from clbproxy.ws.relay import RELAY_HOPS, RelaySession, Route
from clbproxy.ws.upgrade import (
    BackendAcceptance,
    BadBackendAnswer,
    ClientUpgrade,
    UpgradeRefused,
    accept_value,
    check_backend_fields,
    check_extended_connect,
    check_upgrade_fields,
    read_request_headers,
)

log = LeanLogger()  # info lines per session: see clbproxy.util.leanlog

CONNECTING = WebSocketProtocol.STATE_CONNECTING
CLOSED = WebSocketProtocol.STATE_CLOSED

#: Client request headers the proxy writes itself on the backend's upgrade request
#: (or that describe only the client's hop).
_WRITTEN_BY_PROXY = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
        "transfer-encoding",
    }
)

#: Backend 101 headers the proxy writes itself to the client.
_ANSWERED_BY_PROXY = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
        "transfer-encoding",
        "server",
        "date",
    }
)

_UNCLEAN = "peer dropped the TCP connection without previous WebSocket closing handshake"


class _Pending:
    """The client's handshake, until answered (what the closing stage asks of it)."""

    __slots__ = ("called",)

    def __init__(self) -> None:
        self.called = False


class _HandshakeHop(Protocol):
    """What the closing stage reads from a hop, for a connection still in its handshake."""

    side: Side
    session = None
    state = CONNECTING
    messages_in = 0
    dropped_after_close = (0, 0)
    octets_in = 0
    octets_out = 0
    failedByMe = False
    wasNotCleanReason: Optional[str] = None
    wasOpenHandshakeTimeout = False
    localCloseCode = None
    remoteCloseCode = None

    def dropConnection(self, abort: bool = False) -> None:
        if self.state == CLOSED or self.transport is None:
            return
        self.state = CLOSED
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _lost(self, reason: Failure) -> None:
        self.state = CLOSED
        if self.wasNotCleanReason is None:
            self.wasNotCleanReason = reason.getErrorMessage() or _UNCLEAN
        if self.session is not None:
            text = f'connection was closed uncleanly ("{self.wasNotCleanReason}")'
            self.session.hop_lost(self.side, False, 1006, text)


class ClientWaiting(_HandshakeHop):
    """The client's connection from the upgrade request until the proxy answers it.

    A client sends no frame before its ``101`` (RFC 6455 4.1), but bytes that
    come early are kept, in order, for the fast path; past ``session_buffer`` the
    client is no longer read until then.
    """

    side = Side.CLIENT
    #: The upgrade's ID, the header it goes in, and its trace context (from its route).
    request_id: Optional[str] = None
    id_header: str = ""
    trace: TraceContext = NO_TRACE
    #: The client's HTTP version (the access log's ``protocol``).
    http_version: str = "HTTP/1.1"

    def __init__(
        self,
        factory,
        request_uri: str,
        pairs: list[tuple[str, str]],
        limit: int,
        joined: Optional[dict[str, str]] = None,
    ) -> None:
        #: The listener's relay factory (the closing stage reads its settings).
        self.factory = factory
        self.http_request_uri = request_uri
        #: The upgrade request's headers as received (names as twisted.web spells them).
        self.header_pairs = pairs
        #: The same, lower-case names (repeats joined), as the closing stage reads them
        #: (``joined``, when the caller read them already).
        self.http_headers = joined if joined is not None else joined_headers(pairs)
        self.early = bytearray()
        self._limit = limit
        self._paused = False

    def dataReceived(self, data: bytes) -> None:
        self.early += data
        if len(self.early) > self._limit and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pauseProducing()

    def connectionLost(self, reason: Failure = None) -> None:
        self._lost(reason)


class BackendUpgrade(_HandshakeHop):
    """The backend's connection until it answered the upgrade: sends it, reads the answer."""

    side = Side.BACKEND

    def __init__(self, session: PassThroughStage, request: bytes, timeout: float) -> None:
        self.session = session
        self._request = request
        self._timeout = timeout
        #: The queue holding the deadline of the backend's answer (see ``_cancel_timer``).
        self._timer: Optional[DelayQueue] = None
        self._data = b""
        self._refusal: Optional[RefusalReader] = None
        #: The TCP connection its request went to directly, if any (its hop writes there too).
        self.out = None

    def connectionMade(self) -> None:
        disable_nagle(self.transport)
        session = self.session
        if session is None:
            self.transport.abortConnection()
            return
        session.backend = self
        self.out = write_now(self.transport, self._request)
        self._request = b""
        if self._timeout:
            self._timer = delay_queue(session.reactor, self._timeout)
            self._timer.add(self, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self.state == CLOSED or self.session is None:
            return
        reader = self._refusal
        if reader is not None:
            self._read_refusal(data)
            return
        self._data += data
        try:
            answer = read_response_head(self._data)
        except MalformedAnswer as e:
            self._bad_answer(str(e))
            return
        if answer is None:
            return
        head, rest = answer
        self._data = b""
        if head.status == 101:
            self._cancel_timer()
            try:
                fields = head.fields
                acceptance = check_backend_fields(self.session.client_upgrade, fields)
            except BadBackendAnswer as e:
                self._bad_answer(str(e))
                return
            self.session.backend_switched(self, head, acceptance, rest, fields.get("connection"))
            return
        self._refusal = RefusalReader(head, self.session.settings.listener.max_refusal_body)
        self._read_refusal(rest)

    def _read_refusal(self, data: bytes) -> None:
        reader = self._refusal
        reader.feed(data)
        if reader.malformed is not None:
            self._bad_answer(f"malformed chunked body: {reader.malformed}")
        elif reader.done:
            self._cancel_timer()
            self.session.backend_refused(reader)
            self.dropConnection(abort=True)

    def _bad_answer(self, reason: str) -> None:
        self._cancel_timer()
        self.wasNotCleanReason = reason
        self.dropConnection(abort=True)

    def _timed_out(self) -> None:
        self._timer = None
        self.wasOpenHandshakeTimeout = True
        self.wasNotCleanReason = "the backend did not answer the WebSocket handshake in time"
        self.dropConnection(abort=True)

    def _cancel_timer(self) -> None:
        queue, self._timer = self._timer, None
        if queue is not None:
            queue.discard(self)

    def connectionLost(self, reason: Failure = None) -> None:
        self._cancel_timer()
        reader = self._refusal
        if reader is not None and not reader.done and reader.until_close and self.session:
            reader.finish()
            self.session.backend_refused(reader)
        self._lost(reason)


def write_now(transport, data: bytes) -> Optional[tcp.Connection]:
    """Write a handshake's bytes at once when the socket takes them (see ``send_now``).

    Queued by ``transport.write``, they would wait for the reactor's next turn and
    cost a round of write-readiness in epoll: two per session, one per hop.  The
    TCP connection written to (None: the transport's ``write`` was used) is
    returned: the hop on that transport writes there too, without a second walk.
    """
    connection = socket_under(transport)
    if connection is not None:
        send_now(connection, data)
    else:
        transport.write(data)
    return connection


class _BackendFactory(Factory):
    """Builds the one :class:`BackendUpgrade` of a connect attempt."""

    noisy = False

    def __init__(self, session: PassThroughStage, request: bytes, timeout: float) -> None:
        self._session: Optional[PassThroughStage] = session
        self._request = request
        self._timeout = timeout

    def buildProtocol(self, addr):
        session, self._session = self._session, None
        if session is None:
            return None
        return BackendUpgrade(session, self._request, self._timeout)


def take_over(request, protocol: Protocol):
    """Give ``request``'s connection to ``protocol``, as Autobahn's resource does.

    The listener's connection may have stopped reading while it handled the
    request; the connection no longer carries HTTP, so it is read again.  Bytes
    the client sent behind its request (in the same read) are still in the
    connection's parser (:meth:`~clbproxy.listener.connection.ListenerConnection.hand_off`):
    they are the protocol's now, given to it in order.
    """
    stream_take_over = getattr(request, "take_over", None)
    if stream_take_over is not None:
        return stream_take_over(protocol)  # an HTTP/2 stream (RFC 8441)
    channel = request.channel
    transport = channel.transport
    early = channel.hand_off()
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    elif isinstance(transport.protocol, ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    producer = getattr(transport, "_networkProducer", None)
    if producer is not None:
        producer.resumeProducing()
    elif hasattr(transport, "resumeProducing"):
        transport.resumeProducing()
    if early:
        protocol.dataReceived(early)
    return transport


def joined_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case name -> value, repeats joined with ``", "`` (what Autobahn gave the relay)."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        lower = name.lower()
        joined[lower] = f"{joined[lower]}, {value}" if lower in joined else value
    return joined


class PassThroughStage(HandshakeStage):
    """The handshake of a passed-through session: one backend upgrade, checked, then the fast path.

    Mixed into :class:`PassThroughSession`.  A failed connect tries another
    backend (the group's ``retries``); the backend's refusal is passed back;
    a backend that breaks the handshake gets 502, one too slow 504, as on the
    Autobahn path.
    """

    __slots__ = ()

    def start(self):
        self._handshake = _Pending()
        self._connect_next()
        return self._handshake

    def _backend_factory(self, backend: BackendConfig) -> _BackendFactory:
        return _BackendFactory(
            self, self._upgrade_request(backend), self.group.config.response_timeout
        )

    def _upgrade_request(self, backend: BackendConfig) -> bytes:
        """The backend's upgrade request: the client's, its key included, with our headers."""
        front = self.front
        upgrade: ClientUpgrade = self.client_upgrade
        headers = front.http_headers
        host = headers.get("host") or backend.address
        lines = [
            f"GET {self.target} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {upgrade.key}",
            "Sec-WebSocket-Version: 13",
        ]
        if upgrade.protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(upgrade.protocols))
        if upgrade.deflate_offer is not None:
            lines.append(f"Sec-WebSocket-Extensions: {upgrade.deflate_offer}")
        lines += [
            f"{name}: {value}"
            for name, value in upgrade_headers(
                self, front.header_pairs, headers, front.transport, _WRITTEN_BY_PROXY
            )
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def backend_switched(
        self,
        backend: BackendUpgrade,
        head,
        acceptance: BackendAcceptance,
        rest: bytes,
        connection: Optional[list[str]] = None,
    ) -> None:
        """The backend accepted the upgrade: answer the client, then relay on the fast path.

        ``connection``: the values of the 101's ``Connection`` header, when read already.
        """
        if self._handshake is None or self._handshake.called or self.front.state == CLOSED:
            backend.dropConnection(abort=True)
            return
        self.group.report_success(self.backend_config)
        self._handshake_done(101)
        self._handshake.called = True
        self.deflate = acceptance.deflate
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Server: clbproxy",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {acceptance.accept or accept_value(self.client_upgrade.key)}",
        ]
        if acceptance.protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {acceptance.protocol}")
        if acceptance.extensions is not None:
            lines.append(f"Sec-WebSocket-Extensions: {acceptance.extensions}")
        if connection is None:
            connection = head.values("connection")
        hop = hop_by_hop_names(connection) | self.id_header_names()
        for name, value in head.headers:
            lower = name.lower()
            if lower not in _ANSWERED_BY_PROXY and not is_hop_by_hop(lower, hop):
                lines.append(f"{name}: {value}")
        for name, value in self.group.persistence_headers(self.request, self.backend_config):
            lines.append(f"{name}: {value}")
        if self.request_id is not None:
            lines.append(f"{self.settings.request_ids.name}: {self.request_id}")
        front = self.front
        out = write_now(front.transport, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._open(front, backend, rest, out)

    def _open(self, front: ClientWaiting, backend: BackendUpgrade, rest: bytes, front_out) -> None:
        """Both hops are open: link them on the fast path (a tunnel: spliced), timers on.

        ``front_out``: the client's TCP connection the 101 was written to directly, if any.
        """
        listener = self.settings.listener
        self.begin_open()
        if self.deflate is not None and listener.websocket_inflate_rate and not self.tunnel:
            self.inflate_budget = InflateBudget(self.reactor, listener.websocket_inflate_rate)
        scanners = hop_scanners(
            self.tunnel,
            self.settings.max_message_size(self.rule),
            listener.session_buffer,
            self.deflate,
        )
        limits = rule_limits(self.settings, self.rule)
        kind = hop_kind(limits, self.tunnel)
        hops = [
            kind(front.transport, self, Side.CLIENT, scanners[0], out=front_out),
            kind(backend.transport, self, Side.BACKEND, scanners[1], out=backend.out),
        ]
        new_front, new_back = hops
        new_front.peer, new_back.peer = new_back, new_front
        for old, hop in ((front, new_front), (backend, new_back)):
            switch_protocol(old, hop, hop.out)
            # The hop is its own transport's producer (see Hop.pauseProducing).
            watch_write_buffer(hop.transport, listener.session_buffer, hop, hop.out)
            old.session = None
        unwrap_client(new_back)
        self.front, self.backend = new_front, new_back
        log.info(
            "websocket: {client} {path} -> {backend} ({group}) open request_id={request_id}",
            client=self.client_ip,
            path=printable(self.target),
            backend=self.backend_config.address,
            group=self.group.name,
            request_id=self.shown_id(),
        )
        self._handshake = None
        self.request = None
        self._tried = ()
        self.arm_controls(limits)
        early = bytes(front.early)
        if front._paused:
            new_front.transport.resumeProducing()
        compact_when_settled(self.reactor, self, hops)
        if early and new_front.state != CLOSED:
            new_front.dataReceived(early)
        if rest and new_back.state != CLOSED:
            new_back.dataReceived(rest)

    def _answer_refusal(self, refused: HandshakeRefused) -> None:
        self._handshake.called = True
        front = self.front
        if front.state != CLOSED and front.transport is not None:
            front.transport.write(refused.response)
            front.dropConnection(abort=False)


class PassThroughSession(PassThroughStage, RelaySession):
    """A relayed session whose upgrade was passed through (:func:`pass_through`)."""

    __slots__ = ("client_upgrade",)


def is_relay_hop(protocol) -> bool:
    """Whether ``protocol`` is a WebSocket hop (served by Autobahn, passed through or fast).

    Observers count such connections as sessions, not as HTTP connections.
    """
    return isinstance(protocol, (ClientWaiting, *RELAY_HOPS))


def pass_through(factory, request, route: Route) -> None:
    """Take ``request``'s connection and start its passed-through session on ``route``.

    ``factory`` is the listener's :class:`~clbproxy.ws.relay.RelayServerFactory`.
    The client's upgrade is checked first; the refusals are those the Autobahn
    path gives (400, 426 with ``Sec-WebSocket-Version: 13``, 404 with no rule,
    403 for an origin not allowed).
    """
    settings, rule, target = route.settings, route.rule, route.target
    pairs, joined, fields = read_request_headers(request.requestHeaders.getAllRawHeaders())
    front = ClientWaiting(
        factory, request.uri.decode("latin-1"), pairs, settings.listener.session_buffer, joined
    )
    front.request_id = route.request_id
    front.id_header = settings.request_ids.name
    front.trace = route.trace
    take_over(request, front)
    over_http2 = getattr(request, "protocol", None) is not None
    try:
        if over_http2:
            front.http_version = "HTTP/2.0"
            upgrade = check_extended_connect(pairs)
        else:
            upgrade = check_upgrade_fields(request.method, request.clientproto, fields)
    except UpgradeRefused as e:
        _refuse(front, e.status, e.detail, e.headers)
        return
    if rule is None:
        _refuse(front, 404, "no forwarding rule matches this host and path")
        return
    allowed = settings.allowed_origins(rule)
    if allowed and upgrade.origin and upgrade.origin.lower() not in allowed:
        _refuse(front, 403, f"origin {upgrade.origin} is not allowed")
        return
    group = settings.groups[rule.target_group]
    if group.reads_requests:
        query = urlsplit(target).query
        request_info = RequestInfo.build(
            peer_ip(front.transport), pairs, parse_qs(query) if query else {}
        )
    else:
        # Neither the policy nor persistence looks at it (the session reads the client's address).
        request_info = NO_REQUEST_INFO
    session = PassThroughSession(
        reactor=factory.reactor,
        settings=settings,
        group=group,
        front=front,
        target=rewrite_target(rule, target),
        connector=factory.connector,
        request=request_info,
        rule=rule,
    )
    session.client_upgrade = upgrade
    session.tunnel = rule.relay == "tunnel"
    front.session = session
    if over_http2:
        front.transport.on_connection_error = lambda reason: _client_connection_failed(
            session, reason
        )
    factory.sessions.add(session)
    session.start()


def _client_connection_failed(session: PassThroughSession, reason: str) -> None:
    """The client's HTTP/2 connection failed under a session: the backend gets 1011."""
    log.warn(
        "websocket: {client} {path}: {reason}; the backend is told 1011 request_id={request_id}",
        client=session.client_ip,
        path=printable(session.target),
        reason=printable(reason),
        request_id=session.shown_id(),
    )
    session.hop_ended(HopEvent(Side.CLIENT, HopEnd.CLOSED, INTERNAL_ERROR, reason))


def _refuse(front: ClientWaiting, status: int, detail: str, headers=()) -> None:
    """Answer an upgrade refused before any backend was chosen, and close."""
    log.info(
        "websocket: {client} {path}: handshake refused with {status}: {detail}"
        " request_id={request_id}",
        client=peer_ip(front.transport),
        path=printable(front.http_request_uri),
        status=status,
        detail=printable(detail),
        request_id=front.request_id or "-",
    )
    accesslog.emit(refusal_record(front, status), front.factory.access)
    headers = list(headers)
    if front.request_id is not None:
        headers.append((front.id_header, front.request_id))
    front.transport.write(raw_error_response(status, detail, headers))
    front.dropConnection(abort=False)
