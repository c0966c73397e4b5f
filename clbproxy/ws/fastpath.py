"""The relay's validated fast path: once both hops are open, frames pass through unchanged.

Autobahn does the handshakes and stays the framing engine whenever a hop needs
per-hop work (permessage-deflate).  When neither hop negotiated an extension, a
session switches to this path: each hop's transport gets a :class:`Hop` as its
protocol in place of Autobahn's, and Autobahn's per-connection objects (protocol
state, buffers, validators, the backend hop's factory) are dropped, so an open
session costs little more than its two sockets.

Each hop's inbound bytes go through a :class:`~clbproxy.ws.frames.FrameScanner` and
every complete, valid data frame is written to the other hop's transport as it
arrived, with no per-message Python objects, Deferreds or log events.  Control
frames stay per hop: pings are answered on the hop they came from, pongs end
there, and a Close ends that hop's closing handshake as Autobahn would (the reply
is a 1000, a server hop closes TCP, a client hop waits for the server to) while
the close-code table (:mod:`clbproxy.ws.closecodes`) decides, through the session,
what the other hop is told.  A violation fails the hop exactly as Autobahn would
(1002, 1007, 1009): our Close, then TCP closed once it is written.  Frames the
proxy sends on the backend hop are masked, as a client's must be.

Flow control: a hop's transport whose buffer passes ``session_buffer`` stops
the reading of the other hop (whose data fills it) and of its own hop (which
does not read what the proxy sends it: pongs would pile up, one per ping); while
it is full, only the most recent ping is answered, once it has drained (RFC 6455
5.5.3).  Inflating a compressed message yields to the reactor after
:data:`~clbproxy.ws.frames.INFLATE_PER_TURN` bytes and is held to the session's
``websocket_inflate_rate``: meanwhile the sending hop is not read.  All of these
are reasons held by the hop's :class:`~clbproxy.ws.pauses.ReadPauses`.

Once a hop is no longer open (the proxy sent it a Close, it sent one, or its
connection is gone), the other hop's data frames are no longer passed on: they
are counted instead (:class:`Dropped`), and the session's log line says how
many.  Frames received before the proxy's Close leave before it: the Close
waits in ``held`` while a frame is still being passed on.

Tunnel mode (``Hop(..., scanner=None)``) skips the scanner: bytes are spliced
after the handshake with no validation at all, and the proxy sends no frames of
its own.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from autobahn.util import _maybe_tls_reason
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IProtocol, IPushProducer
from zope.interface import implementer

from clbproxy.net.transports import (
    innermost_transport,
    send_now,
    socket_under,
    switch_protocol,
    unwrap_client,
)
from clbproxy.util.delays import DelayQueue, delay_queue
from clbproxy.ws.closecodes import HopEnd, HopEvent, Side, received_close_problem, truncate_reason
from clbproxy.ws.compaction import compact_tcp_transport
from clbproxy.ws.controls import CALM_SLOTS, CalmRecord, rate_limited
from clbproxy.ws.frames import CLOSE, PING, PONG, Control, FrameScanner, Violation
from clbproxy.ws.pauses import PauseReason, ReadPauses

OPEN = WebSocketProtocol.STATE_OPEN
CLOSING = WebSocketProtocol.STATE_CLOSING
CLOSED = WebSocketProtocol.STATE_CLOSED

#: Seconds to wait for the peer's answering Close, and for the TCP close after it.
CLOSE_HANDSHAKE_TIMEOUT = 5.0
#: Seconds a client hop waits for the server to close TCP after the closing handshake.
SERVER_DROP_TIMEOUT = 1.0

_UNCLEAN = "peer dropped the TCP connection without previous WebSocket closing handshake"


def control_frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    """One complete control frame (``payload`` at most 125 bytes), masked when ``mask``."""
    n = len(payload)
    if not mask:
        return bytes((0x80 | opcode, n)) + payload
    key = os.urandom(4)
    if n:
        stream = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            n, "big"
        )
    return bytes((0x80 | opcode, 0x80 | n)) + key + payload


def release_producer(transport) -> None:
    """Unregister the session's throttle from ``transport`` before closing it.

    A TLS transport postpones its close_notify, and with it the whole close,
    for as long as a producer is registered: a hop closed with the throttle still
    in place would stay open until the peer gave up.
    """
    if transport is not None:
        try:
            transport.unregisterProducer()
        except RuntimeError:
            pass  # none registered (some transports say so loudly)


class Dropped:
    """Data frames a hop received after the other hop stopped taking them: counted, not relayed.

    Made when the other hop leaves OPEN (or, when a Close for it waited for one
    of this hop's frames to be passed on, when that Close left), so the relay of
    every frame before then costs nothing more.
    """

    __slots__ = ("relayed", "octets")

    def __init__(self, relayed: int) -> None:
        #: The hop's complete messages (its scanner's count) passed on before.
        self.relayed = relayed
        #: Bytes of data frames not passed on, as received (headers included).
        self.octets = 0


#: ``Hop(out=WALK)``: find the TCP connection under the transport (see ``socket_under``).
WALK = object()


@implementer(IProtocol, IPushProducer)
class Hop:
    """One open hop of a session on the fast path (or in a tunnel): its transport's protocol.

    It offers the session what it used from Autobahn's protocol (``state``,
    ``sendCloseFrame``, ``sendPing``, ``dropConnection``, the close codes seen and
    why the hop ended) and relays the hop's inbound frames to ``peer``, the other
    hop.  ``server`` is true for the client's hop (the proxy is the server there).

    Once the session is on the fast path the hop is also its own transport's
    producer in place of the relay's :class:`~clbproxy.ws.hops.WriteBufferWatch`:
    when that transport's buffer is full, the other hop is no longer read, nor
    (unless in a tunnel) this one.  ``pauses`` holds why the hop is not read.

    Control frames this hop sends while the other hop's path has written only
    part of a long frame into this hop's transport wait in the other hop's
    ``held`` until that frame is complete, so they never land inside a frame.

    With rate limits, the hop is a :class:`LimitedHop`.
    """

    __slots__ = (
        "transport",
        "session",
        "side",
        "peer",
        "scanner",
        "server",
        "held",
        "state",
        "octets_in",
        "octets_out",
        "messages_before",
        "_reactor",
        "out",
        "pauses",
        "limiter",
        # What only the end of the hop (or a rare case) sets: read from the class
        # defaults below until then, so a new hop stores none of it and an open one
        # holds no dict; the first of them set makes the dict.
        "__dict__",
    )

    #: How the hop ended, as Autobahn's protocol says it (the closing stage reads these).
    closedByMe = False
    failedByMe = False
    droppedByMe = False
    wasClean = False
    wasNotCleanReason: Optional[str] = None
    wasCloseHandshakeTimeout = False
    localCloseCode: Optional[int] = None
    remoteCloseCode: Optional[int] = None
    remoteCloseReason: Optional[str] = None
    #: The queue holding the hop's close deadline, if it has one (see ``_set_timer``).
    _timer: Optional[DelayQueue] = None
    #: The payload of the latest ping not answered yet (its pong waits for the
    #: write buffer to drain).
    _owed_pong: Optional[bytes] = None
    #: Resumes inflating (next turn) or reading (inflate budget refilled).
    _inflate_call = None
    #: What was not passed on once the other hop stopped taking data (None until then).
    dropped: Optional[Dropped] = None

    def __init__(
        self,
        transport,
        session,
        side: Side,
        scanner: Optional[FrameScanner],
        *,
        octets_in: int = 0,
        octets_out: int = 0,
        messages: int = 0,
        pauses: Optional[ReadPauses] = None,
        out=WALK,
    ) -> None:
        # ``out``: the TCP connection under ``transport`` when the caller found it
        # already (None: none to write to directly); by default it is looked for here.
        self.transport = transport
        self.session = session
        self._reactor = session.reactor
        self.side = side
        self.server = side is Side.CLIENT
        self.peer: Optional[Hop] = None
        self.scanner = scanner
        #: Empty (a shared tuple) until something must wait.
        self.held: Sequence[bytes] = ()
        self.state = OPEN
        self.octets_in = octets_in
        self.octets_out = octets_out
        self.messages_before = messages
        #: Where frames for this hop can be written directly
        #: (see :func:`~clbproxy.net.transports.send_now`).
        self.out = socket_under(transport) if out is WALK else out
        #: Why this hop is not read (shared with the Autobahn protocol it took over).
        self.pauses = pauses if pauses is not None else ReadPauses(transport, session.timers)
        #: The rate limits of what this hop sends (:mod:`clbproxy.ws.controls`), if any.
        self.limiter = None

    # -- what the session reads ------------------------------------------------------

    @property
    def messages_in(self) -> int:
        """Complete messages received on this hop (a tunnel does not count them)."""
        scanner = self.scanner
        return self.messages_before + (scanner.messages if scanner is not None else 0)

    @property
    def dropped_after_close(self) -> tuple[int, int]:
        """Complete data messages and bytes received but not passed on: the other hop had closed.

        A message counts when its last frame was not passed on; the bytes are
        those of the data frames not passed on, as received.
        """
        dropped = self.dropped
        if dropped is None:
            return 0, 0
        return self.scanner.messages - dropped.relayed, dropped.octets

    @property
    def mid_frame(self) -> bool:
        """True when the bytes this hop passed on end inside a frame."""
        scanner = self.scanner
        return scanner is not None and scanner.mid_frame

    # -- IProtocol -------------------------------------------------------------------

    def makeConnection(self, transport) -> None:
        self.transport = transport

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        size = len(data)
        self.octets_in += size
        timers = self.session.timers
        # The time of this read, for its rate limits too (no second clock read).
        now = timers.activity() if timers is not None else self._reactor.seconds()
        peer = self.peer
        scanner = self.scanner
        if scanner is None:
            if peer.out is not None:
                send_now(peer.out, data)
            else:
                peer.transport.write(data)
            peer.octets_out += size
            if self.limiter is not None:
                # RateLimiter.charge, its calm branch inlined (as below).
                shared = self.rate_session
                if size <= self.rate_calm_octets and now - shared.rate_read_at >= self.rate_gap:
                    self.rate_last_octets = size
                    self.rate_last_messages = 0
                    shared.rate_read_at = now
                    shared.rate_read_by = self
                else:
                    self.limiter.charge_in_full(now, size, 0)
            return
        before = scanner.messages
        events = scanner.feed(data)
        if len(events) == 1 and events[0].__class__ is bytes:
            if peer.state == OPEN or self.held:
                chunk = events[0]
                out = peer.out
                if out is not None:
                    send_now(out, chunk)
                else:
                    peer.transport.write(chunk)
                peer.octets_out += len(chunk)
            else:
                self._drop(len(events[0]))
        else:
            pings = None  # answered with one write: a write per tiny pong costs far more
            for event in events:
                if event.__class__ is bytes:
                    if peer.state == OPEN or self.held:
                        if peer.out is not None:
                            send_now(peer.out, event)
                        else:
                            peer.transport.write(event)
                        peer.octets_out += len(event)
                    else:
                        self._drop(len(event))
                    continue
                if event.__class__ is Control and event.opcode == PING:
                    if pings is None:
                        pings = []
                    pings.append(event.payload)
                    continue
                if pings:
                    self._answer_pings(pings)
                    pings = None
                if event.__class__ is Violation:
                    self._violation(event)
                else:
                    self._control(event.opcode, event.payload)
            if pings:
                self._answer_pings(pings)
        if self.held and not scanner.mid_frame:
            held, self.held = self.held, ()
            peer.transport.writeSequence(held)
            if peer.state != OPEN:
                # The frames before the peer's Close are out: from here on, nothing is.
                self.dropped = Dropped(scanner.messages)
        if scanner.inflated:
            self._inflated(scanner)
        if self.limiter is not None:
            # RateLimiter.charge, its calm branch inlined on the hop's own slots (a
            # CalmRecord's): what a read under the limits costs.
            new = scanner.messages - before
            shared = self.rate_session
            if (
                size <= self.rate_calm_octets
                and new <= self.rate_calm_messages
                and now - shared.rate_read_at >= self.rate_gap
            ):
                self.rate_last_octets = size
                self.rate_last_messages = new
                shared.rate_read_at = now
                shared.rate_read_by = self
            else:
                self.limiter.charge_in_full(now, size, new)

    def unlink(self) -> None:
        """The session has ended: let go of it and of the other hop (see ``Closing._unlink``)."""
        self.peer = None
        self.session = None
        # The limiter holds the session (its owner) and this hop's pauses.
        self.limiter = None

    def connectionLost(self, reason=None) -> None:
        self._cancel_timer()
        self._cancel_inflate_call()
        if self.state == OPEN:
            self._takes_no_more()  # (it ran when the hop left OPEN otherwise)
        self.state = CLOSED
        if self.wasClean:
            code, text = self.remoteCloseCode, self.remoteCloseReason
        else:
            if not self.droppedByMe and self.wasNotCleanReason is None:
                value = getattr(reason, "value", None)
                self.wasNotCleanReason = (_maybe_tls_reason(value) if value else "") or _UNCLEAN
            code = WebSocketProtocol.CLOSE_STATUS_CODE_ABNORMAL_CLOSE
            text = f'connection was closed uncleanly ("{self.wasNotCleanReason}")'
        peer = self.peer
        if self.scanner is None:
            if peer is not None and peer.transport is not None:
                peer.transport.loseConnection()
        elif self.mid_frame:
            # The other hop got part of a frame that will never be completed.
            self.held = ()
            if peer is not None:
                peer.dropConnection(abort=True)
        self.session.hop_lost(self.side, self.wasClean, code, text)

    # -- frames received -------------------------------------------------------------

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self._answer_pings([payload])
        elif opcode == PONG:
            timers = self.session.timers
            if timers is not None:
                timers.pong(self.side, payload)
        elif opcode == CLOSE:
            code = (payload[0] << 8) | payload[1] if len(payload) >= 2 else None
            reason = payload[2:] if len(payload) > 2 else None
            self._close_received(code, reason)

    def _answer_pings(self, payloads: list[bytes]) -> None:
        """Pongs for these pings, in one write; only the latest is owed while pongs are queued."""
        if self.state != OPEN:
            return
        if self.pauses.held & PauseReason.OWN_WRITE_BUFFER:
            # Pongs already wait to be read: the latest ping replaces any still owed.
            self._owed_pong = payloads[-1]
            return
        mask = not self.server
        if len(payloads) == 1:
            self._write_control(control_frame(PONG, payloads[0], mask))
        elif mask:
            self._write_control(b"".join([control_frame(PONG, p, True) for p in payloads]))
        else:
            pongs = bytearray()  # no object per pong: a flood of tiny pings makes many
            for payload in payloads:
                pongs.append(0x80 | PONG)
                pongs.append(len(payload))
                pongs += payload
            self._write_control(bytes(pongs))

    def _close_received(self, code: Optional[int], reason: Optional[bytes]) -> None:
        problem = None if self.failedByMe else received_close_problem(code, reason)
        if problem is not None:
            self._fail(*problem)
        if self.failedByMe:
            # Our Close for the peer's violation is queued: close once it is written.
            self.dropConnection(abort=False)
            return
        self.remoteCloseCode = code
        self.remoteCloseReason = reason.decode("utf-8") if reason else None
        if self.state == CLOSED:
            self.wasClean = False
            return
        self.wasClean = True
        peer_initiated = self.state == OPEN
        if peer_initiated:
            self.sendCloseFrame(code=WebSocketProtocol.CLOSE_STATUS_CODE_NORMAL, isReply=True)
        else:
            self._cancel_timer()  # the answer to our Close
        if self.server:
            # A server closes TCP once the closing handshake is complete.
            self.dropConnection(abort=not peer_initiated)
        else:
            # A client waits for the server to close TCP, but not for ever.
            self._set_timer(SERVER_DROP_TIMEOUT, self._server_kept_tcp)
        if peer_initiated:
            self.session.hop_ended(
                HopEvent(self.side, HopEnd.CLOSED, code, self.remoteCloseReason or "")
            )

    def _violation(self, violation: Violation) -> None:
        self._fail(violation.code, violation.reason)
        if self.mid_frame:
            self.held = ()
            self.peer.dropConnection(abort=True)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the hop (RFC 6455 7.1.7): our Close with ``code``, then TCP closed."""
        if self.state == CLOSED:
            return
        self.failedByMe = True
        if self.state == OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=truncate_reason(reason))
        self.session.hop_ended(HopEvent(self.side, HopEnd.FAILED, code, reason))
        self.dropConnection(abort=False)

    # -- what the session does -------------------------------------------------------

    def _write_control(self, frame: bytes) -> None:
        if self.scanner is None:
            return  # in a tunnel only the peers' own bytes travel
        inbound = self.peer
        if inbound is not None and inbound.mid_frame:
            inbound.held = [*inbound.held, frame]
        elif self.out is not None:
            send_now(self.out, frame)
        else:
            self.transport.write(frame)
        self.octets_out += len(frame)

    def sendPing(self, payload: bytes) -> None:
        if self.state == OPEN:
            self._write_control(control_frame(PING, payload, not self.server))

    def sendCloseFrame(
        self, code: Optional[int] = None, reasonUtf8: Optional[bytes] = None, isReply: bool = False
    ) -> None:
        """Start (or answer) this hop's closing handshake; nothing once it is closing."""
        if self.state != OPEN:
            return
        # The Close's payload: the code (none: empty) and the reason.
        payload = b"" if code is None else code.to_bytes(2, "big") + (reasonUtf8 or b"")
        self._write_control(control_frame(CLOSE, payload, not self.server))
        self.state = CLOSING
        self._takes_no_more()
        self.closedByMe = not isReply
        self.localCloseCode = code
        if self.closedByMe:
            self._set_timer(CLOSE_HANDSHAKE_TIMEOUT, self._no_close_answer)

    def dropConnection(self, abort: bool = False) -> None:
        """Close TCP; never abort while a Close we sent may still sit in the write buffer.

        A graceful close is bounded too: a peer that neither reads what is left
        nor (on TLS) answers our close_notify is cut off after the close timeout.
        """
        transport = self.transport
        if abort and self.state == CLOSING and not self.wasCloseHandshakeTimeout:
            abort = False
        if self.state == CLOSED:
            return
        self.droppedByMe = True
        if self.state == OPEN:
            self._takes_no_more()  # (it ran when the hop left OPEN otherwise)
        self.state = CLOSED
        if abort:
            transport.abortConnection()
        else:
            release_producer(transport)
            transport.loseConnection()
            self._set_timer(CLOSE_HANDSHAKE_TIMEOUT, transport.abortConnection)

    # -- data the other hop can no longer pass on ---------------------------------------

    def _takes_no_more(self) -> None:
        """This hop just left OPEN: the other hop's data frames are dropped (and counted) now."""
        inbound = self.peer
        if inbound is not None and inbound.scanner is not None and inbound.dropped is None:
            inbound.dropped = Dropped(inbound.scanner.messages)

    def _drop(self, size: int) -> None:
        """``size`` bytes of data frames were not passed on: the other hop is not open."""
        dropped = self.dropped
        if dropped is None:  # not expected: the other hop says when it leaves OPEN
            dropped = self.dropped = Dropped(self.scanner.messages)
        dropped.octets += size

    # -- IPushProducer: registered on this hop's own transport --------------------------

    def pauseProducing(self) -> None:
        self.write_buffer_full()

    def resumeProducing(self) -> None:
        self.write_buffer_drained()

    def stopProducing(self) -> None:
        pass

    def write_buffer_full(self) -> None:
        """This hop's transport cannot take more: stop reading the other hop, and this one.

        In a tunnel the proxy sends nothing of its own, so only the other hop stops.
        """
        if self.scanner is not None:
            self.pauses.add(PauseReason.OWN_WRITE_BUFFER)
        self.peer.pauses.add(PauseReason.PEER_BACKPRESSURE)

    def write_buffer_drained(self) -> None:
        """This hop's transport wrote all it held: answer the latest ping, read both again."""
        payload = self._owed_pong
        if payload is not None:
            self._owed_pong = None
            if self.state == OPEN:
                self._write_control(control_frame(PONG, payload, not self.server))
        self.pauses.remove(PauseReason.OWN_WRITE_BUFFER)
        self.peer.pauses.remove(PauseReason.PEER_BACKPRESSURE)

    # -- inflating: bounded per turn and in rate ------------------------------------------

    def _inflated(self, scanner: FrameScanner) -> None:
        """The last feed inflated bytes: charge them, and stop reading while owed or stalled.

        A stalled scanner goes on at the next reactor turn; a hop over the
        session's inflate rate is not read until its budget is back.
        """
        budget = getattr(self.session, "inflate_budget", None)
        wait = budget.spend(scanner.inflated) if budget is not None else 0.0
        if (scanner.stalled or wait > 0) and self._inflate_call is None and self.state != CLOSED:
            self.pauses.add(PauseReason.INFLATE)
            self._inflate_call = self._reactor.callLater(wait, self._inflate_later)

    def _inflate_later(self) -> None:
        self._inflate_call = None
        if self.state == CLOSED:
            return
        if self.scanner.stalled:
            self.dataReceived(b"")  # the input the scanner kept; may wait again
        if self._inflate_call is None:
            self.pauses.remove(PauseReason.INFLATE)

    def _cancel_inflate_call(self) -> None:
        call, self._inflate_call = self._inflate_call, None
        if call is not None and call.active():
            call.cancel()

    # -- timers ----------------------------------------------------------------------

    def _set_timer(self, delay: float, action) -> None:
        """The hop's one close deadline: ``action`` in ``delay`` s (on a shared queue)."""
        queue = self._timer
        if queue is not None:
            queue.discard(self)
        queue = self._timer = delay_queue(self._reactor, delay)
        queue.add(self, action)

    def _cancel_timer(self) -> None:
        queue, self._timer = self._timer, None
        if queue is not None:
            queue.discard(self)

    def _no_close_answer(self) -> None:
        self._timer = None
        if self.state != CLOSED:
            self.wasClean = False
            self.wasNotCleanReason = (
                "WebSocket closing handshake timeout "
                "(peer did not finish the closing handshake in time)"
            )
            self.wasCloseHandshakeTimeout = True
            self.dropConnection(abort=True)

    def _server_kept_tcp(self) -> None:
        self._timer = None
        if self.state != CLOSED:
            self.wasClean = False
            self.wasNotCleanReason = (
                "WebSocket closing handshake timeout (server did not drop TCP connection in time)"
            )
            self.droppedByMe = True
            self.state = CLOSED
            self.transport.abortConnection()


class LimitedHop(Hop, CalmRecord):
    """A hop of a session with rate limits: its limiter's :class:`~clbproxy.ws.controls.CalmRecord`.

    A read under the limits is decided and recorded on the hop's own slots
    (:meth:`Hop.dataReceived` inlines the calm branch), which the read touches
    anyway.  Only sessions with rate limits carry those slots: 64 bytes a hop.
    """

    __slots__ = CALM_SLOTS

    def unlink(self) -> None:
        super().unlink()
        # The limiter's record is this hop, and the session's time the client hop's.
        self.rate_session = None
        self.rate_read_by = None


def hop_kind(limits: tuple[float, int, int, int, str], tunnel: bool) -> type[Hop]:
    """The hop class for a session with ``limits`` (``RelaySettings.rate_limits``).

    A plain :class:`Hop` never gets a limiter: its reads would look for the
    slots only a :class:`LimitedHop` has.
    """
    return LimitedHop if rate_limited(limits, tunnel) else Hop


def hop_scanners(
    tunnel: bool, max_message: int, hold: int, deflate: Optional[tuple[bool, bool]]
) -> tuple[Optional[FrameScanner], Optional[FrameScanner]]:
    """The frame scanners of a session's client hop and backend hop (none in a tunnel).

    The client's frames are masked, the backend's are not.  ``max_message``
    (``max_message_size``) bounds the client's messages; the backend's are not
    bounded, as on Autobahn's relay.  ``deflate``: permessage-deflate agreed end
    to end, with whether the client and the backend start each compressed
    message with a fresh window.
    """
    if tunnel:
        return None, None
    if deflate is None:
        return FrameScanner(True, max_message, hold), FrameScanner(False, 0, hold)
    return (
        FrameScanner(True, max_message, hold, deflate=True, deflate_reset=deflate[0]),
        FrameScanner(False, 0, hold, deflate=True, deflate_reset=deflate[1]),
    )


def watch_write_buffer(transport, limit: int, producer, socket=None) -> None:
    """Make ``producer`` hear when ``transport``'s write buffer passes ``limit`` bytes and drains.

    The limit goes on the socket under any wrappers (``socket``, when the caller
    knows it: the hop's ``out``); the producer twisted.web (or anything before)
    registered there is replaced.
    """
    if socket is None:
        socket = innermost_transport(transport)
    if hasattr(socket, "bufferSize"):
        socket.bufferSize = limit
    if getattr(socket, "producer", None) is not None:
        socket.unregisterProducer()
    transport.registerProducer(producer, True)


def start_fast_path(
    front, backend, tunnel: bool = False, deflate: Optional[tuple[bool, bool]] = None
) -> Optional[tuple[Hop, Hop]]:
    """Move an open session to the fast path (or a tunnel): the two new hops, or None.

    ``front`` and ``backend`` are the two hops' Autobahn protocols.  ``deflate``:
    permessage-deflate was agreed end to end, with whether the client and the
    backend reset their window each message; compressed frames then pass on
    unchanged.  None means the session must stay on Autobahn (an extension is in
    use per hop, or a transport could not be taken over).  Bytes Autobahn had
    buffered but not yet parsed are handed to the new hops through the old
    protocols' ``_fast``.
    """
    session = front.session
    extensions = front.websocket_extensions_in_use or backend.websocket_extensions_in_use
    if not tunnel and extensions and deflate is None:
        return None
    scanners = hop_scanners(
        tunnel, front.maxMessagePayloadSize, session.settings.listener.session_buffer, deflate
    )
    kind = hop_kind(session.settings.rate_limits(session.rule), tunnel)
    hops = []
    for old, side, scanner in (
        (front, Side.CLIENT, scanners[0]),
        (backend, Side.BACKEND, scanners[1]),
    ):
        stats = old.trafficStats
        hops.append(
            kind(
                old.transport,
                session,
                side,
                scanner,
                octets_in=stats.incomingOctetsWireLevel,
                octets_out=stats.outgoingOctetsWireLevel,
                messages=old.messages_in,
                pauses=old.pauses,
            )
        )
    new_front, new_back = hops
    new_front.peer, new_back.peer = new_back, new_front
    if not switch_protocol(front, new_front):
        return None
    if not switch_protocol(backend, new_back):
        switch_protocol(new_front, front)
        return None
    front._fast, backend._fast = new_front, new_back
    unwrap_client(new_back)
    for hop in hops:
        compact_tcp_transport(hop.transport)
    return new_front, new_back
