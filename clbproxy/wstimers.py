"""A relayed WebSocket session's clocks: the idle timeout and the proxy's own pings.

- Idle: when no frame (data, ping or pong) arrives from either hop for
  ``idle_timeout`` seconds, both hops are closed with 1001.
- Pings: every ``ping_interval`` seconds the proxy pings each hop that has no
  ping outstanding; a hop that does not answer within ``ping_timeout`` is taken
  for dead and dropped (the other hop is then told as the close-code table says).
  An answered ping is a frame received, so it keeps the session from idling out:
  with pings on, the idle timeout only ends sessions whose peers stopped answering.
- Back-pressure: while the session is throttled (one side cannot keep up, the other
  is not read), a pong may sit unread in a paused socket or queued behind our
  own unsent data, so a missing pong proves nothing.  Ping deadlines are
  suspended while throttled and restart in full when the session flows again; the
  idle timeout keeps running (a session stalled for the whole idle timeout is
  closed, like nginx's ``send_timeout``).

Timers run on the reactor given (``task.Clock`` in tests), not on Autobahn's
auto-ping, whose batched timers use the global reactor and know nothing of
back-pressure.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from clbproxy.closecodes import Side


class SessionTimers:
    """Idle timeout and pings for both hops of one session.

    ``send_ping(side, payload)`` sends a ping to a hop; ``on_idle()`` closes the
    session; ``on_dead(side)`` drops a hop that did not answer.
    """

    __slots__ = (
        "_clock",
        "idle_timeout",
        "ping_interval",
        "ping_timeout",
        "_send_ping",
        "_on_idle",
        "_on_dead",
        "_last",
        "_idle_call",
        "_ping_call",
        "_outstanding",
        "_deadlines",
        "_counter",
        "_throttled",
        "_stopped",
    )

    def __init__(
        self,
        clock: IReactorTime,
        *,
        idle_timeout: float,
        ping_interval: float,
        ping_timeout: float,
        send_ping: Callable[[Side, bytes], None],
        on_idle: Callable[[], None],
        on_dead: Callable[[Side], None],
    ) -> None:
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._send_ping = send_ping
        self._on_idle = on_idle
        self._on_dead = on_dead
        self._last = clock.seconds()
        self._idle_call: Optional[IDelayedCall] = None
        self._ping_call: Optional[IDelayedCall] = None
        self._outstanding: dict[Side, bytes] = {}
        self._deadlines: dict[Side, IDelayedCall] = {}
        self._counter = 0
        self._throttled = False
        self._stopped = False

    def start(self) -> None:
        self._last = self._clock.seconds()
        if self.idle_timeout:
            self._idle_call = self._clock.callLater(self.idle_timeout, self._check_idle)
        if self.ping_interval:
            self._ping_call = self._clock.callLater(self.ping_interval, self._ping)

    def activity(self) -> None:
        """A frame arrived from either hop."""
        self._last = self._clock.seconds()

    def pong(self, side: Side, payload: bytes) -> None:
        """A pong arrived from ``side``: it answers our ping when the payload matches."""
        self._last = self._clock.seconds()
        if self._outstanding.get(side) == payload:
            del self._outstanding[side]
            self._cancel_deadline(side)

    def throttled(self) -> None:
        """The session stopped reading one side: suspend ping deadlines."""
        self._throttled = True
        for side in list(self._deadlines):
            self._cancel_deadline(side)

    def flowing(self) -> None:
        """The session reads both sides again: outstanding pings get a full deadline."""
        self._throttled = False
        if self._stopped:
            return
        for side in self._outstanding:
            self._arm_deadline(side)

    def stop(self) -> None:
        self._stopped = True
        for call in (self._idle_call, self._ping_call, *self._deadlines.values()):
            if call is not None and call.active():
                call.cancel()
        self._idle_call = self._ping_call = None
        self._deadlines.clear()

    def _check_idle(self) -> None:
        self._idle_call = None
        quiet = self._clock.seconds() - self._last
        if quiet >= self.idle_timeout:
            self.stop()
            self._on_idle()
        else:
            self._idle_call = self._clock.callLater(self.idle_timeout - quiet, self._check_idle)

    def _ping(self) -> None:
        self._ping_call = self._clock.callLater(self.ping_interval, self._ping)
        for side in (Side.CLIENT, Side.BACKEND):
            if side in self._outstanding:
                continue
            self._counter += 1
            payload = b"clbproxy-%d" % (self._counter,)
            self._outstanding[side] = payload
            self._send_ping(side, payload)
            if not self._throttled:
                self._arm_deadline(side)

    def _arm_deadline(self, side: Side) -> None:
        self._cancel_deadline(side)
        self._deadlines[side] = self._clock.callLater(self.ping_timeout, self._dead, side)

    def _cancel_deadline(self, side: Side) -> None:
        call = self._deadlines.pop(side, None)
        if call is not None and call.active():
            call.cancel()

    def _dead(self, side: Side) -> None:
        self._deadlines.pop(side, None)
        self.stop()
        self._on_dead(side)
