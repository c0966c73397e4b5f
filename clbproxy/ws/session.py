"""The open stage of a relayed WebSocket session: both hops linked, timers, the fast path.

Once both hops are open, messages are streamed frame by frame in both
directions (Autobahn's streaming API), so a message of any size never sits
whole in memory; each hop answers pings on its own.  Each hop's transport has a
:class:`~clbproxy.ws.hops.WriteBufferWatch` as its streaming producer: when one
side cannot keep up, the other is no longer read, nor is that side itself.  Why
a hop is not read is held by its :class:`~clbproxy.ws.pauses.ReadPauses`.  When
neither hop needs per-message work, the session moves to
:mod:`clbproxy.ws.fastpath`.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from clbproxy.net.transports import buffered_bytes, innermost_transport
from clbproxy.util.logtext import printable
from clbproxy.ws.closecodes import Side
from clbproxy.ws.closing import fill_request_fields
from clbproxy.ws.controls import arm_controls
from clbproxy.ws.fastpath import start_fast_path, watch_write_buffer
from clbproxy.ws.hops import OPEN, WriteBufferWatch
from clbproxy.ws.livecount import SessionSet
from clbproxy.ws.pauses import InflateBudget, ReadPauses
from clbproxy.ws.timers import IdleQueue, SessionTimers

log = Logger()


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


class OpenSession:
    """A session once both hops are open: the link, its timers, the switch to the fast path.

    Mixed into :class:`clbproxy.ws.relay.RelaySession`, whose slots hold the state.
    """

    __slots__ = ()

    def client_opened(self) -> None:
        """Both hops are open: link them and let messages flow."""
        front, backend = self.front, self.backend
        if backend is None or backend.state != OPEN:
            return
        front.peer, backend.peer = backend, front
        self.begin_open()
        listener = self.settings.listener
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
            watch = WriteBufferWatch(hop)
            watch_write_buffer(transport, limit, watch)
            watches.append(watch)
        log.info(
            "websocket: {client} {path} -> {backend} ({group}) open request_id={request_id}",
            client=self.client_ip,
            path=printable(self.target),
            backend=self.backend_config.address,
            group=self.group.name,
            request_id=self.shown_id(),
        )
        hops = start_fast_path(front, backend, tunnel=self.tunnel, deflate=self.deflate)
        if hops is not None:
            # From here on the session holds only the fast path's hops: Autobahn's
            # protocols (and the backend hop's factory) are no longer referenced.
            self.front, self.backend = hops
            for hop, watch in zip(hops, watches):
                watch.hop = hop
                socket = innermost_transport(hop.transport)
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
        self.arm_controls()

    def arm_controls(self, limits: Optional[tuple[float, int, int, int, str]] = None) -> None:
        """Start the session's rate limits and lifetime (:mod:`clbproxy.ws.controls`).

        Called once both hops are open and on the path they stay on; a relief
        asked for during the handshake is applied here.  ``limits``: the rule's
        ``RelaySettings.rate_limits``, when the caller read them already.
        """
        listener = self.settings.listener
        self.controls = arm_controls(
            self.reactor,
            self,
            (self.front, self.backend),
            limits=self.settings.rate_limits(self.rule) if limits is None else limits,
            tunnel=self.tunnel,
            lifetime=(listener.websocket_max_lifetime, listener.websocket_lifetime_spread),
            lifetimes=getattr(self.factory, "lifetimes", None),
            count=self._count,
        )
        self.relieve_pending()

    def begin_open(self) -> None:
        """Both hops are open (whichever path opened them): start the clock and the timers.

        The access record takes the upgrade request's fields now, while the
        client's hop still has them.
        """
        self._opened = self.reactor.seconds()
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
        fill_request_fields(self.record, self.front, self.client_ip)
        self._filled = True
        sessions = getattr(self.factory, "sessions", None)
        if isinstance(sessions, SessionSet):
            sessions.opened(self)

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
            "websocket: {client} {path}: no frame for {timeout:g} s, closing with 1001"
            " request_id={request_id}",
            client=self.client_ip,
            path=printable(self.target),
            timeout=listener.websocket_idle_timeout,
            request_id=self.shown_id(),
        )
        self._count("websocket_idle_closes")
        self.close_both(1001, 1001, b"idle timeout")

    def timer_dead(self, side: Side) -> None:
        hop = self._hop(side)
        timeout = self.settings.listener.websocket_ping_timeout
        self._count("websocket_ping_timeouts")
        log.info(
            "websocket: {client} {path}: the {side} did not answer a ping within {timeout:g} s"
            " request_id={request_id}",
            client=self.client_ip,
            path=printable(self.target),
            side=side.name.lower(),
            timeout=timeout,
            request_id=self.shown_id(),
        )
        if hop is not None and hop.transport is not None:
            hop.wasNotCleanReason = f"no pong within {timeout:g} s"
            hop.dropConnection(abort=True)

    def _count(self, name: str) -> None:
        stats = getattr(self.factory, "stats", None)
        if stats is not None:
            stats.increment(name)

    def buffered_bytes(self) -> int:
        """Bytes waiting in this session's outgoing transport buffers, both directions."""
        return sum(buffered_bytes(hop.transport) for hop in (self.front, self.backend) if hop)


def _scrub(*protocols) -> None:
    """Empty Autobahn protocols the fast path took over, breaking their reference cycles.

    Nothing calls them any more, but their cycles (Deferreds, bound methods) would
    keep ~20 KB per session alive until the next full garbage collection; freed at
    once, that memory serves the next handshakes.  Run after the handshake's own
    call chain has returned.
    """
    for protocol in protocols:
        protocol.__dict__.clear()
