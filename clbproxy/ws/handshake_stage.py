"""The handshake stage of a relayed WebSocket session: backend choice, its handshake, the answer.

The client's handshake is held open (``onConnect`` returns a Deferred) while
the session picks a backend, connects, and performs its own handshake with it;
only when the backend accepts does the client get its ``101``, with the
subprotocol the backend chose.  A backend that refuses gets its status, headers
and body passed back to the client; one that cannot be reached gets 502 (after
trying another), one that does not answer in time 504.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.types import ConnectingRequest
from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clbproxy.config import BackendConfig
from clbproxy.http.forwarded import (
    FORWARDING_HEADERS,
    client_header_passes,
    forwarded_headers,
    hop_by_hop_names,
    is_hop_by_hop,
    untrusted_headers,
)
from clbproxy.http.proxy_headers import VIA, proxy_named
from clbproxy.http.responses import raw_error_response, raw_response, with_header
from clbproxy.net.certificates import client_certificate_headers
from clbproxy.net.endpoints import ConnectOutcome, DirectTCPEndpoint, disable_nagle
from clbproxy.net.transports import host_address
from clbproxy.routing.actions import header_changes
from clbproxy.util.logtext import printable
from clbproxy.ws.closecodes import Side
from clbproxy.ws.deflate import (
    accept_backend_deflate,
    client_deflate_offer,
    end_to_end_accept,
    offers_deflate,
)
from clbproxy.ws.handshake import (
    MalformedAnswer,
    RefusalReader,
    parse_response_head,
    read_response_head,
)
from clbproxy.ws.hops import RelayingHop
from clbproxy.ws.livecount import SessionSet

log = Logger()


class HandshakeRefused(Exception):
    """The client's handshake is answered with a complete HTTP response, not a 101."""

    def __init__(self, response: bytes, status: int, detail: str) -> None:
        super().__init__(detail)
        self.response = response
        self.status = status
        self.detail = detail


def refuse(status: int, detail: str, headers: list[tuple[str, str]] = ()) -> HandshakeRefused:
    return HandshakeRefused(raw_error_response(status, detail, headers), status, detail)


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


class RelayClientProtocol(RelayingHop, WebSocketClientProtocol):
    """The backend's hop, opened by the proxy on behalf of one client session."""

    side = Side.BACKEND
    _refusal_reader: Optional[RefusalReader] = None

    #: The handshake request for the backend (set by the session's :class:`BackendBuilder`).
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
            try:
                answer = read_response_head(self.data)
            except MalformedAnswer as e:
                self._bad_answer(str(e))
                return None
            if answer is None:
                return None
            head, rest = answer
            if head.status == 101:
                return super().processHandshake()
            self._refusal_reader = RefusalReader(head, self.factory.max_refusal_body)
            self.data = rest
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
    offered, deflate) in the listener's :class:`~clbproxy.ws.relay.RelayServerFactory`; what is
    per session (the session, its handshake request) is set on each protocol by
    the session's :class:`BackendBuilder`.
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
                perMessageCompressionAccept=accept_backend_deflate,
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
class BackendBuilder:
    """The factory a backend connection is made with: builds its Autobahn client protocol.

    Twisted's connector keeps the factory it was given for the connection's whole
    life; this small object stands in for Autobahn's per-session factory and lets
    go of it once the session is on the fast path (its ``release()``).
    """

    __slots__ = ("factory", "session", "request")

    def __init__(
        self, factory: RelayClientFactory, session: HandshakeStage, request: ConnectingRequest
    ) -> None:
        self.factory: Optional[RelayClientFactory] = factory
        self.session: Optional[HandshakeStage] = session
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


class HandshakeStage:
    """A session from the client's upgrade request until the client's handshake is answered.

    Picks a backend (another on a failed connect, up to the group's
    ``retries``), builds the backend's handshake request from the client's,
    agrees permessage-deflate and answers the client: the backend's 101
    (its subprotocol, its headers) or a complete refusal.  Mixed into
    :class:`clbproxy.ws.relay.RelaySession`, whose slots hold the state.
    """

    __slots__ = ()

    def start(self) -> defer.Deferred:
        """Connect to a backend; fires with what the client's 101 carries, or fails."""
        self._handshake = defer.Deferred()
        if self.settings.listener.websocket_deflate == "end_to_end":
            try:
                self.deflate_offer = client_deflate_offer(self.front.websocket_extensions)
            except Exception as e:
                self._fail(refuse(400, f"invalid permessage-deflate offer: {e}"))
                return self._handshake
        self._connect_next()
        return self._handshake

    def _connect_next(self) -> None:
        backend = self.group.pick(self.request, exclude=self._tried)
        if backend is None:
            if self._tried:
                self._fail(refuse(502, "no backend of the target group could be reached"))
            else:
                self._fail(refuse(503, f"no backend available in target group {self.group.name}"))
            return
        self._tried.append(backend)
        self.group.hold(self, backend)
        factory = self._backend_factory(backend)
        try:
            endpoint = self.connector(backend, self.group.config)
        except Exception:
            self._connecting = defer.fail()
        else:
            if endpoint.__class__ is DirectTCPEndpoint:
                # No Deferred (see ConnectOutcome); kept before the connect can end.
                outcome = self._connecting = ConnectOutcome(self._connected, self._connect_failed)
                endpoint.connect_calling(factory, outcome)
                return
            self._connecting = endpoint.connect(factory)
        self._connecting.addCallbacks(self._connected, self._connect_failed)

    def _backend_factory(self, backend: BackendConfig) -> IProtocolFactory:
        """The factory of the backend connection: an Autobahn client performing its handshake."""
        request = self._backend_request(backend)
        factory = backend_factory(
            self.factory.backend_factories,
            tuple(request.protocols),
            # End to end, the backend is offered the client's own offer (onConnecting).
            self.settings.listener.websocket_deflate == "per_hop"
            and offers_deflate(self.front.websocket_extensions),
            self.group.config.response_timeout,
            self.settings.listener.max_refusal_body,
        )
        self._builder = BackendBuilder(factory, self, request)
        return self._builder

    def _connected(self, protocol) -> None:
        self._connecting = None

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self.release()
        if self._handshake is None or self._handshake.called:
            return
        self.group.report_failure(self.backend_config, failure.getErrorMessage())
        log.warn(
            "websocket: cannot connect to backend {backend} of {group}: {reason}"
            " request_id={request_id}",
            backend=self.backend_config.address,
            group=self.group.name,
            reason=failure.getErrorMessage(),
            request_id=self.shown_id(),
        )
        if len(self._tried) <= self.group.config.retries:
            self._connect_next()
        else:
            self._fail(refuse(502, "no backend of the target group could be reached"))

    def _backend_request(self, backend: BackendConfig) -> ConnectingRequest:
        front = self.front
        headers = front.http_headers
        extra = dict(
            upgrade_headers(
                self, headers.items(), headers, front.transport, _HANDSHAKE_REQUEST_HEADERS
            )
        )
        host, port = split_host_header(
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
        own = self.id_header_names()
        if head is not None:
            hop = hop_by_hop_names(head.values("connection"))
            for name, value in head.headers:
                lower = name.lower()
                if is_hop_by_hop(lower, hop) or lower in _HANDSHAKE_RESPONSE_HEADERS:
                    continue
                if lower in own:
                    continue
                headers.setdefault(name, []).append(value)
        if self.deflate_offer is not None and not self._agree_deflate(backend):
            return
        self.group.report_success(self.backend_config)
        for name, value in self.group.persistence_headers(self.request, self.backend_config):
            headers.setdefault(name, []).append(value)
        if self.request_id is not None:
            headers[self.settings.request_ids.name] = [self.request_id]
        self._handshake_done(101)
        self._handshake.callback((response.protocol, headers))

    def _agree_deflate(self, backend: RelayClientProtocol) -> bool:
        """Answer the client's deflate offer as the backend answered it (end to end).

        A backend that declined gets a client without deflate; an answer that
        does not fit the offer (RFC 7692 7.1) is a backend error: 502.
        """
        offer, self.deflate_offer = self.deflate_offer, None
        try:
            accept, self.deflate = end_to_end_accept(offer, backend.deflate_response)
        except Exception as e:
            backend.dropConnection(abort=True)
            self._fail(
                refuse(502, f"backend's permessage-deflate answer does not fit the offer: {e}")
            )
            return False
        self.front.perMessageCompressionAccept = lambda _offers: accept
        return True

    def backend_refused(self, reader: RefusalReader) -> None:
        """The backend answered the handshake with another status: pass it to the client."""
        if self._handshake is None or self._handshake.called:
            return
        head = reader.head
        hop = hop_by_hop_names(head.values("connection")) | self.id_header_names()
        headers = [
            (name, value)
            for name, value in head.headers
            if name.lower() not in hop and name.lower() not in ("content-length",)
        ]
        if reader.truncated:
            log.warn(
                "websocket: backend {backend} refused the handshake with {status} and a body "
                "over max_refusal_body; the client gets the first {limit} bytes"
                " request_id={request_id}",
                backend=self.backend_config.address,
                status=head.status,
                limit=len(reader.body),
                request_id=self.shown_id(),
            )
        self.group.report_status(self.backend_config, head.status)
        response = raw_response(head.status, headers, reader.body, head.reason)
        self._fail(HandshakeRefused(response, head.status, f"backend answered {head.status}"))

    def _fail(self, refused: HandshakeRefused) -> None:
        self.release()
        if self._handshake is None or self._handshake.called:
            return
        log.info(
            "websocket: {client} {path}: handshake refused with {status}: {detail}"
            " request_id={request_id}",
            client=self.client_ip,
            path=printable(self.target),
            status=refused.status,
            detail=printable(refused.detail),
            request_id=self.shown_id(),
        )
        self._handshake_done(refused.status)
        self._answer_refusal(self.stamped(refused))

    def _answer_refusal(self, refused: HandshakeRefused) -> None:
        """Give the client ``refused``: Autobahn answers it (see ``RelayServerProtocol``)."""
        self._handshake.errback(refused)

    def stamped(self, refused: HandshakeRefused) -> HandshakeRefused:
        """``refused`` with the session's ID in its response (the backend's own taken out)."""
        if self.request_id is None:
            return refused
        response = with_header(refused.response, self.settings.request_ids.name, self.request_id)
        return HandshakeRefused(response, refused.status, refused.detail)

    def id_header_names(self) -> frozenset[str]:
        """Lower-case names of the headers the proxy writes itself: the session's ID."""
        return proxy_named(self.settings.request_ids.name if self.request_id else None)

    def shown_id(self) -> str:
        """The session's ID as log lines show it (``-``: IDs are off)."""
        return self.request_id or "-"

    def _handshake_done(self, status: int) -> None:
        self.record.status = status
        self.record.handshake_ms = (self.reactor.seconds() - self._started) * 1000
        if status == 101:
            sessions = getattr(self.factory, "sessions", None)
            if isinstance(sessions, SessionSet):
                sessions.switched(self)

    # -- open ------------------------------------------------------------------------


def split_host_header(
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


def upgrade_headers(
    session: HandshakeStage,
    pairs: Iterable[tuple[str, str]],
    joined: Mapping[str, str],
    transport,
    written: frozenset[str],
) -> list[tuple[str, str]]:
    """The headers a backend's upgrade request carries besides those the proxy ``written`` itself.

    The client's end-to-end headers (``pairs``; ``joined`` is the same by
    lower-case name), minus hop-by-hop, forwarding and untrusted ones and those
    the rule removes or sets; then the session's ID and a ``traceparent`` the
    proxy made (the client's copies, and its ``tracestate`` then, left out),
    the rule's, the forwarding headers, the client certificate's and ``Via``:
    one policy for both handshake paths.
    """
    settings = session.settings
    drop, add = header_changes(session.rule, [])
    request_id, trace = session.request_id, session.trace
    if request_id is not None or trace.replaced is not None:
        # The proxy's own headers: no client spelling of them passes (X_Request_Id).
        drop = drop | proxy_named(settings.request_ids.name if request_id else None, trace)
    client_ip = session.client_ip
    skip = (
        hop_by_hop_names([joined.get("connection", "")])
        | written
        | FORWARDING_HEADERS
        | untrusted_headers(client_ip, settings.trusted)
        | drop
    )
    underscores = settings.listener.underscores_in_headers
    chosen = []
    for name, value in pairs:
        # A name in ``skip`` never passes (most of an upgrade's: Host, Upgrade, the key...).
        if name.lower() not in skip and client_header_passes(
            name, skip, underscores=underscores, ours=drop
        ):
            chosen.append((name, value))
    if request_id is not None:
        chosen.append((settings.request_ids.name, request_id))
    if trace.replaced is not None:
        chosen.append(("traceparent", trace.replaced))
    chosen.extend(add)
    chosen.extend(
        forwarded_headers(
            peer_ip=client_ip,
            scheme=settings.scheme,
            host=joined.get("host"),
            forwarded_for=[joined["x-forwarded-for"]] if "x-forwarded-for" in joined else [],
            forwarded_proto=joined.get("x-forwarded-proto"),
            forwarded_host=joined.get("x-forwarded-host"),
            trusted=settings.trusted,
            port=getattr(host_address(transport), "port", None),
        )
    )
    chosen.extend(client_certificate_headers(transport))
    if settings.listener.via:
        chosen.append(("Via", VIA.decode("ascii")))
    return chosen
