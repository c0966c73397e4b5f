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

#: A read at least this long (seconds) after the session's previous one, taking at
#: most what the buckets refill meanwhile, is *calm* (see :class:`RateLimiter`);
#: the gap is longer when one message or :data:`CALM_READ` bytes need it.
CALM_GAP = 1e-4
#: A calm read may take at least this many bytes: for low byte rates, the gap is
#: stretched until the rate refills them.
CALM_READ = 4096
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


class CalmRecord:
    """What a read under its limits touches: the calm bounds and the record of the last calm read.

    A :class:`RateLimiter` keeps them on its hop when the hop is one (the fast
    path's :class:`~clbproxy.ws.fastpath.LimitedHop` is): the read already
    touches the hop's memory, so a calm read touches no object of the limiter's,
    whose memory is cold again by each session's next read.  An Autobahn hop
    charges through :meth:`RateLimiter.received`, on a record of the limiter's
    own.  The slots (:data:`CALM_SLOTS`) are declared by each subclass, so a
    class with slots of its own can be one too.

    - ``rate_gap``, ``rate_calm_octets``, ``rate_calm_messages``: what a read
      may be to be calm (see :func:`calm_bounds`); ``rate_calm_octets`` is -1
      while the buckets owe more than a calm read takes (the next read is
      charged in full).
    - ``rate_last_octets`` (None: no calm read since the last full charge),
      ``rate_last_messages``: what the hop's last calm read took.
    - ``rate_session``: the record that holds the session's ``rate_read_at``
      (when either hop was last read: the two hops of a session on the fast
      path share the client hop's) and ``rate_read_by`` (which hop that was).
      One time for both hops is what the previous read of the session, not of
      the hop, wrote: the same float the session's timers just let go of, so
      comparing with it and replacing it touches no memory gone cold since the
      hop's own last read.
    """

    __slots__ = ()


#: A :class:`CalmRecord`'s slots, declared by each concrete kind.
CALM_SLOTS = (
    "rate_session",
    "rate_read_at",
    "rate_read_by",
    "rate_gap",
    "rate_calm_octets",
    "rate_calm_messages",
    "rate_last_octets",
    "rate_last_messages",
)


class _OwnRecord(CalmRecord):
    """The record a limiter keeps itself, for a hop that is not a :class:`CalmRecord`."""

    __slots__ = CALM_SLOTS


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

    Most reads of a session under its limits are *calm*: the session's
    previous read (of either hop, so of this one too) is at least ``gap``
    seconds old, so this hop's buckets have refilled to their burst since
    (nothing can remain of what earlier reads took), and this read takes at
    most ``calm_octets`` bytes and ``calm_messages`` messages, so it leaves
    them nearly full.  A calm read only records what it took and when (in
    ``record``, a :class:`CalmRecord`: the hop when it is one; the time in
    ``shared``); the buckets are brought up to date from that record when a
    read is not calm, which is then charged as :meth:`TokenBucket.take` would
    (same arithmetic, same read passing a limit).  The fast path does the calm
    check inline, on the hops' own slots (see :meth:`charge`).

    Two limiters sharing one record for the session's time (``shared``) are
    each other's ``peer``, with the same limits (so the same ``gap``).  A calm
    read of one hop comes ``gap`` after the other hop's last read, so the
    other's last calm read is refilled by then: its record is dropped as it
    stands (the buckets' own state, as of their last full charge, already
    reads as full).  A read of one hop that is not calm first settles the
    other's calm record if that was the session's last read, whose time it is
    about to replace.
    """

    __slots__ = (
        "gap",
        "calm_octets",
        "calm_messages",
        "record",
        "shared",
        "peer",
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
        record: Optional[CalmRecord] = None,
        shared: Optional[CalmRecord] = None,
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
        #: The limiter sharing ``shared`` with this one (see :meth:`pair`).
        self.peer: Optional[RateLimiter] = None
        #: Where calm reads are recorded (see :class:`CalmRecord`).
        if record is None:
            record = _OwnRecord()
        else:
            # Only the fast path reads it (a record of our own would point at itself).
            record.rate_session = record if shared is None else shared
        self.record = record
        self.shared = shared = record if shared is None else shared
        record.rate_gap = self.gap
        record.rate_calm_octets = self.calm_octets
        record.rate_calm_messages = self.calm_messages
        record.rate_last_octets = None
        record.rate_last_messages = 0
        # Buckets full at creation count as a read that took nothing.
        shared.rate_read_at = clock.seconds()
        shared.rate_read_by = None
        self._call: Optional[IDelayedCall] = None
        self.stopped = False

    def pair(self, other: RateLimiter) -> None:
        """Make ``other`` (the session's other direction, sharing ``shared``) this one's peer."""
        if other.shared is not self.shared or other.gap != self.gap:
            raise ValueError("paired rate limiters share one record and the same limits")
        self.peer, other.peer = other, self

    def received(self, octets: int, messages: int) -> None:
        """The hop read ``octets`` bytes and has now received ``messages`` messages in all."""
        new = messages - self.seen
        self.seen = messages
        self.charge(self._clock.seconds(), octets, new)

    def charge(self, now: float, octets: int, messages: int) -> None:
        """A read of ``octets`` bytes that completed ``messages`` messages, at ``now``.

        ``now`` is a time the caller already read (the session timers' one).
        The fast path inlines the calm branch on the hops' slots (keep the two
        alike): a read under the limits costs a subtraction, three comparisons
        and four stores, no call, no clock read and no memory of the limiter's.
        The buckets themselves stay exact: an account that skipped the clock
        (an allowance of tokens spent read by read) could not tell a burst from
        the same bytes spread over the seconds before it, so it would throttle
        a sender within its rate and burst, or let one through above them.
        """
        record = self.record
        shared = self.shared
        if (
            octets <= record.rate_calm_octets
            and messages <= record.rate_calm_messages
            and now - shared.rate_read_at >= record.rate_gap
        ):
            record.rate_last_octets = octets
            record.rate_last_messages = messages
            shared.rate_read_at = now
            shared.rate_read_by = record
        else:
            self.charge_in_full(now, octets, messages)

    def charge_in_full(self, now: float, octets: int, messages: int) -> None:
        """Charge a read that is not calm to the buckets (:meth:`TokenBucket.take`, inlined)."""
        peer = self.peer
        if peer is not None and self.shared.rate_read_by is peer.record:
            peer._settle()
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
        record = self.record
        record.rate_calm_octets = self.calm_octets if calm else -1
        shared = self.shared
        shared.rate_read_at = now
        shared.rate_read_by = record
        if wait and not self.stopped:
            self._over(wait, limit)

    def _settle(self) -> None:
        """Bring the buckets up to date with the calm reads since the last full charge.

        A calm read found both buckets full, so each holds its burst less what
        the last calm read took, as of that read: what :meth:`TokenBucket.take`
        would have left (a message bucket not charged since holds its burst).
        Unless the peer's calm read came after it (``gap`` later at least): the
        buckets are full again then, as their own state already says.
        """
        record = self.record
        taken = record.rate_last_octets
        if taken is None:
            return
        record.rate_last_octets = None
        shared = self.shared
        if shared.rate_read_by is not record:
            return
        bucket = self.octets
        if bucket is not None:
            bucket.tokens = bucket.burst - taken
            bucket.at = shared.rate_read_at
        bucket = self.messages
        if bucket is not None:
            bucket.tokens = bucket.burst - record.rate_last_messages
            bucket.at = shared.rate_read_at

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
        now = self._clock.seconds()
        if now + wait > now:
            self._call = self._clock.callLater(wait, self._refilled)
        else:
            # Paid back, or owed less than the clock can tell apart (a rounding
            # left of a debt paid back exactly now): a wait that cannot move the
            # clock would bring this call back at once, for ever.
            self.pauses.remove(PauseReason.RATE)

    def stop(self) -> None:
        """The session is ending: charge nothing more and let the hop be read."""
        self.stopped = True
        self.peer = None
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


#: The settings and rule last read by :func:`rule_limits`, and their limits.
_LAST_LIMITS: tuple = (None, None, ())


def rule_limits(settings, rule) -> tuple[float, int, int, int, str]:
    """``settings.rate_limits(rule)``, read once while sessions keep coming on the same rule.

    Both are frozen records (a reload builds new ones), so the limits of the
    same two objects never change: most sessions of a listener are on one rule.
    """
    global _LAST_LIMITS
    last = _LAST_LIMITS
    if last[0] is settings and last[1] is rule:
        return last[2]
    limits = settings.rate_limits(rule)
    _LAST_LIMITS = (settings, rule, limits)
    return limits


def rate_limited(limits: tuple[float, int, int, int, str], tunnel: bool) -> bool:
    """Whether a session with ``limits`` (``RelaySettings.rate_limits``) gets rate limiters.

    A tunnel parses no frames, so only a byte rate limits it.  The fast path
    asks before it makes a session's hops: only then are they
    :class:`CalmRecord` ones, and only then do they carry its slots.
    """
    message_rate, _, byte_rate, _, _ = limits
    return bool(byte_rate or (message_rate and not tunnel))


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
    limited = rate_limited(limits, tunnel)
    if not (limited or (max_lifetime and lifetimes is not None)):
        return None
    controls = SessionControls()
    if limited:
        limiters = []
        # Hops that are CalmRecords (the fast path's) keep the session's time on the client's.
        shared = hops[0] if all(isinstance(hop, CalmRecord) for hop in hops) else None
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
                # The fast path reads its hop's record: a LimitedHop is its limiter's.
                record=hop if isinstance(hop, CalmRecord) else None,
                shared=shared,
            )
            hop.limiter = limiter
            limiters.append(limiter)
        if shared is not None:
            limiters[0].pair(limiters[1])
        controls.limiters = tuple(limiters)
    if max_lifetime and lifetimes is not None:
        controls.start_lifetime(lifetimes, owner, max_lifetime, spread)
    return controls
