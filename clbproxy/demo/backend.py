"""The embedded demo backend: the application the shipped tap.conf balances.

A new user runs clbproxy with nothing else and opens the listener in a browser.
Each demo instance serves a page saying which instance answered (reload to see
the balancer switch), ``/api/info`` with the forwarding headers the proxy added,
a WebSocket echo at ``/echo`` and a chat at ``/chat``.  The chat room is shared
by every instance of the process, so two browsers balanced onto different
backends still talk to each other, and each message says which backend relayed
it.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any, Optional, Protocol, Sequence

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.filepath import FilePath
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from clbproxy.config import DemoBackendConfig
from clbproxy.ws.deflate import accept_first_deflate_offer

log = Logger()

STATIC = FilePath(__file__).sibling("static")

#: Subprotocols the sockets agree to when a client offers them.
SUBPROTOCOLS = ("chat.v1", "echo.v1")

#: Largest echoed message: big enough to show large transfers through the proxy.
MAX_ECHO_MESSAGE = 64 * 1024 * 1024
#: Largest chat message; a valid one (2000 characters of text) is far smaller.
MAX_CHAT_MESSAGE = 64 * 1024
MAX_NICK = 32
MAX_TEXT = 2000

#: Seconds between the chat room's server-pushed ticks.
TICK_INTERVAL = 10.0

#: Seconds a stopping instance waits for its connections to close before aborting them.
STOP_GRACE = 5.0

#: Request headers that show what a proxy did, as the page and /api/info report them.
SHOWN_HEADERS = ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP")


class ChatMember(Protocol):
    """Whatever receives the room's events: a chat session, or a test's recorder."""

    def sendEvent(self, event: dict[str, Any]) -> None: ...


def isoTime(clock: IReactorTime) -> str:
    """The clock's current time as ISO 8601 in UTC, for events shown to people."""
    now = datetime.fromtimestamp(clock.seconds(), timezone.utc)
    return now.isoformat(timespec="milliseconds")


class ChatRoom:
    """The chat room every demo instance of the process shares.

    Sharing one room is what makes the demo's point: a message sent through one
    backend reaches clients balanced onto the other.  The room ticks (pushes a
    ``tick`` event) on ``clock`` while at least one instance runs; each instance
    calls :meth:`start` when it starts and :meth:`stop` when it stops.
    """

    def __init__(self, clock: IReactorTime, tickInterval: float = TICK_INTERVAL) -> None:
        self._clock = clock
        self._tickInterval = tickInterval
        self._members: list[ChatMember] = []
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = clock
        self._running = 0

    @property
    def members(self) -> int:
        return len(self._members)

    def start(self) -> None:
        """An instance started serving; the first one starts the ticks."""
        self._running += 1
        if self._running == 1:
            self._ticker.start(self._tickInterval, now=False)

    def stop(self) -> None:
        """An instance stopped serving; the last one stops the ticks."""
        self._running -= 1
        if self._running == 0:
            self._ticker.stop()

    def join(self, member: ChatMember, backend: str) -> None:
        """Add and welcome ``member``, and tell the others the room grew."""
        self._members.append(member)
        member.sendEvent({"type": "welcome", "backend": backend, "members": self.members})
        self._presence("join", backend, None, exclude=member)

    def leave(self, member: ChatMember, backend: str, nick: Optional[str]) -> None:
        """Remove ``member`` (if it had joined) and tell everyone else."""
        if member in self._members:
            self._members.remove(member)
            self._presence("leave", backend, nick)

    def say(self, nick: str, text: str, backend: str) -> None:
        """Broadcast a message to every member, naming the backend that received it."""
        self._broadcast(
            {"type": "message", "nick": nick, "text": text, "backend": backend, "time": self._now()}
        )

    def _presence(
        self,
        event: str,
        backend: str,
        nick: Optional[str],
        exclude: Optional[ChatMember] = None,
    ) -> None:
        self._broadcast(
            {
                "type": "presence",
                "event": event,
                "nick": nick,
                "backend": backend,
                "members": self.members,
                "time": self._now(),
            },
            exclude,
        )

    def _tick(self) -> None:
        self._broadcast({"type": "tick", "time": self._now(), "members": self.members})

    def _broadcast(self, event: dict[str, Any], exclude: Optional[ChatMember] = None) -> None:
        for member in list(self._members):
            if member is not exclude:
                member.sendEvent(event)

    def _now(self) -> str:
        return isoTime(self._clock)


class InvalidChatMessage(ValueError):
    """A client's chat message is unusable; the text is sent back to that client."""


def parseSay(payload: bytes) -> tuple[str, str]:
    """The ``(nick, text)`` of a client's ``say`` message, capped to their limits."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise InvalidChatMessage("message is not valid JSON") from e
    if not isinstance(event, dict) or event.get("type") != "say":
        raise InvalidChatMessage('expected {"type": "say", "nick": "...", "text": "..."}')
    nick, text = event.get("nick"), event.get("text")
    if not isinstance(nick, str) or not nick.strip():
        raise InvalidChatMessage("nick must be a non-empty string")
    if not isinstance(text, str) or not text.strip():
        raise InvalidChatMessage("text must be a non-empty string")
    return nick.strip()[:MAX_NICK], text[:MAX_TEXT]


def chooseSubprotocol(offered: Sequence[str]) -> Optional[str]:
    """The first subprotocol the client offered that the demo speaks, if any."""
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    return None


class DemoSocket(WebSocketServerProtocol):
    """What both demo sockets share: subprotocol choice and session logging."""

    kind = "socket"

    def onConnect(self, request: Any) -> Optional[str]:
        self.peer = request.peer
        return chooseSubprotocol(request.protocols)

    def onOpen(self) -> None:
        log.info(
            "demo {backend}: {kind} session opened from {peer}",
            backend=self.factory.backend,
            kind=self.kind,
            peer=self.peer,
        )

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        log.info(
            "demo {backend}: {kind} session closed ({code} {reason})",
            backend=self.factory.backend,
            kind=self.kind,
            code=code,
            reason=reason,
            wasClean=wasClean,
        )


class EchoSocket(DemoSocket):
    """Sends every message back unchanged, text as text and binary as binary."""

    kind = "echo"

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class ChatSocket(DemoSocket):
    """One browser's membership of the shared :class:`ChatRoom`."""

    kind = "chat"
    nick: Optional[str] = None

    def onOpen(self) -> None:
        super().onOpen()
        self.factory.room.join(self, self.factory.backend)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.sendEvent({"type": "error", "error": "chat messages are JSON text"})
            return
        try:
            nick, text = parseSay(payload)
        except InvalidChatMessage as e:
            self.sendEvent({"type": "error", "error": str(e)})
            return
        self.nick = nick
        self.factory.room.say(nick, text, self.factory.backend)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        super().onClose(wasClean, code, reason)
        self.factory.room.leave(self, self.factory.backend, self.nick)

    def sendEvent(self, event: dict[str, Any]) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(event, ensure_ascii=False).encode("utf-8"))


class DemoSocketFactory(WebSocketServerFactory):
    """A socket endpoint of one instance: carries the instance's name and size limit."""

    maxMessage = MAX_ECHO_MESSAGE

    def __init__(self, backend: str, reactor: IReactorTime) -> None:
        super().__init__(server="clbproxy-demo", reactor=reactor)
        self.backend = backend
        self.setProtocolOptions(
            maxFramePayloadSize=self.maxMessage,
            maxMessagePayloadSize=self.maxMessage,
            perMessageCompressionAccept=accept_first_deflate_offer,
        )


class EchoFactory(DemoSocketFactory):
    """The ``/echo`` endpoint of one instance."""

    protocol = EchoSocket


class ChatFactory(DemoSocketFactory):
    """The ``/chat`` endpoint of one instance, a door into the shared room."""

    protocol = ChatSocket
    maxMessage = MAX_CHAT_MESSAGE

    def __init__(self, backend: str, room: ChatRoom, reactor: IReactorTime) -> None:
        super().__init__(backend, reactor)
        self.room = room


def formatAddress(address: object) -> str:
    """``host:port`` of a peer, IPv6 in brackets; other address types as they print."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    return str(address)


def served_request_report(backend: str, request: Request) -> dict[str, Any]:
    """What /api/info answers: who served the request and what the proxy told it."""
    headers = {}
    for name in SHOWN_HEADERS:
        values = request.requestHeaders.getRawHeaders(name)
        headers[name] = ", ".join(values) if values else None
    return {
        "backend": backend,
        "headers": headers,
        "client": formatAddress(request.getClientAddress()),
    }


def noStore(request: Request, contentType: bytes) -> None:
    """Every answer is fresh, so each reload goes through the balancer again."""
    request.setHeader(b"Content-Type", contentType)
    request.setHeader(b"Cache-Control", b"no-store")


class InfoResource(Resource):
    """``/api/info``: the JSON the page (and anyone with curl) reads."""

    isLeaf = True

    def __init__(self, backend: str) -> None:
        super().__init__()
        self._backend = backend

    def render_GET(self, request: Request) -> bytes:
        noStore(request, b"application/json")
        report = served_request_report(self._backend, request)
        return json.dumps(report, indent=2).encode("utf-8") + b"\n"


class DemoPage(Resource):
    """``/``: the demo page, with the serving instance's name written in."""

    def __init__(self, backend: str, template: str) -> None:
        super().__init__()
        self._page = template.replace("{{backend}}", html.escape(backend)).encode("utf-8")

    def render_GET(self, request: Request) -> bytes:
        noStore(request, b"text/html; charset=utf-8")
        return self._page


def demoSite(backend: str, room: ChatRoom, reactor: Any) -> Site:
    """The whole web application of one demo instance."""
    root = Resource()
    root.putChild(b"", DemoPage(backend, STATIC.child("index.html").getContent().decode("utf-8")))
    api = Resource()
    api.putChild(b"info", InfoResource(backend))
    root.putChild(b"api", api)
    root.putChild(b"echo", WebSocketResource(EchoFactory(backend, reactor)))
    root.putChild(b"chat", WebSocketResource(ChatFactory(backend, room, reactor)))
    for asset in (b"app.js", b"style.css"):
        root.putChild(asset, File(STATIC.child(asset.decode()).path))
    return Site(root, reactor=reactor)


class ConnectionTracker(WrappingFactory):
    """Wraps a site to know its open connections, so a stopping instance can close them.

    Stopping a listening port leaves accepted connections open; the demo closes
    them itself (WebSocket sessions with 1001 "going away", the rest by closing
    the connection) so that a stopped instance is really gone.
    """

    noisy = False

    def __init__(self, site: Site, clock: IReactorTime) -> None:
        super().__init__(site)
        self._clock = clock
        self._whenEmpty: list[Deferred[None]] = []

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._whenEmpty = self._whenEmpty, []
            for d in waiting:
                d.callback(None)

    def closeAll(self, grace: float) -> Deferred[None]:
        """Close every connection; abort those still open after ``grace`` seconds."""
        if not self.protocols:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._whenEmpty.append(done)
        for wrapper in list(self.protocols):
            protocol = wrapper.wrappedProtocol
            if not isinstance(protocol, WebSocketServerProtocol):
                wrapper.loseConnection()
            elif protocol.state == protocol.STATE_OPEN:
                # sendClose refuses 1001, which is the code meant for this.
                protocol.sendCloseFrame(
                    code=protocol.CLOSE_STATUS_CODE_GOING_AWAY,
                    reasonUtf8=b"demo backend stopping",
                )
            elif protocol.state != protocol.STATE_CLOSING:
                wrapper.loseConnection()
        abort = self._clock.callLater(grace, self._abortAll)

        def closed(result: None) -> None:
            if abort.active():
                abort.cancel()

        return done.addCallback(closed)

    def _abortAll(self) -> None:
        for wrapper in list(self.protocols):
            wrapper.transport.abortConnection()


class DemoService(StreamServerEndpointService):
    """One demo instance: its listening port, its connections and its share of the room."""

    def __init__(
        self,
        config: DemoBackendConfig,
        room: ChatRoom,
        reactor: Any,
    ) -> None:
        self._tracker = ConnectionTracker(demoSite(config.name, room, reactor), reactor)
        super().__init__(serverFromString(reactor, config.bind), self._tracker)
        self._raiseSynchronously = True
        self.setName(f"demo:{config.name}")
        self._room = room
        self._inRoom = False

    def startService(self) -> None:
        super().startService()
        self._room.start()
        self._inRoom = True

    def stopService(self) -> Deferred[None]:
        if self._inRoom:
            self._room.stop()
            self._inRoom = False
        stopped = super().stopService()
        stopped.addCallback(lambda _: self._tracker.closeAll(STOP_GRACE))
        return stopped

    def whenListening(self) -> Deferred[IListeningPort]:
        """Fires with the listening port once started (how a ``tcp:0`` port is learned)."""
        listening: Deferred[IListeningPort] = Deferred()

        def passOn(port: IListeningPort) -> IListeningPort:
            listening.callback(port)
            return port

        self._waitingForPort.addCallback(passOn)
        return listening


def demo_service(config: DemoBackendConfig, room: ChatRoom, reactor: Any) -> IService:
    """The service running one demo instance, named ``demo:<name>``.

    Binding happens in ``privilegedStartService`` and a bind error is raised there,
    so a busy port aborts start-up instead of being logged and ignored.
    """
    return DemoService(config, room, reactor)
