"""Why a hop of a relayed session is not being read: one owner of its pause reasons.

Several things may each need a hop to stop being read: the other hop cannot take
what this one sends (back-pressure), this hop does not read what the proxy sends
it (its own write buffer is full, e.g. of pongs), or inflating what it sent
costs too much (its inflate budget), or it sends faster than its session's
rate limits allow.  Each adds its own named reason to the
hop's :class:`ReadPauses`; the transport is paused when the first reason is
added and resumed only once none holds, so one reason ending never lets in what
another one holds back.  While any reason holds, the session's ping deadlines
are suspended (``throttled``/``flowing`` of :class:`clbproxy.ws.timers.SessionTimers`):
a pong may sit unread in the paused socket.

Adding a reason that already holds, or removing one that does not, does nothing,
so producers may report the same state twice.
"""

from __future__ import annotations

import enum
from typing import Optional

from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface


class PauseReason(enum.IntFlag):
    """A named reason not to read a hop."""

    #: The other hop's write buffer is over ``session_buffer``: what this hop sends waits.
    PEER_BACKPRESSURE = 1
    #: This hop's own write buffer is over ``session_buffer``: it does not read what
    #: the proxy sends it (a pong for each of its pings would pile up).
    OWN_WRITE_BUFFER = 2
    #: Inflating this hop's compressed messages: yielding to the reactor, or over
    #: the session's ``websocket_inflate_rate``.
    INFLATE = 4
    #: This hop sent more than its session's message or byte rate
    #: (``websocket_rate_action = "throttle"``): not read until back within it.
    RATE = 8


#: No reason holds (built once: calling the Flag class is an enum lookup each time).
_NONE = PauseReason(0)


class IFlowListener(Interface):
    """Told when a hop stops and starts being read (the session's timers)."""

    def throttled() -> None:
        """A hop stopped being read."""

    def flowing() -> None:
        """That hop is read again (each ``throttled`` is followed by one ``flowing``)."""


class ReadPauses:
    """The pause reasons of one hop, and the pausing and resuming of its ``transport``.

    ``listener`` (:class:`IFlowListener`, optional) hears when the hop stops and
    starts being read.
    """

    __slots__ = ("transport", "listener", "held")

    def __init__(self, transport, listener: Optional[IFlowListener] = None) -> None:
        self.transport = transport
        self.listener = listener
        #: The reasons that hold now (0: the hop is read).
        self.held = _NONE

    def holds(self, reason: PauseReason) -> bool:
        """True while ``reason`` holds."""
        return bool(self.held & reason)

    def add(self, reason: PauseReason) -> None:
        """``reason`` holds: stop reading the hop if nothing did already."""
        held = self.held
        if held & reason:
            return
        self.held = held | reason
        if not held:
            self.transport.pauseProducing()
            if self.listener is not None:
                self.listener.throttled()

    def remove(self, reason: PauseReason) -> None:
        """``reason`` no longer holds: read the hop again if no other reason does."""
        held = self.held
        if not held & reason:
            return
        held = self.held = held & ~reason
        if not held:
            self.transport.resumeProducing()
            if self.listener is not None:
                self.listener.flowing()

    def release(self) -> None:
        """Read the hop whatever held it (its closing handshake must be read)."""
        if self.held:
            self.remove(self.held)


class InflateBudget:
    """A session's allowance of inflated bytes: ``rate`` per second, on the reactor clock.

    It starts with (and holds at most) one second's worth.  Spending more than
    there is leaves a debt; the sender is then not read until the debt is
    paid back, which :meth:`spend` says in seconds.
    """

    __slots__ = ("_clock", "rate", "_allowance", "_at")

    def __init__(self, clock: IReactorTime, rate: int) -> None:
        self._clock = clock
        self.rate = rate
        self._allowance = float(rate)
        self._at = clock.seconds()

    def spend(self, inflated: int) -> float:
        """Charge ``inflated`` bytes: seconds until the allowance is back to zero (0.0: none)."""
        now = self._clock.seconds()
        rate = self.rate
        allowance = min(float(rate), self._allowance + (now - self._at) * rate) - inflated
        self._allowance = allowance
        self._at = now
        return 0.0 if allowance >= 0 else -allowance / rate
