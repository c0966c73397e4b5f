"""The relay's validated fast path: once both hops are open, frames pass through unchanged.

Autobahn does the handshakes and stays the framing engine whenever a hop needs
per-hop work (permessage-deflate).  When neither hop negotiated an extension, a
session switches to this path: each hop's inbound bytes go through a
:class:`~clbproxy.frames.FrameScanner` and every complete, valid data frame is
written to the other hop's transport as it arrived, with no per-message Python
objects, Deferreds or log events.  Control frames stay per hop: pings are
answered on the hop they came from, pongs end there, and a Close goes to the
hop's own (Autobahn) close handling, so the close-code table
(:mod:`clbproxy.closecodes`) decides what the other hop is told.  A violation
fails the hop exactly as Autobahn would (1002, 1007, 1009).

Tunnel mode (:class:`Tunnel`) skips the scanner: bytes are spliced after the
handshake with no validation at all.
"""

from __future__ import annotations

from autobahn.websocket.protocol import WebSocketProtocol

from clbproxy.frames import CLOSE, PING, PONG, FrameScanner, Violation

_OPEN = WebSocketProtocol.STATE_OPEN


class FastPath:
    """Relays one hop's inbound frames to the other hop; one per hop of a session.

    Control frames the other hop's protocol sends (pongs, Close) while this path
    has written only part of a long frame to it are held in ``held`` until the
    frame is complete, so they never land inside a frame.
    """

    __slots__ = ("hop", "peer", "scanner", "held")

    def __init__(self, hop, peer, scanner: FrameScanner) -> None:
        self.hop = hop
        self.peer = peer
        self.scanner = scanner
        self.held: list[bytes] = []

    @property
    def mid_frame(self) -> bool:
        return self.scanner.mid_frame

    @property
    def messages(self) -> int:
        return self.scanner.messages

    def hold(self, data: bytes) -> bool:
        """Keep a frame the other hop's protocol sends while this path is inside a frame."""
        if self.scanner.mid_frame:
            self.held.append(data)
            return True
        return False

    def received(self, data: bytes) -> None:
        hop = self.hop
        hop.trafficStats.incomingOctetsWireLevel += len(data)
        _note_activity(hop)
        events = self.scanner.feed(data)
        peer = self.peer
        if len(events) == 1 and events[0].__class__ is bytes:
            if peer.state == _OPEN or self.held:
                peer.transport.write(events[0])
                peer.trafficStats.outgoingOctetsWireLevel += len(events[0])
        else:
            for event in events:
                if event.__class__ is bytes:
                    if peer.state == _OPEN or self.held:
                        peer.transport.write(event)
                        peer.trafficStats.outgoingOctetsWireLevel += len(event)
                elif event.__class__ is Violation:
                    self._violation(event)
                else:
                    self._control(event.opcode, event.payload)
        if self.held and not self.scanner.mid_frame:
            held, self.held = self.held, []
            peer.transport.writeSequence(held)

    def _control(self, opcode: int, payload: bytes) -> None:
        hop = self.hop
        if opcode == PING:
            if hop.state == _OPEN:
                hop.sendPong(payload)
        elif opcode == PONG:
            hop.onPong(payload)
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            reason = payload[2:] if len(payload) > 2 else None
            hop.onCloseFrame(code, reason)

    def _violation(self, violation: Violation) -> None:
        hop = self.hop
        if violation.code == 1007:
            hop._invalid_payload(violation.reason)
        elif violation.code == 1002:
            hop._protocol_violation(violation.reason)
        else:
            hop._fail_connection(violation.code, violation.reason)
        self.stopped()

    def stopped(self) -> None:
        """No more bytes will be passed on: a frame left half-written ends the other hop."""
        if self.scanner.mid_frame:
            self.held = []
            self.peer.dropConnection(abort=True)


class Tunnel:
    """Tunnel mode: the bytes of one hop go to the other unread (no validation)."""

    __slots__ = ("peer",)

    #: A tunnel does not read frames, so it cannot count messages.
    messages = 0

    def __init__(self, peer) -> None:
        self.peer = peer

    def hold(self, data: bytes) -> bool:
        """Swallow the other hop's own frames: in a tunnel only the peers' bytes travel."""
        return True

    def received(self, data: bytes) -> None:
        _note_activity(self.peer)
        self.peer.transport.write(data)

    def stopped(self) -> None:
        peer = self.peer
        if peer.transport is not None:
            peer.transport.loseConnection()


def _note_activity(hop) -> None:
    """Tell the session's idle timer that a hop sent something."""
    session = hop.session
    if session is not None and session.timers is not None:
        session.timers.activity()


def start_fast_path(front, backend, tunnel: bool = False) -> bool:
    """Switch an open session to the fast path (or a tunnel); False when it must stay on Autobahn.

    ``front`` and ``backend`` are the two hops' Autobahn protocols; each gets a
    ``_fast`` handler for its inbound bytes, fed first with anything Autobahn
    had buffered but not parsed.
    """
    if tunnel:
        front._fast, backend._fast = Tunnel(backend), Tunnel(front)
    else:
        if front.websocket_extensions_in_use or backend.websocket_extensions_in_use:
            return False
        hold = front.session.settings.listener.session_buffer
        front._fast = FastPath(
            front,
            backend,
            FrameScanner(masked=True, max_message=front.maxMessagePayloadSize, hold=hold),
        )
        backend._fast = FastPath(
            backend,
            front,
            FrameScanner(masked=False, max_message=backend.maxMessagePayloadSize, hold=hold),
        )
    return True
