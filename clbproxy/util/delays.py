"""Deadlines of one fixed delay, many of them on one delayed call of the reactor.

Setting and cancelling a per-connection deadline whose delay is always the same
(a close handshake's timeout, a connect timeout, the backend's answer to an
upgrade) is, on a shared :class:`DelayQueue`, a dict insert and delete: not a
``DelayedCall`` built, pushed on the reactor's heap (whose every push and pop
compares against the other timers) and cancelled.  :func:`delay_queue` gives
every user of one delay on one reactor the same queue; :class:`Deadline` is a
timeout that waits on them (a listener connection's header and idle timeouts).
"""

from __future__ import annotations

import weakref
from typing import Callable, Hashable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Deadlines this close to now are due (a re-armed call's time is ``now + (when - now)``,
#: which float rounding can put a hair after ``when``).
_EPSILON = 1e-6


class DelayQueue:
    """Actions due ``delay`` seconds after they were added, many of them on one delayed call.

    All deadlines have the same delay, so the order they were added in is the
    order they are due in: they are kept in a dict (insertion order), the first
    entry is the next due, and the one delayed call is set for it.  When it
    fires, every action whose deadline has come runs (each at the time its own
    ``callLater`` would have run it), then the call is set for the next one.
    Each key has at most one deadline: adding a key again replaces it.

    :class:`clbproxy.ws.timers.IdleQueue` is the same idea for idle timeouts,
    kept apart on purpose: an idle deadline moves on every frame, so it stores
    no deadline (it is read from the session's last activity when the call
    fires) and a frame costs a dict move, not a clock read and a tuple.
    """

    __slots__ = ("_clock", "delay", "_due", "_call", "_firing")

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        self._clock = clock
        self.delay = delay
        #: key -> (deadline, action), soonest first.
        self._due: dict[Hashable, tuple[float, Callable[[], object]]] = {}
        self._call: Optional[IDelayedCall] = None
        #: Running the due actions: the call is set once they are done (for the
        #: soonest deadline then), not by each action that adds one (a ping adds the next).
        self._firing = False

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: Hashable, action: Callable[[], object]) -> None:
        """Run ``action`` in ``delay`` seconds unless ``key`` is discarded before."""
        due = self._due
        if key in due:
            del due[key]  # to the end: its new deadline is the latest
        due[key] = (self._clock.seconds() + self.delay, action)
        if self._call is None and not self._firing:
            self._call = self._clock.callLater(self.delay, self._fire)

    def discard(self, key: Hashable) -> None:
        """Forget ``key``'s deadline, if it has one."""
        due = self._due
        if due.pop(key, None) is not None and not due:
            call, self._call = self._call, None
            # A call still held is pending: ``_fire`` lets go of it first thing.
            if call is not None:
                call.cancel()

    def _fire(self) -> None:
        self._call = None
        self._firing = True
        due = self._due
        clock = self._clock
        try:
            while due:
                key = next(iter(due))
                when, action = due[key]
                if when - clock.seconds() > _EPSILON:
                    break
                del due[key]
                action()
        finally:
            # Also when an action raised (the reactor logs it): the others still run, in turn.
            self._firing = False
            if due:
                when = next(iter(due.values()))[0]
                self._call = clock.callLater(max(when - clock.seconds(), 0.0), self._fire)


class Deadline:
    """A timeout whose delay varies: on the shared queue of its delay, a call for the rest.

    A listener's connection arms a header and an idle timeout and, for an
    upgrade, gives them up one request later: on a :class:`DelayQueue` that is
    a dict insert and delete, not a ``DelayedCall`` pushed on the reactor's
    heap and cancelled.  A deadline moved later leaves it where it is: the
    action, finding it early, waits the rest with :meth:`wait` (a
    ``DelayedCall``, which only a connection still busy at its first deadline
    needs).
    """

    __slots__ = ("_clock", "_action", "_queue", "_due", "_call")

    def __init__(self, clock: IReactorTime, action: Callable[[], object]) -> None:
        self._clock = clock
        self._action = action
        self._queue: Optional[DelayQueue] = None
        self._due = 0.0
        self._call: Optional[IDelayedCall] = None

    def within(self, delay: float) -> None:
        """Run the action no later than ``delay`` seconds from now (earlier stays earlier)."""
        call = self._call
        if call is not None:
            if call.getTime() > self._clock.seconds() + delay:
                call.reset(delay)
            return
        queue = self._queue
        due = self._clock.seconds() + delay
        if queue is not None:
            if self._due <= due:
                return
            queue.discard(self)
        queue = self._queue = delay_queue(self._clock, delay)
        queue.add(self, self._fire)
        self._due = due

    def wait(self, delay: float) -> None:
        """Run the action again in ``delay`` seconds (from the action: its deadline moved)."""
        self._call = self._clock.callLater(delay, self._fire)

    def stop(self) -> None:
        """The action will not run (until armed again)."""
        queue, self._queue = self._queue, None
        if queue is not None:
            queue.discard(self)
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        self._queue = self._call = None
        self._action()


_QUEUES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: The clock last asked for and its queues: a process has one reactor, so the
#: weak-keyed lookup (a new weak reference each time) is made once, not per deadline.
_last: tuple = (None, None)


def delay_queue(clock: IReactorTime, delay: float) -> DelayQueue:
    """The :class:`DelayQueue` shared by everything that waits ``delay`` seconds on ``clock``."""
    global _last
    ref, queues = _last
    if ref is None or ref() is not clock:
        queues = _QUEUES.get(clock)
        if queues is None:
            queues = _QUEUES[clock] = {}
        _last = (weakref.ref(clock), queues)
    queue = queues.get(delay)
    if queue is None:
        queue = queues[delay] = DelayQueue(clock, delay)
    return queue
