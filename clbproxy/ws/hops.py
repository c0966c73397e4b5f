"""One hop of a relayed WebSocket session on Autobahn: streaming, pongs, flow control, ends.

Both hops (the client's, served; the backend's, opened by the proxy) are
Autobahn protocols with :class:`RelayingHop` mixed in: it streams each message
to the other hop frame by frame, answers the pings of one read in one write,
registers a :class:`WriteBufferWatch` as its transport's producer (as in
``twisted.protocols.portforward``) and tells the session when the hop ends.
A message that ends after the other hop stopped being open is not relayed: it
is counted (``dropped_after_close``) for the session's log line.
"""

from __future__ import annotations

from typing import Optional

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from clbproxy.net.transports import socket_under
from clbproxy.ws.closecodes import HopEnd, HopEvent, Side, received_close_problem
from clbproxy.ws.fastpath import control_frame, send_now
from clbproxy.ws.frames import INFLATE_PER_TURN, PONG
from clbproxy.ws.pauses import InflateBudget, PauseReason, ReadPauses

log = Logger()

#: Bytes of pongs gathered in one read before they are written.
_PONG_BATCH = 8192

#: Bytes of a compressing hop given to Autobahn at once: inflated, at most ~4 MiB.
INFLATE_SLICE = 4096

OPEN = WebSocketProtocol.STATE_OPEN
CONNECTING = WebSocketProtocol.STATE_CONNECTING
CLOSED = WebSocketProtocol.STATE_CLOSED


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


class RelayingHop:
    """Streaming message relay shared by both hops; ``peer`` is the opposite hop.

    Each inbound frame chunk is held until the next one arrives, so a message that
    arrives in one piece (most messages) leaves as one frame, and a long message
    leaves as a stream of frames with at most one chunk held.
    """

    side: Side
    #: The session this hop belongs to (a :class:`clbproxy.ws.relay.RelaySession`).
    session = None
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
    #: Pong frames for the pings of this read, not written yet (None outside a read).
    _pongs: Optional[bytearray] = None
    _inflate_call = None
    #: Bytes read but not given to Autobahn yet (see ``_feed_slices``).
    _backlog = b""
    #: Bytes Autobahn inflated on this hop in the current reactor turn.
    _turn_inflated = 0
    #: The rate limits of what this hop sends (:mod:`clbproxy.ws.controls`), if any.
    limiter = None
    _dropped_messages = 0
    _dropped_octets = 0

    @property
    def messages_in(self) -> int:
        """Complete messages received on this hop by Autobahn."""
        return self._messages

    @property
    def dropped_after_close(self) -> tuple[int, int]:
        """Messages received but not relayed (the other hop had closed), and their payload bytes.

        A message counts when it ended after the other hop left OPEN; its bytes
        are its whole payload (uncompressed), even if its first frames got through.
        """
        return self._dropped_messages, self._dropped_octets

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
        (:func:`clbproxy.net.transports.socket_under`); anything unusual is Autobahn's.
        """
        connection = None if sync or chopsize or self.send_queue else socket_under(self.transport)
        if connection is None or self.logOctets or self.state != OPEN:
            super().sendData(data, sync, chopsize)
            return
        send_now(connection, data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)

    def dataReceived(self, data: bytes) -> None:
        if self._perMessageCompress is not None and self.pauses is not None:
            self._feed_slices(self._backlog + data if self._backlog else data)
        else:
            super().dataReceived(data)
        limiter = self.limiter
        if limiter is not None:
            limiter.received(len(data), self._messages)

    def _feed_slices(self, data: bytes) -> None:
        """Give Autobahn a compressing hop's bytes a slice at a time, a megabyte inflated a turn.

        Autobahn inflates all the compressed data it is given in one call: a 64 KiB
        read of a deflate bomb would become 64 MiB at once.  A slice of
        :data:`INFLATE_SLICE` bytes inflates to at most about a thousand times
        that (deflate's best ratio); once a turn inflated
        :data:`~clbproxy.ws.frames.INFLATE_PER_TURN` bytes, or the session is over
        its ``websocket_inflate_rate``, the rest waits (in order, the hop not
        read) for the next turn or for the budget.
        """
        self._backlog = b""
        self._turn_inflated = 0
        end = len(data)
        at = 0
        while at < end:
            super().dataReceived(data[at : at + INFLATE_SLICE])
            at += INFLATE_SLICE
            if self.state == CLOSED or self.transport is None:
                return
            if at < end and (
                self._turn_inflated >= INFLATE_PER_TURN or self._inflate_call is not None
            ):
                self._backlog = data[at:]
                if self._inflate_call is None:
                    self.pauses.add(PauseReason.INFLATE)
                    self._inflate_call = self.session.reactor.callLater(0, self._inflate_paid)
                return

    def consumeData(self) -> None:
        fast = self._fast
        if fast is None:
            if self.pauses is None:
                super().consumeData()
                return
            # The pongs for what this read holds leave in few writes (see onPing).
            self._pongs = bytearray()
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
        if self._perMessageCompress is not None:
            self._turn_inflated += len(payload)
            if session is not None and session.inflate_budget is not None:
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
            self._dropped_messages += 1
            self._dropped_octets += self.message_data_total_length
            return
        if not self._begun:
            peer.sendMessage(pending or b"", isBinary=self._binary)
            return
        if pending:
            peer.sendMessageFrame(pending)
        peer.endMessage()

    def onPing(self, payload: bytes) -> None:
        pongs = self._pongs
        if pongs is None:
            super().onPing(payload)
        elif self.pauses.held & PauseReason.OWN_WRITE_BUFFER:
            # Pongs already wait to be read: the latest ping replaces any still owed.
            self._owed_pong = payload
        else:
            # A read holds up to ``session_buffer`` bytes (the transport's
            # ``bufferSize``): 43690 empty pings in 256 KiB.  Their pongs go into one
            # buffer, written each ``_PONG_BATCH`` bytes so a full write buffer stops
            # the answers within the read; a list per ping cost ~130 bytes a ping.
            pongs += control_frame(PONG, payload, self.side is Side.BACKEND)
            if len(pongs) >= _PONG_BATCH:
                self._answer_pings()
                self._pongs = bytearray()
        if self.session is not None and self.session.timers is not None:
            self.session.timers.activity()

    def _answer_pings(self) -> None:
        """Write the pongs of this read so far (pings past a full buffer are owed, see onPing)."""
        pongs, self._pongs = self._pongs, None
        if pongs and self.state == OPEN:
            self.sendData(bytes(pongs))

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
        """The next turn, or the inflate budget is back: go on with what waits, then read."""
        self._inflate_call = None
        backlog = self._backlog
        if backlog and self.state != CLOSED and self.transport is not None:
            self._feed_slices(backlog)
        if self._inflate_call is None and self.pauses is not None:
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
