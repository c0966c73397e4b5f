"""A relayed WebSocket session's clocks: the idle timeout and the proxy's own pings.

- Idle: when no frame (data, ping or pong) arrives from either hop for
  ``idle_timeout`` seconds, both hops are closed with 1001.
- Pings: every ``ping_interval`` seconds the proxy pings each hop that has no
  ping outstanding; a hop that does not answer within ``ping_timeout`` is taken
  for dead and dropped (the other hop is then told as the close-code table says).
  An answered ping is a frame received, so it keeps the session from idling out:
  with pings on, the idle timeout only ends sessions whose peers stopped answering.
- Back-pressure: while the session is throttled (a hop is not read, for any of
  the reasons its :class:`~clbproxy.ws.pauses.ReadPauses` holds), a pong may sit
  unread in a paused socket or queued behind our own unsent data, so a missing
  pong proves nothing.  Ping deadlines are suspended while any hop is paused and
  restart in full once both hops are read again; the idle timeout keeps running
  (a session stalled for the whole idle timeout is closed, like nginx's
  ``send_timeout``).

Timers run on the reactor given (``task.Clock`` in tests), not on Autobahn's
auto-ping, whose batched timers use the global reactor and know nothing of
back-pressure.

The idle timeouts of all sessions with the same timeout share one
:class:`IdleQueue`: one delayed call for the whole listener instead of one per
session (a delayed call and its bound methods are ~0.5 KB, a queue entry ~0.1 KB).
A session ends idle at exactly the same time as with a timer of its own.

The pings and their pong deadlines are shared the same way, on
:func:`clbproxy.util.delays.delay_queue` (one queue per ping interval, one per
ping timeout), as are the other per-connection deadlines whose delay is fixed
(the close handshake's timeouts, the backend's answer to an upgrade, the
compaction of an open session's connections).  An idle session pinged every
interval used to build three delayed calls per interval (its next ping and a
pong deadline per hop) and push them on the reactor's heap, whose every push and
pop compares against every session's timers; on the queues a ping and its
deadlines are dict entries, and the reactor holds one delayed call per queue.
Each ping and each deadline still runs at exactly the time its own delayed call
would have.
"""

from __future__ import annotations

import functools
from typing import Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import Interface

from clbproxy.util.delays import DelayQueue, delay_queue
from clbproxy.ws.closecodes import Side


class ITimerOwner(Interface):
    """What a session's timers act on: the session."""

    def timer_ping(side: Side, payload: bytes) -> None:
        """Send a ping with ``payload`` to the hop on ``side``."""

    def timer_idle() -> None:
        """No frame for the idle timeout: close the session."""

    def timer_dead(side: Side) -> None:
        """The hop on ``side`` did not answer a ping in time: drop it."""


class IdleQueue:
    """The idle deadlines of many sessions with the same ``timeout``, on one delayed call.

    Sessions are kept least recently active first (a frame moves a session to
    the end), so the first one is the next to idle out and the one delayed call
    is set for its deadline.  When it fires, every session whose quiet time has
    reached the timeout ends idle; the call is then set for the next deadline.
    """

    __slots__ = ("_clock", "timeout", "sessions", "_call")

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self._clock = clock
        self.timeout = timeout
        #: Least recently active first (dict order; the values are unused).
        self.sessions: dict[SessionTimers, None] = {}
        self._call: Optional[IDelayedCall] = None

    def add(self, timers: SessionTimers) -> None:
        self.sessions[timers] = None
        if self._call is None:
            self._call = self._clock.callLater(self.timeout, self._check)

    def remove(self, timers: SessionTimers) -> None:
        sessions = self.sessions
        sessions.pop(timers, None)
        if not sessions and self._call is not None:
            call, self._call = self._call, None
            call.cancel()  # pending while held: ``_check`` lets go of it first thing

    def _check(self) -> None:
        self._call = None
        sessions = self.sessions
        timeout = self.timeout
        while sessions:
            timers = next(iter(sessions))
            quiet = self._clock.seconds() - timers._last
            if quiet < timeout:
                self._call = self._clock.callLater(timeout - quiet, self._check)
                return
            del sessions[timers]
            timers._idle()


class SessionTimers:
    """Idle timeout and pings for both hops of one session, acting on ``owner``.

    ``owner`` (:class:`ITimerOwner`) sends the pings, closes an idle session and
    drops a hop that did not answer.  ``idle_queue`` is the shared
    :class:`IdleQueue` for ``idle_timeout`` (a queue of its own when not given).
    """

    __slots__ = (
        "_clock",
        "idle_timeout",
        "ping_interval",
        "ping_timeout",
        "_owner",
        "_last",
        "_idle_queue",
        "_queued",
        "_pings",
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
        owner: ITimerOwner,
        idle_queue: Optional[IdleQueue] = None,
    ) -> None:
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._owner = owner
        self._last = clock.seconds()
        if idle_queue is None and idle_timeout:
            idle_queue = IdleQueue(clock, idle_timeout)
        self._idle_queue = idle_queue
        #: The queue's table while this session is in it (the hot path touches only that).
        self._queued: Optional[dict] = None
        #: The shared queue of next pings while pings are on (keyed by this object).
        self._pings: Optional[DelayQueue] = None
        # Created at the first ping: sessions without pings hold none.
        self._outstanding: Optional[dict[Side, bytes]] = None
        #: The shared queue of pong deadlines (keyed by ``(self, side)``), from the first ping.
        self._deadlines: Optional[DelayQueue] = None
        self._counter = 0
        #: Hops not being read now (each ``throttled`` is matched by one ``flowing``).
        self._throttled = 0
        self._stopped = False

    def start(self) -> None:
        self._last = self._clock.seconds()
        if self.idle_timeout and self._idle_queue is not None:
            self._idle_queue.add(self)
            self._queued = self._idle_queue.sessions
        if self.ping_interval:
            self._pings = delay_queue(self._clock, self.ping_interval)
            self._pings.add(self, self._ping)

    @property
    def last_activity(self) -> float:
        """When a frame last arrived from either hop (or the session opened)."""
        return self._last

    def activity(self) -> float:
        """A frame arrived from either hop: the time now (the hop's rate limits charge at it)."""
        now = self._last = self._clock.seconds()
        queued = self._queued
        if queued is not None:
            # Now the most recently active: to the end of the queue.
            del queued[self]
            queued[self] = None
        return now

    def pong(self, side: Side, payload: bytes) -> None:
        """A pong arrived from ``side``: it answers our ping when the payload matches."""
        self.activity()
        outstanding = self._outstanding
        if outstanding and outstanding.get(side) == payload:
            del outstanding[side]
            self._cancel_deadline(side)

    def throttled(self) -> None:
        """The session stopped reading a hop: suspend ping deadlines."""
        self._throttled += 1
        for side in self._outstanding or ():
            self._cancel_deadline(side)

    def flowing(self) -> None:
        """A paused hop is read again: once none is paused, pings get a full deadline."""
        if self._throttled > 0:
            self._throttled -= 1
        if self._stopped or self._throttled:
            return
        for side in self._outstanding or ():
            self._arm_deadline(side)

    def stop(self) -> None:
        self._stopped = True
        if self._queued is not None:
            self._queued = None
            self._idle_queue.remove(self)
        pings = self._pings
        if pings is not None:
            self._pings = None
            pings.discard(self)
        deadlines = self._deadlines
        if deadlines is not None:
            deadlines.discard((self, Side.CLIENT))
            deadlines.discard((self, Side.BACKEND))

    def detach(self) -> None:
        """Stop for good and let go of the owner (no reference cycle outlives the session)."""
        self.stop()
        self._owner = None

    def _idle(self) -> None:
        """Called by the idle queue (which has already let go of this session)."""
        self._queued = None
        self.stop()
        self._owner.timer_idle()

    def _ping(self) -> None:
        self._pings.add(self, self._ping)
        if self._outstanding is None:
            self._outstanding = {}
            self._deadlines = delay_queue(self._clock, self.ping_timeout)
        for side in (Side.CLIENT, Side.BACKEND):
            if side in self._outstanding:
                continue
            self._counter += 1
            payload = b"clbproxy-%d" % (self._counter,)
            self._outstanding[side] = payload
            self._owner.timer_ping(side, payload)
            if not self._throttled:
                self._arm_deadline(side)

    def _arm_deadline(self, side: Side) -> None:
        # A key already queued moves to the end with the new deadline.
        self._deadlines.add((self, side), functools.partial(self._dead, side))

    def _cancel_deadline(self, side: Side) -> None:
        self._deadlines.discard((self, side))

    def _dead(self, side: Side) -> None:
        """Called by the deadline queue (which has already let go of this deadline)."""
        self.stop()
        self._owner.timer_dead(side)
