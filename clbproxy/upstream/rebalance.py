"""Moving live WebSocket sessions: rebalancing, shedding a share, a drain that ends.

A WebSocket session stays on the backend it started on, so a backend that joins
(or comes back healthy, or gets more weight) stays idle while the others carry
everything.  A session can only move by ending: the proxy *relieves* it
(:meth:`clbproxy.upstream.balancer.Lease.relieve`: the client gets the "reconnect
elsewhere" close code) and the client's reconnection is balanced like any new
session.  Each target group has one :class:`Rebalancer`, which does three things
on a tick of :data:`TICK` seconds, and ticks only while it has one to do:

- **rebalancing** (``[target_group.NAME.rebalance]``): when sessions per unit of
  weight on the busiest healthy, ``ready`` backend exceed ``max_ratio`` times
  those of the least busy one, sessions of the busiest are relieved, at most
  ``closes_per_second`` per backend, until the spread is within the ratio.  How
  many, and from where, is :func:`plan`, a pure function;
- **shedding** (admin API): relieve a share of one backend's sessions, spread
  evenly over a given time;
- **a drain that ends** (admin API): after ``close_after`` seconds, a drained
  backend's sessions are relieved, spread evenly over ``spread`` seconds.

Sessions are relieved idlest first: least recently active (a frame either way),
and among sessions that never carried a frame, the oldest.  Each process (each
worker of ``workers = N``) moves its own sessions; a relieved client reconnects
to whichever process accepts it.
"""

from __future__ import annotations

import collections
import heapq
import math
from typing import Any, Optional, Sequence

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from clbproxy.config import BackendConfig, RebalanceConfig
from clbproxy.upstream.states import AdminState

log = Logger()

#: Seconds between two looks at a group's backends while there is work.
TICK = 0.25
#: Seconds a relieved session's reconnection is expected at the backend the plan chose.
SETTLE = 2.0


@attrs.frozen
class BackendLoad:
    """What :func:`plan` knows of one backend that may take reconnections.

    ``load`` counts its live sessions and requests less those already relieved;
    ``owed`` the reconnections expected here; ``room`` how many more it may take
    (``max_conns``; None: no limit); ``allowance`` how many sessions the rate cap
    lets it relieve now.
    """

    address: str
    weight: int
    load: int
    owed: int = 0
    room: Optional[int] = None
    allowance: int = 0


def plan(backends: Sequence[BackendLoad], max_ratio: float) -> dict[str, int]:
    """How many sessions to relieve on each backend now (only those with a count).

    One session at a time: from the backend with the most per unit of weight
    (that may still relieve one) to the one with the fewest (that has room),
    while the first has more than ``max_ratio`` times the second's and the move
    does not turn them round.  Reconnections are assumed to land where the plan
    sends them, which ``least_conn`` does, and ``random_two`` does most of the
    time; the next tick looks at the real counts again.
    """
    level = {b.address: b.load + b.owed for b in backends}
    room = {b.address: b.room for b in backends}
    left = {b.address: b.allowance for b in backends}
    closes: dict[str, int] = {}
    weighted = [b for b in backends if b.weight > 0]
    while True:
        sources = [b for b in weighted if left[b.address] > 0 and level[b.address] > 0]
        if not sources:
            break
        source = max(sources, key=lambda b: level[b.address] / b.weight)
        targets = [
            b
            for b in weighted
            if b is not source and (room[b.address] is None or room[b.address] > 0)
        ]
        if not targets:
            break
        target = min(targets, key=lambda b: level[b.address] / b.weight)
        high, low = level[source.address], level[target.address]
        spread = high * target.weight > max_ratio * low * source.weight
        keeps_order = (high - 1) * target.weight >= (low + 1) * source.weight
        if not (spread and keeps_order):
            break
        level[source.address] -= 1
        level[target.address] += 1
        left[source.address] -= 1
        if room[target.address] is not None:
            room[target.address] -= 1
        closes[source.address] = closes.get(source.address, 0) + 1
    return closes


def plan_targets(backends: Sequence[BackendLoad], closes: dict[str, int]) -> dict[str, int]:
    """Where :func:`plan`'s relieved sessions are expected to reconnect, by address."""
    level = {b.address: b.load + b.owed for b in backends}
    room = {b.address: b.room for b in backends}
    arrivals: dict[str, int] = {}
    for _ in range(sum(closes.values())):
        targets = [
            b
            for b in backends
            if b.weight > 0
            and closes.get(b.address, 0) == 0
            and (room[b.address] is None or room[b.address] > 0)
        ]
        if not targets:
            break
        target = min(targets, key=lambda b: level[b.address] / b.weight)
        level[target.address] += 1
        if room[target.address] is not None:
            room[target.address] -= 1
        arrivals[target.address] = arrivals.get(target.address, 0) + 1
    return arrivals


class CloseRate:
    """At most ``per_second`` closes in any one second (below 1: one per ``1/per_second`` s).

    Each tick may also use only its own share of a second, so closes are spread
    over the second rather than sent at once.
    """

    def __init__(self, per_second: float, tick: float = TICK) -> None:
        if per_second >= 1:
            self.window, self.most = 1.0, int(per_second)
        else:
            self.window, self.most = 1.0 / per_second, 1
        self.per_tick = max(1, math.ceil(per_second * tick))
        self._times: collections.deque[float] = collections.deque()

    def allowance(self, now: float) -> int:
        """How many closes may be made at ``now``."""
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        return max(0, min(self.per_tick, self.most - len(times)))

    def spend(self, now: float, count: int) -> None:
        self._times.extend([now] * count)


@attrs.define
class Shedding:
    """Relieving ``total`` sessions of one backend, evenly from ``start`` over ``over`` s.

    A drain (``action = "drain"``) counts its total when it starts, relieves
    every session left at its end, and stops if the backend is not drained any more.
    """

    address: str
    action: str
    reason: str
    start: float
    over: float
    share: float = 1.0
    total: Optional[int] = None
    done: int = 0

    def due(self, now: float) -> int:
        """How many more sessions should have been relieved by ``now``."""
        if self.total is None:
            return 0
        if self.over <= 0 or now >= self.start + self.over:
            return self.total - self.done
        return max(0, math.ceil(self.total * (now - self.start) / self.over) - self.done)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.address,
            "action": self.action,
            "start": self.start,
            "over": self.over,
            "share": self.share,
            "total": self.total,
            "done": self.done,
        }


class Rebalancer:
    """The session mover of one target group (see the module docstring).

    ``group`` is the :class:`~clbproxy.upstream.balancer.TargetGroup`, read
    through its public methods.  It ticks between :meth:`start` and :meth:`stop`
    (:class:`clbproxy.ops.services.ProxyService` calls them while the group is
    in use), and only while there is work.
    """

    def __init__(
        self, group, clock: IReactorTime, config: Optional[RebalanceConfig], tick: float = TICK
    ) -> None:
        self.group = group
        self.clock = clock
        self.config = config
        self.tick_seconds = tick
        #: Sessions relieved, by ``(backend address, action)``; action: rebalance, shed, drain.
        self.relieved: collections.Counter = collections.Counter()
        #: The last thing done: ``{"time": seconds, "text": ...}``.
        self.last_action: Optional[dict[str, Any]] = None
        self.tasks: list[Shedding] = []
        self._relieving: set = set()
        self._rates: dict[str, CloseRate] = {}
        #: Reconnections expected per address: ``[count, sent count seen, expiry]``.
        self._owed: dict[str, list] = {}
        self._call: Optional[IDelayedCall] = None
        self._running = False

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        """Tick from now on, while there is work."""
        self._running = True
        self._wake()

    def stop(self) -> None:
        """Tick no more (the group is no longer in use, or the proxy stops)."""
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _has_work(self) -> bool:
        return self.config is not None or bool(self.tasks)

    def _wake(self) -> None:
        if self._running and self._call is None and self._has_work():
            self._call = self.clock.callLater(self.tick_seconds, self._tick)

    def _tick(self) -> None:
        self._call = None
        try:
            self.tick()
        except Exception:
            log.failure("target group {group}: rebalancing failed", group=self.group.name)
        self._wake()

    def tick(self) -> None:
        """One look at the group's backends: run the sheddings and drains, then rebalance."""
        now = self.clock.seconds()
        self._relieving = {lease for lease in self._relieving if not lease.released}
        for task in list(self.tasks):
            self._run(task, now)
        if self.config is not None:
            self._rebalance(now)

    # -- rebalancing -------------------------------------------------------------------

    def loads(self, now: float) -> list[BackendLoad]:
        """The backends rebalancing works between: healthy, ``ready``, weighted."""
        relieving = collections.Counter(
            lease.backend_config.address for lease in self._relieving if lease.group is self.group
        )
        found = []
        for backend in self.group.config.backends:
            control = self.group.control(backend.address)
            if control.state is not AdminState.READY or control.weight <= 0:
                continue
            if not self.group.health.available(backend):
                continue
            load = self.group.load(backend) - relieving[backend.address]
            room = None
            if backend.max_conns:
                room = max(0, backend.max_conns - self.group.load(backend))
            found.append(
                BackendLoad(
                    address=backend.address,
                    weight=control.weight,
                    load=load,
                    owed=self._owed_at(backend, now),
                    room=room,
                    allowance=self._rate(backend.address).allowance(now),
                )
            )
        return found

    def _rate(self, address: str) -> CloseRate:
        rate = self._rates.get(address)
        if rate is None:
            rate = self._rates[address] = CloseRate(
                self.config.closes_per_second, self.tick_seconds
            )
        return rate

    def _owed_at(self, backend: BackendConfig, now: float) -> int:
        entry = self._owed.get(backend.address)
        if entry is None:
            return 0
        sent = self.group.sent(backend)
        entry[0] = max(0, entry[0] - (sent - entry[1]))
        entry[1] = sent
        if entry[0] == 0 or now >= entry[2]:
            del self._owed[backend.address]
            return 0
        return entry[0]

    def _rebalance(self, now: float) -> None:
        loads = self.loads(now)
        closes = plan(loads, self.config.max_ratio)
        if not closes:
            return
        for address, count in closes.items():
            relieved = self._relieve(address, count, "rebalance", "rebalance", now)
            self._rate(address).spend(now, relieved)
        by_address = {b.address: b for b in self.group.config.backends}
        for address, count in plan_targets(loads, closes).items():
            entry = self._owed.get(address)
            if entry is None:
                entry = self._owed[address] = [0, self.group.sent(by_address[address]), 0.0]
            entry[0] += count
            entry[2] = now + SETTLE

    # -- sheddings and drains ------------------------------------------------------------

    def shed(self, address: str, share: float, over: float) -> int:
        """Relieve ``share`` (0-1) of ``address``'s sessions, evenly over ``over`` seconds.

        Returns how many sessions that is (counted now).
        """
        now = self.clock.seconds()
        total = math.ceil(share * len(self._candidates(address)) - 1e-9)
        task = Shedding(address, "shed", "rebalance", now, over, share=share, total=total)
        self.tasks.append(task)
        self._note(now, f"shedding {total} session(s) of {address} over {over:g} s")
        self._run(task, now)
        self._wake()
        return total

    def drain(self, address: str, close_after: float, spread: float) -> None:
        """After ``close_after`` s of drain, relieve ``address``'s sessions over ``spread`` s.

        Replaces a drain already planned for that backend.
        """
        now = self.clock.seconds()
        self.cancel_drain(address)
        task = Shedding(address, "drain", "drain", now + close_after, spread)
        self.tasks.append(task)
        self._note(
            now,
            f"drain of {address} ends: sessions relieved after {close_after:g} s, "
            f"over {spread:g} s",
        )
        self._run(task, now)
        self._wake()

    def cancel_drain(self, address: str) -> None:
        """Forget the end planned for ``address``'s drain (drained again without one)."""
        self.tasks = [t for t in self.tasks if not (t.address == address and t.action == "drain")]

    def _run(self, task: Shedding, now: float) -> None:
        if task.action == "drain":
            if self.group.control(task.address).state is not AdminState.DRAIN:
                self.tasks.remove(task)
                return
            if now < task.start:
                return
            if task.total is None:
                task.total = len(self._candidates(task.address))
        due = task.due(now)
        if due > 0:
            task.done += due
            self._relieve(task.address, due, task.reason, task.action, now)
        if task.total is not None and task.done >= task.total and now >= task.start + task.over:
            if task.action == "drain" and self._candidates(task.address):
                # Sessions that were still in their handshake: relieved as they open.
                self._relieve(
                    task.address, len(self._candidates(task.address)), "drain", "drain", now
                )
                return
            self.tasks.remove(task)

    # -- relieving -----------------------------------------------------------------------

    def _candidates(self, address: str) -> list:
        """The open sessions of ``address`` that may be relieved (not already told to go)."""
        backend = self.group.backend(address)
        if backend is None:
            return []
        return [
            lease
            for lease in self.group.leases(backend)
            if lease.closable and lease not in self._relieving and lease.last_activity() is not None
        ]

    def _relieve(self, address: str, count: int, reason: str, action: str, now: float) -> int:
        """Relieve up to ``count`` sessions of ``address``, idlest first; how many were."""
        chosen = heapq.nsmallest(count, self._candidates(address), key=_quiet_since)
        for lease in chosen:
            self._relieving.add(lease)
            lease.relieve(reason)
        if chosen:
            self.relieved[address, action] += len(chosen)
            text = f"relieved {len(chosen)} session(s) of {address} ({action})"
            self._note(now, text)
            log.info(
                "target group {group}: relieved {count} session(s) of {backend} ({action})",
                group=self.group.name,
                count=len(chosen),
                backend=address,
                action=action,
            )
        return len(chosen)

    def _note(self, now: float, text: str) -> None:
        self.last_action = {"time": now, "text": text}

    # -- observers and reloads -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the status page shows of this group's rebalancing."""
        config = self.config
        return {
            "enabled": config is not None,
            "max_ratio": config.max_ratio if config else None,
            "closes_per_second": config.closes_per_second if config else None,
            "relieved": sum(self.relieved.values()),
            "last_action": self.last_action,
            "tasks": [task.describe() for task in self.tasks],
        }

    def take_over(self, old: Rebalancer, addresses: Sequence[str]) -> None:
        """Carry on ``old``'s counts, and its sheddings and drains of the kept ``addresses``."""
        self.relieved.update(old.relieved)
        self.last_action = old.last_action
        self._relieving = set(old._relieving)
        kept = set(addresses)
        self.tasks = [task for task in old.tasks if task.address in kept]
        self._owed = {a: entry for a, entry in old._owed.items() if a in kept}
        if self.config is not None:
            for address, rate in old._rates.items():
                if address in kept:
                    # The closes of the last second still count against the cap.
                    self._rate(address)._times = rate._times
        self._wake()


def _quiet_since(lease) -> float:
    return lease.last_activity()
