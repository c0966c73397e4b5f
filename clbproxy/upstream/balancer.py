"""Target groups at run time: which backend takes the next session or request.

A :class:`TargetGroup` narrows its backends to those that may take new traffic
(weight above 0, below ``max_conns``, in service by :mod:`clbproxy.upstream.health.checks`,
not already tried), asks session persistence (:mod:`clbproxy.upstream.persistence`)
for a remembered backend, and otherwise asks its balancing policy, one of:

- ``round_robin``: nginx's smooth weighted round robin: over any window of
  ``sum(weights)`` picks each backend is chosen ``weight`` times, interleaved;
- ``least_conn``: fewest live sessions plus in-flight requests per unit of
  weight, ties broken by smooth weighted round robin (as nginx does);
- ``consistent_hash``: a hash ring with ``160 x weight / 10`` virtual nodes per
  backend, keyed by the client address, a header, a cookie or a query
  parameter, so adding or removing a backend moves about 1/N of the keys;
- ``random_two``: two weighted random candidates, the less loaded one wins.

Live sessions and in-flight requests are counted with leases: whoever sends
traffic to a backend holds ``group.acquire(backend)`` until that traffic ends.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from typing import Callable, Iterable, Mapping, Optional, Sequence

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.upstream.health.checks import GroupHealth
from clbproxy.upstream.persistence import make_persistence
from clbproxy.upstream.rebalance import Rebalancer
from clbproxy.upstream.states import AdminState

log = Logger()

Load = Callable[[BackendConfig], int]


@attrs.frozen
class RequestInfo:
    """What a policy or session persistence may look at: who asks, for what.

    ``headers`` has lower-case names; ``query`` holds each parameter's first value.
    """

    client_ip: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    cookies: Mapping[str, str] = attrs.field(factory=dict)
    query: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def build(
        cls,
        client_ip: str,
        headers: Iterable[tuple[str, str]],
        query: Mapping[str, Sequence[str]],
    ) -> RequestInfo:
        """A record from the request's headers (pairs, any case) and parsed query."""
        merged: dict[str, str] = {}
        cookies: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower == "cookie":
                cookies.update(parse_cookies(value))
            merged.setdefault(lower, value)
        return cls(
            client_ip=client_ip,
            headers=merged,
            cookies=cookies,
            query={name: values[0] for name, values in query.items() if values},
        )


#: The :class:`RequestInfo` of a request nothing reads (shared: it is frozen and never changed).
NO_REQUEST_INFO = RequestInfo()


def parse_cookies(header: str) -> dict[str, str]:
    """The name/value pairs of a ``Cookie`` header; the first of a repeated name wins."""
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, separator, value = part.strip().partition("=")
        if separator and name and name not in found:
            found[name] = value.strip().strip('"')
    return found


class IBalancingPolicy(Interface):
    """Chooses one backend among candidates that may all take new traffic."""

    name = Attribute("The policy's name in tap.conf.")

    def pick(
        candidates: Sequence[BackendConfig], request: RequestInfo, load: Load
    ) -> Optional[BackendConfig]:
        """One of ``candidates`` (never empty), or None; ``load(b)`` is b's live count."""


@implementer(IBalancingPolicy)
class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin.

    Each pick adds every candidate's weight to its running score, takes the
    highest and subtracts the candidates' total from it.  Backends that are not
    candidates this time keep their score, as nginx keeps a down peer's.
    """

    name = "round_robin"
    #: Picks without looking at the request (see :attr:`TargetGroup.reads_requests`).
    reads_request = False

    def __init__(self, backends: Iterable[BackendConfig] = ()) -> None:
        self._backends = list(backends)
        self._current: dict[BackendConfig, int] = {}

    def pick(
        self,
        candidates: Optional[Sequence[BackendConfig]] = None,
        request: Optional[RequestInfo] = None,
        load: Optional[Load] = None,
        *,
        exclude: Iterable[BackendConfig] = (),
    ) -> Optional[BackendConfig]:
        """The next of ``candidates`` (default: all weighted backends but ``exclude``)."""
        if candidates is None:
            excluded = set(exclude)
            candidates = [b for b in self._backends if b not in excluded]
        elif len(candidates) == 1:
            # The loop's answer for one: its score goes up by its weight and
            # down by the total, its weight (a group of one backend, every pick).
            (only,) = candidates
            return only if only.weight > 0 else None
        total = 0
        best: Optional[BackendConfig] = None
        for backend in candidates:
            if backend.weight <= 0:
                continue
            score = self._current.get(backend, 0) + backend.weight
            self._current[backend] = score
            total += backend.weight
            if best is None or score > self._current[best]:
                best = backend
        if best is not None:
            self._current[best] -= total
        return best


@implementer(IBalancingPolicy)
class WeightedLeastConnections:
    """Fewest live sessions and in-flight requests per unit of weight (nginx ``least_conn``)."""

    name = "least_conn"
    #: Picks without looking at the request (see :attr:`TargetGroup.reads_requests`).
    reads_request = False

    def __init__(self) -> None:
        self._tie_breaker = SmoothWeightedRoundRobin()

    def pick(
        self, candidates: Sequence[BackendConfig], request: RequestInfo, load: Load
    ) -> Optional[BackendConfig]:
        best: list[BackendConfig] = []
        best_load = 0
        for backend in candidates:
            if backend.weight <= 0:
                continue
            current = load(backend)
            if not best:
                best, best_load = [backend], current
                continue
            # current / weight compared with best_load / best_weight, without division.
            left = current * best[0].weight
            right = best_load * backend.weight
            if left < right:
                best, best_load = [backend], current
            elif left == right:
                best.append(backend)
        if len(best) <= 1:
            return best[0] if best else None
        return self._tie_breaker.pick(best)


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


#: Virtual nodes of a backend with the default weight (10): nginx's 160 points per weight unit.
VIRTUAL_NODES_PER_WEIGHT = 16


@implementer(IBalancingPolicy)
class ConsistentHash:
    """A hash ring over every configured backend, walked clockwise to the first candidate.

    The ring never changes while the group lives: a backend that is out of
    service (or full, or drained) is stepped over, so only its keys move, and
    they come back when it does.  A request without the key (no such header,
    cookie or parameter) is balanced by smooth weighted round robin, as HAProxy
    does.
    """

    name = "consistent_hash"

    def __init__(self, backends: Iterable[BackendConfig], hash_key: str = "source_ip") -> None:
        self.hash_key = hash_key
        points: list[tuple[int, int]] = []
        self._backends = [b for b in backends if b.weight > 0]
        for index, backend in enumerate(self._backends):
            for replica in range(max(1, backend.weight * VIRTUAL_NODES_PER_WEIGHT)):
                points.append((_hash64(f"{backend.address}#{replica}".encode()), index))
        points.sort()
        self._hashes = [point for point, _ in points]
        self._owners = [index for _, index in points]
        self._fallback = SmoothWeightedRoundRobin()

    def key(self, request: RequestInfo) -> Optional[str]:
        """The value hashed for ``request``, or None when the request does not carry it."""
        if self.hash_key == "source_ip":
            return request.client_ip or None
        source, _, name = self.hash_key.partition(":")
        if source == "header":
            return request.headers.get(name)
        if source == "cookie":
            return request.cookies.get(name)
        return request.query.get(name)

    def pick(
        self, candidates: Sequence[BackendConfig], request: RequestInfo, load: Load
    ) -> Optional[BackendConfig]:
        key = self.key(request)
        if key is None or not self._hashes:
            return self._fallback.pick(candidates)
        allowed = set(candidates)
        start = bisect.bisect(self._hashes, _hash64(key.encode("utf-8", "surrogateescape")))
        seen: set[int] = set()
        count = len(self._hashes)
        for step in range(count):
            index = self._owners[(start + step) % count]
            if index in seen:
                continue
            seen.add(index)
            backend = self._backends[index]
            if backend in allowed:
                return backend
            if len(seen) == len(self._backends):
                break
        return None


@implementer(IBalancingPolicy)
class RandomTwoChoices:
    """Two distinct candidates drawn by weight; the one with less load per weight wins."""

    name = "random_two"
    #: Picks without looking at the request (see :attr:`TargetGroup.reads_requests`).
    reads_request = False

    def __init__(self, rng: Optional[random.Random] = None) -> None:
        self._random = rng or random.Random()

    def pick(
        self, candidates: Sequence[BackendConfig], request: RequestInfo, load: Load
    ) -> Optional[BackendConfig]:
        pool = [b for b in candidates if b.weight > 0]
        if len(pool) <= 1:
            return pool[0] if pool else None
        first = self._random.choices(pool, weights=[b.weight for b in pool])[0]
        rest = [b for b in pool if b is not first]
        second = self._random.choices(rest, weights=[b.weight for b in rest])[0]
        if load(second) * first.weight < load(first) * second.weight:
            return second
        return first


def make_policy(config: TargetGroupConfig, rng: Optional[random.Random] = None) -> IBalancingPolicy:
    """The balancing policy ``config`` names."""
    if config.policy == "least_conn":
        return WeightedLeastConnections()
    if config.policy == "consistent_hash":
        return ConsistentHash(config.backends, config.hash_key)
    if config.policy == "random_two":
        return RandomTwoChoices(rng)
    return SmoothWeightedRoundRobin(config.backends)


class Lease:
    """Traffic counted on one backend of a group until ``release()`` (idempotent).

    An HTTP request holds a plain lease from :meth:`TargetGroup.acquire`.  A
    relayed WebSocket session *is* its lease (:class:`clbproxy.ws.relay.RelaySession`
    subclasses this and :meth:`TargetGroup.hold` counts it), so an idle session,
    of which a balancer holds tens of thousands, carries no extra objects for it.
    """

    __slots__ = ("group", "backend_config", "released", "_held_in")

    #: Whether :meth:`close` ends the traffic (sessions); a request ends by itself.
    closable = False

    def __init__(self, group: TargetGroup, backend_config: Optional[BackendConfig]) -> None:
        self.group = group
        self.backend_config = backend_config
        #: Counted from :meth:`TargetGroup.hold` until :meth:`release`.
        self.released = True

    def close(self, reason: str) -> None:
        """End the traffic: its backend was taken out of service (``on_unhealthy = "close"``)."""

    def relieve(self, reason: str) -> None:
        """End the traffic so its client comes back on another backend (a session reconnects).

        ``reason``: ``"rebalance"``, ``"drain"``, ``"lifetime"`` or ``"rate_limit"``
        (:class:`clbproxy.ws.closecodes.CloseReason`).  A request ends by itself:
        nothing to do; a WebSocket session closes with the reconnect code
        (:meth:`clbproxy.ws.closing.Closing.relieve`).
        """

    def last_activity(self) -> Optional[float]:
        """When the traffic last moved (clock seconds); None: it cannot be relieved now.

        Rebalancing relieves the sessions with the oldest first.  A request, or
        a session still in its handshake, says None.
        """
        return None

    def release(self) -> None:
        """Stop counting this lease on its backend (once; later calls do nothing)."""
        if not self.released:
            self.released = True
            self._held_in.discard(self)  # the group's set it is counted in (see hold)


class _Leases(set):
    """The live leases on one backend of a group, and how many were ever ``sent`` there.

    One set per backend, found once per :meth:`TargetGroup.hold` (its count goes
    with it, not in a second dict) and kept by each lease it holds, so a release
    finds it without looking the backend up again.
    """

    __slots__ = ("sent",)

    def __init__(self, sent: int = 0) -> None:
        super().__init__()
        self.sent = sent


class _ClosingLease(Lease):
    """A lease whose :meth:`close` calls the function given to :meth:`TargetGroup.acquire`."""

    __slots__ = ("_close",)
    closable = True

    def __init__(
        self, group: TargetGroup, backend_config: BackendConfig, close: Callable[[str], None]
    ) -> None:
        super().__init__(group, backend_config)
        self._close = close

    def close(self, reason: str) -> None:
        self._close(reason)


#: "No ejection to wait for" (:attr:`TargetGroup._steady_until`).
_FOREVER = float("inf")

READY = AdminState.READY
DRAIN = AdminState.DRAIN
MAINT = AdminState.MAINT

#: The largest weight a backend may be given (as in tap.conf).
MAX_WEIGHT = 100


def action_survives(
    before: TargetGroupConfig, after: TargetGroupConfig, address: str, action: str
) -> bool:
    """Whether a runtime action on backend ``address`` still holds after a reload.

    The same rule as :meth:`TargetGroup.take_over`: the backend must still be in
    the group, and a weight only holds while tap.conf keeps that backend's weight.
    """
    old = {b.address: b for b in before.backends}.get(address)
    new = {b.address: b for b in after.backends}.get(address)
    if old is None or new is None:
        return False
    return action != "weight" or old.weight == new.weight


class UnknownBackend(KeyError):
    """No backend with that address in that target group."""


@attrs.frozen
class BackendControl:
    """The runtime state of one backend: its admin state and effective weight."""

    address: str
    configured_weight: int
    weight: int
    state: AdminState = READY


class TargetGroup:
    """A configured target group with its balancing, persistence and health state.

    ``clock`` measures persistence and ejection times; ``health`` and
    ``persistence`` default to the ones the configuration describes.
    """

    def __init__(
        self,
        config: TargetGroupConfig,
        clock: Optional[IReactorTime] = None,
        *,
        policy: Optional[IBalancingPolicy] = None,
        health=None,
        persistence=None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.config = config
        #: ``config.name`` (a group's name stays for life: a reload builds a new group).
        self.name: str = config.name
        self.clock = clock
        self.policy = policy or make_policy(config)
        self.health = health or GroupHealth(config, clock)
        self.persistence = persistence or make_persistence(
            config.persistence, clock, config.backends
        )
        #: Whether session persistence is on: it looks at requests and remembers
        #: backends (without it, ``lookup`` is always None and ``remember`` adds nothing).
        self.persists: bool = getattr(self.persistence, "reads_request", True)
        #: Whether picking (the policy or session persistence) looks at the request
        #: at all.  When not, a caller can skip building a :class:`RequestInfo` per
        #: request (its headers, cookies and query) and pass None.
        self.reads_requests: bool = self._policy_reads() or self.persists
        #: Live leases per backend, with the count of leases ever taken (sessions
        #: and requests sent to it, for metrics).
        self._leases: dict[BackendConfig, _Leases] = {b: _Leases() for b in config.backends}
        self._failing_open = False
        self.health.on_change(self._health_changed)
        #: Runtime state per backend address (admin API: drain, disable, reweight).
        self._controls = {
            b.address: BackendControl(b.address, b.weight, b.weight) for b in config.backends
        }
        #: The backend records the policy sees: the configured ones, reweighted at run time.
        self._weighted = {b.address: b for b in config.backends}
        self._configured = dict(self._weighted)
        #: The candidates while nothing changes (see :meth:`candidates`), None when
        #: they must be worked out again; the records the policy sees for them; and
        #: the clock time they hold until (the soonest ejection's end).
        self._steady: Optional[list[BackendConfig]] = None
        self._steady_weighted: list[BackendConfig] = []
        self._steady_until = _FOREVER
        #: Only the group's own health (on its clock) tells every change: a health
        #: given in its place is asked on every pick.
        self._keeps_candidates = health is None
        #: Whether any backend has ``max_conns``: then fullness is checked per pick.
        self._bounded = any(b.max_conns > 0 for b in config.backends)
        #: Moves live sessions: rebalancing, shedding, drains that end.
        self.rebalancer = Rebalancer(self, clock, config.rebalance)

    @property
    def backends(self) -> tuple[BackendConfig, ...]:
        return self.config.backends

    # -- load --------------------------------------------------------------------

    def acquire(
        self, backend: BackendConfig, close: Optional[Callable[[str], None]] = None
    ) -> Lease:
        """Count one live session or in-flight request on ``backend`` until released.

        ``close`` is called with a reason to end the traffic when ``backend`` is
        taken out of service and the group says ``on_unhealthy = "close"``.
        """
        lease = Lease(self, backend) if close is None else _ClosingLease(self, backend, close)
        return self.hold(lease, backend)

    def hold(self, lease: Lease, backend: BackendConfig) -> Lease:
        """Count ``lease`` (released, or new) on ``backend`` until it is released."""
        lease.group = self
        lease.backend_config = backend
        lease.released = False
        leases = self._leases.get(backend)
        if leases is None:  # not setdefault: a set per call, for every request, is waste
            leases = self._leases[backend] = _Leases()
        leases.add(lease)
        leases.sent += 1
        lease._held_in = leases
        return lease

    def load(self, backend: BackendConfig) -> int:
        """Live WebSocket sessions plus in-flight HTTP requests on ``backend``."""
        return len(self._leases.get(backend, ()))

    def sent(self, backend: BackendConfig) -> int:
        """WebSocket sessions and HTTP requests (each attempt) ever sent to ``backend``."""
        leases = self._leases.get(backend)
        return 0 if leases is None else leases.sent

    def is_full(self, backend: BackendConfig) -> bool:
        return 0 < backend.max_conns <= self.load(backend)

    # -- picking -----------------------------------------------------------------

    def pick(
        self, request: Optional[RequestInfo] = None, exclude: Iterable[BackendConfig] = ()
    ) -> Optional[BackendConfig]:
        """The backend for a new session or request, or None when none can take it.

        None means: every backend is drained, full or already in ``exclude``, or
        (with ``fail_open = false``) none is in service.
        """
        request = request or NO_REQUEST_INFO
        steady = self._steady
        if (
            not exclude
            and steady is not None
            and not self._bounded
            and (self._steady_until is _FOREVER or self.clock.seconds() < self._steady_until)
        ):
            candidates = steady  # self.candidates()'s answer, without a call per pick
            weighted = self._steady_weighted
        else:
            candidates = self.candidates(exclude)
            if not candidates:
                return None
            weighted = self._steady_weighted if candidates is self._steady else None
        if self.persists:
            remembered = self.persistence.lookup(request)
            if remembered is not None and remembered in candidates:
                return remembered
        if weighted is None:
            weighted = [self._weighted[b.address] for b in candidates]
        chosen = self.policy.pick(weighted, request, self._configured_load)
        return None if chosen is None else self._configured[chosen.address]

    def _configured_load(self, backend: BackendConfig) -> int:
        """:meth:`load` of a backend as the policy sees it (maybe reweighted)."""
        return self.load(self._configured[backend.address])

    def _takes_traffic(self, backend: BackendConfig) -> bool:
        control = self._controls[backend.address]
        return control.weight > 0 and control.state == READY

    def candidates(self, exclude: Iterable[BackendConfig] = ()) -> list[BackendConfig]:
        """Backends that may take new traffic now: in service (or failing open), not full.

        The list is the caller's to read, not to change.  Which backends are in
        service changes only when one's health, admin state or weight does, or an
        ejection ends: until then a first pick (nothing to exclude) takes the
        list worked out last time (fullness aside, which moves with every
        request), instead of asking each backend's health again per request.
        """
        if not exclude:
            steady = self._steady
            if steady is not None and (
                self._steady_until is _FOREVER or self.clock.seconds() < self._steady_until
            ):
                if not self._bounded:
                    return steady
                leases = self._leases
                open_ = [b for b in steady if not 0 < b.max_conns <= len(leases.get(b, ()))]
                if open_:
                    return open_
                # All full: the full answer (and its fail-open rules) below.
        return self._work_out_candidates(exclude)

    def _work_out_candidates(self, exclude: Iterable[BackendConfig]) -> list[BackendConfig]:
        """:meth:`candidates` from each backend's state (and the steady list, kept)."""
        excluded = set(exclude) if exclude else ()
        controls = self._controls
        leases = self._leases
        open_ = []
        for b in self.config.backends:
            control = controls[b.address]
            if control.weight <= 0 or control.state != READY or b in excluded:
                continue
            if 0 < b.max_conns <= len(leases.get(b, ())):
                continue  # full (is_full, inline: this runs for every request)
            open_.append(b)
        available = self.health.available
        healthy = [b for b in open_ if available(b)]
        if healthy or not open_:
            if self._failing_open:
                self._set_failing_open(False)
            if healthy and self._keeps_candidates:
                self._keep_candidates()
            return healthy
        weighted = [b for b in self.config.backends if self._takes_traffic(b)]
        if any(self.health.available(b) for b in weighted):
            # Healthy backends exist but are full or already tried.
            return []
        if not self.config.fail_open:
            self._set_failing_open(False, closed=True)
            return []
        self._set_failing_open(True)
        return open_

    def _keep_candidates(self) -> None:
        """Keep the backends in service (full or not) as the steady candidates.

        Called with some in service, after their health was read (which ends
        the ejections due).  Kept until the soonest ejection still running ends,
        or a change of health or runtime state forgets them (:meth:`_forget_candidates`).
        """
        controls = self._controls
        available = self.health.available
        steady = []
        for b in self.config.backends:
            control = controls[b.address]
            if control.weight > 0 and control.state == READY and available(b):
                steady.append(b)
        self._steady = steady
        self._steady_weighted = [self._weighted[b.address] for b in steady]
        until = self.health.next_return()
        self._steady_until = _FOREVER if until is None else until

    def _forget_candidates(self) -> None:
        self._steady = None

    def _set_failing_open(self, value: bool, closed: bool = False) -> None:
        if closed and not self._failing_open:
            log.warn(
                "target group {group}: no backend is healthy; answering 503 (fail_open = false)",
                group=self.name,
            )
        elif value and not self._failing_open:
            log.warn(
                "target group {group}: no backend is healthy; failing open to all of them",
                group=self.name,
            )
        elif not value and self._failing_open:
            log.info("target group {group}: a backend is healthy again", group=self.name)
        self._failing_open = value

    # -- runtime controls (admin API) ------------------------------------------------

    def controls(self) -> list[BackendControl]:
        """Every backend's runtime state, in configuration order."""
        return [self._controls[b.address] for b in self.config.backends]

    def control(self, address: str) -> BackendControl:
        try:
            return self._controls[address]
        except KeyError:
            raise UnknownBackend(address) from None

    def set_state(self, address: str, state: AdminState | str) -> BackendControl:
        """Put a backend in ``ready``, ``drain`` (no new traffic) or ``maint`` (disabled).

        Neither cuts open sessions; a reload that keeps the backend keeps its state
        (:meth:`take_over`).
        """
        try:
            state = AdminState(state)
        except ValueError:
            raise ValueError(f"unknown state {state!r}") from None
        control = attrs.evolve(self.control(address), state=state)
        self._controls[address] = control
        self._forget_candidates()
        return control

    def set_weight(self, address: str, weight: int) -> BackendControl:
        """Give a backend a new weight (0-100), kept until tap.conf changes that weight."""
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ValueError("weight must be an integer")
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight {weight} out of range 0-{MAX_WEIGHT}")
        control = attrs.evolve(self.control(address), weight=weight)
        self._controls[address] = control
        self._weighted[address] = attrs.evolve(self._configured[address], weight=weight)
        backends = tuple(self._weighted[b.address] for b in self.config.backends)
        self.policy = make_policy(attrs.evolve(self.config, backends=backends))
        self.reads_requests = self._policy_reads() or self.persists
        self._forget_candidates()
        return control

    # -- a reload ---------------------------------------------------------------------

    def take_over(self, old: TargetGroup) -> None:
        """Carry ``old``'s live state over to this group, which a reload built to replace it.

        Matched by backend address (``host:port``), for every backend both have:
        live leases (sessions and requests) are counted here from now on and
        released here when they end, so ``least_conn`` and ``max_conns`` see them;
        the count of traffic sent goes on, and so do rebalancing's counts and the
        sheddings and drains under way; and the runtime state an operator set
        (drain, disable, a weight) stays, except a weight override of a backend
        whose weight tap.conf itself changed (the file's change is the newer
        decision).  Leases of backends this group does not have stay with ``old``
        and end there.
        """
        for backend in self.config.backends:
            before = old.backend(backend.address)
            if before is None:
                continue
            moving = old._leases.get(before)
            if moving is not None:
                # old keeps its count of traffic sent, and no live lease.
                old._leases[before] = _Leases(moving.sent)
                leases = self._leases.get(backend)
                if leases is None:
                    leases = self._leases[backend] = _Leases()
                for lease in moving:
                    lease.group = self
                    lease.backend_config = backend
                    lease._held_in = leases
                leases.update(moving)
                leases.sent += moving.sent
            control = old._controls[before.address]
            if control.state != READY:
                self.set_state(backend.address, control.state)
            overridden = control.weight != control.configured_weight
            if overridden and before.weight == backend.weight:
                self.set_weight(backend.address, control.weight)
        kept = [b.address for b in self.config.backends if old.backend(b.address) is not None]
        self.rebalancer.take_over(old.rebalancer, kept)

    def backend(self, address: str) -> Optional[BackendConfig]:
        """The backend configured with ``address`` (``host:port``), or None."""
        return self._configured.get(address)

    def leases(self, backend: BackendConfig) -> list[Lease]:
        """The live leases (sessions and requests) on ``backend`` now."""
        return list(self._leases.get(backend, ()))

    def _policy_reads(self) -> bool:
        """Whether the balancing policy looks at the request (see :attr:`reads_requests`)."""
        return getattr(self.policy, "reads_request", True)

    def persistence_headers(
        self, request: Optional[RequestInfo], backend: BackendConfig
    ) -> list[tuple[str, str]]:
        """Response headers that bring this client back to ``backend`` (may be empty)."""
        return self.persistence.remember(request or NO_REQUEST_INFO, backend)

    # -- traffic outcomes (passive health) ---------------------------------------------

    def report_success(self, backend: BackendConfig) -> None:
        """A connection and handshake/response from ``backend`` worked."""
        self.health.passive_success(backend)

    def report_failure(self, backend: BackendConfig, reason: str) -> None:
        """A connect failure or reset on ``backend``."""
        self.health.passive_failure(backend, reason)

    def report_status(self, backend: BackendConfig, status: int) -> None:
        """A response status from ``backend``; 5xx counts as a failure when configured."""
        if status >= 500 and self.config.passive.count_5xx:
            self.health.passive_failure(backend, f"answered {status}")
        else:
            self.health.passive_success(backend)

    def _health_changed(self, backend: BackendConfig, available: bool) -> None:
        self._forget_candidates()
        if available or self.config.on_unhealthy != "close":
            return
        grace = self.config.on_unhealthy_grace
        self.clock.callLater(grace, self._close_sessions, backend)

    def _close_sessions(self, backend: BackendConfig) -> None:
        if self.health.available(backend):
            return
        leases = [lease for lease in self._leases.get(backend, ()) if lease.closable]
        if leases:
            log.info(
                "target group {group}: closing {count} sessions of backend {backend}, "
                "out of service (on_unhealthy = close)",
                group=self.name,
                count=len(leases),
                backend=backend.address,
            )
        for lease in leases:
            lease.close(f"backend {backend.address} out of service")
