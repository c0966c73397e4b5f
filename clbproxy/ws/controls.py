"""Session controls: message and byte rates per direction, and a lifetime per session.

- Rates: each direction of a session (what one hop sends) may have a message
  rate and a byte rate, each a :class:`TokenBucket` with a burst.  What a hop
  reads is charged after it is relayed: bytes as they arrive on the wire,
  messages once complete.  Past a limit, ``throttle`` stops reading that hop
  (:attr:`~clbproxy.ws.pauses.PauseReason.RATE`) until the bucket is back to
  zero, so nothing is lost and the sender is only slowed; ``close`` tells the
  session, which closes the sender with 1008 (:mod:`clbproxy.ws.closecodes`).
  Limits are enforced per read: the read that passes a limit is still relayed.
  A read of a session well under its limits is *calm* and only recorded; the
  buckets catch up, exactly, at the next read that is not (see
  :class:`RateLimiter`), so the same read passes a limit as if every read
  were charged.
- Lifetime: each session draws its lifetime uniformly from
  ``[max * (1 - spread), max]``, so sessions opened together do not end
  together; at its end the session is relieved (``relieve("lifetime")``).  The
  lifetimes of a listener's sessions share one :class:`LifetimeQueue`: one
  delayed call instead of one per session.

A session without limits or lifetime gets no :class:`SessionControls` at all;
its hops' only cost is one attribute check per read (``limiter is None``).
Time is the reactor's (``task.Clock`` in tests).
"""

from __future__ import annotations

import functools
import heapq
import random
from typing import Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import Interface

from clbproxy.ws.closecodes import Side
from clbproxy.ws.pauses import PauseReason, ReadPauses

#: The tap.conf keys that name each limit in close reasons and logs.
MESSAGE_RATE = "websocket_message_rate"
BYTE_RATE = "websocket_byte_rate"

#: A read at least this long (seconds) after the hop's previous one, taking at
#: most what the buckets refill meanwhile, is *calm* (see :class:`RateLimiter`);
#: the gap is longer when one message or :data:`CALM_READ` bytes need it.
CALM_GAP = 1e-4
#: A calm read may take at least this many bytes: for low byte rates, the gap is
#: stretched until the rate refills them.
CALM_READ = 4096
INF = float("inf")
#: A calm read's bound on what a direction without that limit takes: none.
UNBOUNDED = 1 << 62


@functools.lru_cache(maxsize=256)
def calm_bounds(
    messages: Optional[tuple[float, float]], octets: Optional[tuple[float, float]]
) -> tuple[float, int, int]:
    """``(gap, octets, messages)`` of a calm read for these ``(rate, burst)`` limits.

    What each bucket refills in ``gap`` seconds, at most its burst, ``gap``
    long enough for one message and :data:`CALM_READ` bytes.  The gap carries a
    margin: rounding must never make a bucket that it refilled look short.
    Whole numbers, so a read compares int to int; the same objects for every
    session with the same limits, so a read touches shared, warm memory.
    """
    gap = CALM_GAP
    if messages is not None:
        gap = max(gap, 1.0 / messages[0])
    if octets is not None:
        gap = max(gap, CALM_READ / octets[0])
    calm_messages = int(min(messages[1], messages[0] * gap)) if messages else UNBOUNDED
    calm_octets = int(min(octets[1], octets[0] * gap)) if octets else UNBOUNDED
    return gap * (1.0 + 1e-6), calm_octets, calm_messages


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (0: one second's worth).

    It starts full.  Taking more than it holds leaves a debt: :meth:`take`
    then says how many seconds until the debt is paid back (0.0: within).
    ``tokens`` (as of ``at``) are public for :meth:`RateLimiter.charge_in_full`,
    which does the same arithmetic inline.
    """

    __slots__ = ("_clock", "rate", "burst", "tokens", "at")

    def __init__(self, clock: IReactorTime, rate: float, burst: float = 0) -> None:
        self._clock = clock
        self.rate = float(rate)
        self.burst = float(burst or max(rate, 1.0))
        self.tokens = self.burst
        self.at = clock.seconds()

    def take(self, amount: float, now: Optional[float] = None) -> float:
        """Charge ``amount`` tokens: seconds until the bucket is back to zero (0.0: none owed).

        ``now`` saves a clock read when the caller has one.
        """
        if now is None:
            now = self._clock.seconds()
        tokens = self.tokens + (now - self.at) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        tokens -= amount
        self.tokens = tokens
        self.at = now
        return 0.0 if tokens >= 0 else -tokens / self.rate


class IControlsOwner(Interface):
    """What a session's controls act on: the session."""

    def rate_exceeded(side: Side, limit: str) -> None:
        """The hop on ``side`` passed ``limit`` with ``websocket_rate_action = "close"``."""

    def relieve(reason: str) -> None:
        """End the session so its client reconnects (here: ``"lifetime"``)."""


class RateLimiter:
    """The message and byte buckets of one direction: what the hop on ``side`` sends.

    ``pauses`` is that hop's :class:`~clbproxy.ws.pauses.ReadPauses` (the same
    object before and after the fast path takes the hop over); ``count`` is
    told ``"websocket_rate_throttles"`` each time the hop is throttled.

    Most reads of a session under its limits are *calm*: the hop's previous
    read is at least ``gap`` seconds old, so both buckets have refilled to
    their burst since (nothing can remain of what earlier reads took), and this
    read takes at most ``calm_octets`` bytes and ``calm_messages`` messages, so
    it leaves them nearly full.  A calm read only records what it took and when
    (``last_octets``, ``last_messages``, ``at``); the buckets are brought up to
    date from that record when a read is not calm, which is then charged as
    :meth:`TokenBucket.take` would (same arithmetic, same read passing a
    limit).  The fast path does the calm check inline (see :meth:`charge`).
    """

    # What a calm read touches first: together, in the object's first bytes.
    __slots__ = (
        "at",
        "gap",
        "calm_octets",
        "calm_messages",
        "last_octets",
        "last_messages",
        "_clock",
        "side",
        "messages",
        "octets",
        "close",
        "pauses",
        "_owner",
        "_count",
        "seen",
        "_call",
        "stopped",
    )

    def __init__(
        self,
        clock: IReactorTime,
        side: Side,
        pauses: ReadPauses,
        owner: IControlsOwner,
        *,
        messages: Optional[TokenBucket],
        octets: Optional[TokenBucket],
        close: bool,
        count: Callable[[str], None] = lambda name: None,
        seen: int = 0,
    ) -> None:
        self._clock = clock
        self.side = side
        self.messages = messages
        self.octets = octets
        self.close = close
        self.pauses = pauses
        self._owner = owner
        self._count = count
        #: The hop's complete messages already charged, for :meth:`received` (hops
        #: count them from the start; the fast path counts each read's itself).
        self.seen = seen
        self.gap, self.calm_octets, self.calm_messages = calm_bounds(
            (messages.rate, messages.burst) if messages is not None else None,
            (octets.rate, octets.burst) if octets is not None else None,
        )
        #: When the last calm read was (buckets full at creation count as one); INF:
        #: the next read must be charged in full.
        self.at = clock.seconds()
        #: What the calm reads since the last full charge took; None: none since.
        self.last_octets: Optional[int] = None
        self.last_messages = 0
        self._call: Optional[IDelayedCall] = None
        self.stopped = False

    def received(self, octets: int, messages: int) -> None:
        """The hop read ``octets`` bytes and has now received ``messages`` messages in all."""
        new = messages - self.seen
        self.seen = messages
        self.charge(self._clock.seconds(), octets, new)

    def charge(self, now: float, octets: int, messages: int) -> None:
        """A read of ``octets`` bytes that completed ``messages`` messages, at ``now``.

        ``now`` is a time the caller already read (the session timers' one).
        The fast path inlines the calm branch (keep the two alike): a read
        under the limits costs a subtraction, three comparisons and three
        stores, no call and no clock read.  The buckets themselves stay exact:
        an account that skipped the clock (an allowance of tokens spent read by
        read) could not tell a burst from the same bytes spread over the
        seconds before it, so it would throttle a sender within its rate and
        burst, or let one through above them.
        """
        if (
            now - self.at >= self.gap
            and octets <= self.calm_octets
            and messages <= self.calm_messages
        ):
            self.last_octets = octets
            self.last_messages = messages
            self.at = now
        else:
            self.charge_in_full(now, octets, messages)

    def charge_in_full(self, now: float, octets: int, messages: int) -> None:
        """Charge a read that is not calm to the buckets (:meth:`TokenBucket.take`, inlined)."""
        self._settle()
        wait = 0.0
        limit = BYTE_RATE
        calm = True
        bucket = self.octets
        if bucket is not None:
            tokens = bucket.tokens + (now - bucket.at) * bucket.rate
            if tokens > bucket.burst:
                tokens = bucket.burst
            bucket.tokens = tokens = tokens - octets
            bucket.at = now
            if tokens < 0:
                wait = -tokens / bucket.rate
            calm = bucket.burst - tokens <= self.calm_octets
        bucket = self.messages
        if bucket is not None:
            if messages:
                tokens = bucket.tokens + (now - bucket.at) * bucket.rate
                if tokens > bucket.burst:
                    tokens = bucket.burst
                bucket.tokens = tokens = tokens - messages
                bucket.at = now
                if tokens < 0 and -tokens / bucket.rate > wait:
                    wait, limit = -tokens / bucket.rate, MESSAGE_RATE
            calm = calm and bucket.burst - bucket.tokens <= self.calm_messages
        # The next read may be calm once ``gap`` has passed: what this one left owed
        # is at most a calm read's take, refilled by then.
        self.at = now if calm else INF
        if wait and not self.stopped:
            self._over(wait, limit)

    def _settle(self) -> None:
        """Bring the buckets up to date with the calm reads since the last full charge.

        A calm read found both buckets full, so each holds its burst less what
        the last calm read took, as of that read: what :meth:`TokenBucket.take`
        would have left (a message bucket not charged since holds its burst).
        """
        taken = self.last_octets
        if taken is None:
            return
        self.last_octets = None
        bucket = self.octets
        if bucket is not None:
            bucket.tokens = bucket.burst - taken
            bucket.at = self.at
        bucket = self.messages
        if bucket is not None:
            bucket.tokens = bucket.burst - self.last_messages
            bucket.at = self.at

    def _over(self, wait: float, limit: str) -> None:
        """A read passed ``limit``; the bucket is back to zero in ``wait`` seconds."""
        if self.close:
            self.stopped = True
            self._owner.rate_exceeded(self.side, limit)
        elif self._call is None:
            self.pauses.add(PauseReason.RATE)
            self._count("websocket_rate_throttles")
            self._call = self._clock.callLater(wait, self._refilled)

    def _refilled(self) -> None:
        self._call = None
        if self.stopped:
            return
        self._settle()
        # Reads Autobahn had buffered may have been charged since: wait for those too.
        wait = max(
            self.octets.take(0) if self.octets is not None else 0.0,
            self.messages.take(0) if self.messages is not None else 0.0,
        )
        if wait:
            self._call = self._clock.callLater(wait, self._refilled)
        else:
            self.pauses.remove(PauseReason.RATE)

    def stop(self) -> None:
        """The session is ending: charge nothing more and let the hop be read."""
        self.stopped = True
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        self.pauses.remove(PauseReason.RATE)


class LifetimeQueue:
    """The lifetime deadlines of a listener's sessions, on one delayed call.

    Deadlines are kept in a heap; a session that ends first leaves a dead entry
    (its owner dropped, so the session is freed at once), and dead entries are
    cleared when they outnumber the live ones.  ``uniform(low, high)`` draws
    each lifetime (``random.uniform``; tests pass their own).
    """

    __slots__ = ("_clock", "_uniform", "_heap", "_call", "_at", "_dead", "_counter")

    def __init__(
        self, clock: IReactorTime, uniform: Callable[[float, float], float] = random.uniform
    ) -> None:
        self._clock = clock
        self._uniform = uniform
        #: ``[deadline, order, owner]`` entries; owner None: the session ended first.
        self._heap: list[list] = []
        self._call: Optional[IDelayedCall] = None
        self._at = 0.0
        self._dead = 0
        self._counter = 0

    def __len__(self) -> int:
        """Sessions waiting for their lifetime's end."""
        return len(self._heap) - self._dead

    def add(self, owner: IControlsOwner, max_lifetime: float, spread: float) -> list:
        """Relieve ``owner`` after a lifetime drawn for it; the entry, for :meth:`remove`."""
        lifetime = self._uniform(max_lifetime * (1.0 - spread), max_lifetime)
        deadline = self._clock.seconds() + lifetime
        self._counter += 1
        entry = [deadline, self._counter, owner]
        heapq.heappush(self._heap, entry)
        if self._call is None or deadline < self._at:
            self._schedule()
        return entry

    def remove(self, entry: list) -> None:
        """The session of ``entry`` ended before its lifetime did."""
        if entry[2] is None:
            return
        entry[2] = None
        self._dead += 1
        heap = self._heap
        if self._dead * 2 > len(heap):
            self._heap = [e for e in heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._dead = 0
            if not self._heap and self._call is not None:
                call, self._call = self._call, None
                if call.active():
                    call.cancel()

    def _schedule(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._heap:
            self._at = self._heap[0][0]
            delay = max(0.0, self._at - self._clock.seconds())
            self._call = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        heap = self._heap
        now = self._clock.seconds()
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            owner = entry[2]
            if owner is None:
                self._dead -= 1
                continue
            entry[2] = None
            owner.relieve("lifetime")
        if self._call is None:
            self._schedule()


class SessionControls:
    """The rate limiters and lifetime of one session; :meth:`stop` when it starts ending."""

    __slots__ = ("limiters", "_lifetimes", "_entry")

    def __init__(self) -> None:
        self.limiters: tuple[RateLimiter, ...] = ()
        self._lifetimes: Optional[LifetimeQueue] = None
        self._entry: Optional[list] = None

    def start_lifetime(
        self, queue: LifetimeQueue, owner: IControlsOwner, max_lifetime: float, spread: float
    ) -> None:
        """Relieve ``owner`` once the lifetime drawn for it in ``queue`` is over."""
        self._lifetimes = queue
        self._entry = queue.add(owner, max_lifetime, spread)

    def stop(self) -> None:
        """The session is ending: its limiters stop and its lifetime is dropped."""
        for limiter in self.limiters:
            limiter.stop()
        self.limiters = ()
        if self._entry is not None:
            self._lifetimes.remove(self._entry)
            self._entry = None


def arm_controls(
    clock: IReactorTime,
    owner: IControlsOwner,
    hops: tuple,
    *,
    limits: tuple[float, int, int, int, str],
    tunnel: bool,
    lifetime: tuple[float, float],
    lifetimes: Optional[LifetimeQueue],
    count: Callable[[str], None],
) -> Optional[SessionControls]:
    """The controls of a session whose hops (client's, backend's) just opened; None if none.

    ``limits``: ``(message rate, message burst, byte rate, byte burst, action)``
    (see :meth:`clbproxy.routing.settings.ListenerSettings.rate_limits`);
    ``lifetime``: ``(websocket_max_lifetime, websocket_lifetime_spread)``.  A
    tunnel reads no messages: only its byte rate applies.  Each hop gets its
    :class:`RateLimiter` as ``hop.limiter``.
    """
    message_rate, message_burst, byte_rate, byte_burst, action = limits
    if tunnel:
        message_rate = 0
    max_lifetime, spread = lifetime
    if not (message_rate or byte_rate or (max_lifetime and lifetimes is not None)):
        return None
    controls = SessionControls()
    if message_rate or byte_rate:
        limiters = []
        for hop, side in zip(hops, (Side.CLIENT, Side.BACKEND)):
            limiter = RateLimiter(
                clock,
                side,
                hop.pauses,
                owner,
                messages=TokenBucket(clock, message_rate, message_burst) if message_rate else None,
                octets=TokenBucket(clock, byte_rate, byte_burst) if byte_rate else None,
                close=action == "close",
                count=count,
                seen=hop.messages_in,
            )
            hop.limiter = limiter
            limiters.append(limiter)
        controls.limiters = tuple(limiters)
    if max_lifetime and lifetimes is not None:
        controls.start_lifetime(lifetimes, owner, max_lifetime, spread)
    return controls
