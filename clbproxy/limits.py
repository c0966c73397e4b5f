"""Connection limits and access control: who may connect, how often, and how many at once.

Three layers, each answered the way nginx and HAProxy users expect:

- Connection counts (global ``max_connections``, a listener's ``max_connections``):
  when full, the listening socket stops accepting (new connections wait in the
  kernel's backlog) and accepting resumes as soon as a connection ends.  Nothing
  is refused and nothing crashes.  The global count is also held to the
  process's descriptor budget (:mod:`clbproxy.descriptors`), so running out of
  descriptors pauses accepting the same way instead of cutting new clients.
- Per client address: ``max_connections_per_ip`` (counted by client address: the
  TCP peer, or under ``haproxy:`` the PROXY header's source; addresses in
  ``trusted_proxies`` are exempt) answers every request of a connection over the
  limit with 429; ``websocket_handshake_rate``/``_burst`` (a token bucket per real
  client address) answers handshakes over the rate with 429.
- ``allow``/``deny`` lists (CIDR) of the listener and of the rule: 403.  ``deny``
  wins over ``allow``; an empty ``allow`` allows every address.

Every refusal and pause is counted in a :class:`LimitStats`, which the metrics
exporter (:mod:`clbproxy.metrics`) reads at scrape time.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional, Union

import attrs
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from clbproxy import descriptors
from clbproxy.config import ListenerConfig, RuleConfig
from clbproxy.forwarding import TrustedProxies

log = Logger()

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class LimitStats:
    """Named counters of what the limits did; ``snapshot()`` for the metrics exporter.

    ``accept_paused``: times accepting was paused at a connection limit;
    ``refused_per_ip_connections``, ``refused_handshake_rate`` (429);
    ``denied_by_listener``, ``denied_by_rule`` (403); ``refused_draining`` (503);
    ``header_timeouts`` (408 or close); ``websocket_idle_closes``;
    ``websocket_ping_timeouts``.  ``websocket_refusals()``: the refusals above
    that answered a WebSocket handshake, by status (they are handshake outcomes too).
    """

    NAMES = (
        "accept_paused",
        "refused_per_ip_connections",
        "refused_handshake_rate",
        "denied_by_listener",
        "denied_by_rule",
        "refused_draining",
        "header_timeouts",
        "websocket_idle_closes",
        "websocket_ping_timeouts",
    )

    def __init__(self) -> None:
        self._counts = dict.fromkeys(self.NAMES, 0)
        self._websocket: dict[int, int] = {}

    def increment(self, name: str) -> None:
        self._counts[name] += 1

    def refused_websocket(self, status: int) -> None:
        """Count a WebSocket handshake a limit answered with ``status``."""
        self._websocket[status] = self._websocket.get(status, 0) + 1

    def websocket_refusals(self) -> dict[int, int]:
        """Handshakes refused by a limit, by the status they got."""
        return dict(self._websocket)

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """Every counter by name."""
        return dict(self._counts)


def _ip(address: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@attrs.frozen
class AccessList:
    """``allow``/``deny`` networks: deny wins; an empty allow list allows everyone."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def from_cidrs(cls, allow: Iterable[str], deny: Iterable[str]) -> AccessList:
        return cls(
            tuple(ipaddress.ip_network(cidr, strict=False) for cidr in allow),
            tuple(ipaddress.ip_network(cidr, strict=False) for cidr in deny),
        )

    def permits(self, address: str) -> bool:
        """Whether a client at ``address`` is served (addresses without an IP only pass
        lists without ``allow``)."""
        if not self.allow and not self.deny:
            return True
        ip = _ip(address)
        if ip is None:
            return not self.allow
        if any(ip in network for network in self.deny if network.version == ip.version):
            return False
        if self.allow:
            return any(ip in network for network in self.allow if network.version == ip.version)
        return True


class HandshakeRate:
    """A token bucket per client address: ``burst`` handshakes at once, ``rate`` per second.

    At most ``max_tracked`` addresses are remembered; past that, addresses whose
    bucket has refilled are forgotten (they would pass anyway), then the oldest.
    """

    def __init__(self, clock, rate: float, burst: int, max_tracked: int = 100_000) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._max_tracked = max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, address: str) -> bool:
        """Take one handshake from ``address``'s bucket; False when it is empty."""
        if self.rate <= 0:
            return True
        now = self._clock.seconds()
        tokens, last = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[address] = (tokens, now)
        if len(self._buckets) > self._max_tracked:
            self._forget(now)
        return allowed

    def _forget(self, now: float) -> None:
        full = self.burst / self.rate
        self._buckets = {
            address: (tokens, last)
            for address, (tokens, last) in self._buckets.items()
            if now - last < full
        }
        while len(self._buckets) > self._max_tracked:
            del self._buckets[next(iter(self._buckets))]


class ConnectionGate:
    """The global connection limit: counts every listener's connections.

    Its ``limit`` is the smaller of the configured ``max_connections``
    (``configured``, 0: none) and the process's descriptor budget
    (``descriptor_budget``, from ``descriptor_limit`` descriptors, see
    :mod:`clbproxy.descriptors`; 0: none).  When full, every registered listener
    stops accepting until one connection ends.
    """

    def __init__(self, limit: int = 0, descriptor_budget: int = 0, descriptor_limit: int = 0):
        self.configured = limit
        self.descriptor_budget = descriptor_budget
        self.descriptor_limit = descriptor_limit
        self.count = 0
        self.stats = LimitStats()
        self._limiters: set[ConnectionLimiter] = set()

    @classmethod
    def for_process(cls, limit: int = 0, descriptor_limit: Optional[int] = None) -> ConnectionGate:
        """A gate for ``limit`` and the budget of ``descriptor_limit`` descriptors
        (default: this process's soft ``RLIMIT_NOFILE``, read now)."""
        if descriptor_limit is None:
            descriptor_limit = descriptors.process_descriptor_limit()
        return cls(limit, descriptors.connection_budget(descriptor_limit), descriptor_limit)

    @property
    def limit(self) -> int:
        return descriptors.effective_limit(self.configured, self.descriptor_budget)

    @property
    def by_descriptors(self) -> bool:
        """Whether the descriptor budget, not ``max_connections``, is the limit in force."""
        budget = self.descriptor_budget
        return bool(budget) and (not self.configured or budget < self.configured)

    @property
    def full(self) -> bool:
        limit = self.limit
        return bool(limit) and self.count >= limit

    def headroom(self) -> Optional[int]:
        """Connections that may still be accepted, or None when there is no limit."""
        limit = self.limit
        return max(0, limit - self.count) if limit else None

    def add(self, limiter: ConnectionLimiter) -> None:
        self._limiters.add(limiter)

    def remove(self, limiter: ConnectionLimiter) -> None:
        self._limiters.discard(limiter)

    def set_limit(self, limit: int) -> None:
        """A new configured ``max_connections`` (reload); the descriptor budget stays."""
        self.configured = limit
        self._update()

    def opened(self) -> None:
        self.count += 1
        if self.full and self.count == self.limit:
            self.stats.increment("accept_paused")
            if self.by_descriptors:
                log.warn(
                    "descriptor budget of {limit} connections reached (RLIMIT_NOFILE "
                    "{descriptors}): accepting paused",
                    limit=self.limit,
                    descriptors=self.descriptor_limit,
                )
            else:
                log.warn(
                    "global max_connections {limit} reached: accepting paused", limit=self.limit
                )
        self._update()

    def closed(self) -> None:
        self.count -= 1
        self._update()

    def _update(self) -> None:
        for limiter in list(self._limiters):
            limiter.update_accepting()


class CountedConnection(ProtocolWrapper):
    """One client connection, counted for the limits; ``over_ip_limit`` marks the extras."""

    over_ip_limit = False
    client_ip = ""
    counted_ip = False


class ProxiedConnection(CountedConnection):
    """A connection under the PROXY protocol, counted per address once its header is read.

    Twisted's PROXY wrapper makes the connection before it has read the header,
    so ``getPeer()`` then is the L4 balancer's address (twisted#12501).  The
    wrapper hands nothing on until the header is parsed, so the first bytes that
    reach this connection come with the real client address.
    """

    _addressed = False

    def dataReceived(self, data: bytes) -> None:
        if not self._addressed:
            self._addressed = True
            self.factory.count_address(self)
        self.wrappedProtocol.dataReceived(data)


class ConnectionLimiter(WrappingFactory):
    """Wraps a listener's factory: counts connections and pauses accepting when full.

    ``port`` is set once the listener listens (see :meth:`listening`).  It also
    keeps every live connection (``protocols``) for draining, whatever protocol
    (HTTP or WebSocket) currently handles it.  With ``proxy_protocol`` (the
    listener binds ``haproxy:``) a connection is counted against its address only
    once the PROXY header gave the real one.
    """

    protocol = CountedConnection

    def __init__(
        self,
        wrapped,
        gate: ConnectionGate,
        *,
        max_connections: int = 0,
        max_per_ip: int = 0,
        trusted: Optional[TrustedProxies] = None,
        stats: Optional[LimitStats] = None,
        proxy_protocol: bool = False,
    ) -> None:
        super().__init__(wrapped)
        if proxy_protocol:
            self.protocol = ProxiedConnection
        self.gate = gate
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.trusted = trusted if trusted is not None else TrustedProxies()
        self.stats = stats if stats is not None else LimitStats()
        self.port = None
        self._per_ip: dict[str, int] = {}
        self._paused = False
        gate.add(self)

    def configure(self, *, max_connections: int, max_per_ip: int, trusted: TrustedProxies) -> None:
        """New limits from a reload; connections already open are kept."""
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.trusted = trusted
        self.update_accepting()

    def listening(self, port) -> None:
        """The listener's port, to pause and resume accepting on.

        Twisted's port accepts up to ``numberAccepts`` connections each time it is
        readable (it grows that batch by 20 while connections keep coming), and
        pausing it in the middle of a batch does not end the batch: so before each
        batch the batch is cut to the connections the limits still allow, or a
        flood would overshoot them (and the descriptor budget).
        """
        self.port = port
        accept = getattr(port, "doRead", None)
        if accept is not None and hasattr(port, "numberAccepts"):

            def doRead():
                room = self.headroom()
                if room is not None:
                    port.numberAccepts = max(1, min(port.numberAccepts, room))
                return accept()

            port.doRead = doRead
        self.update_accepting()

    def headroom(self) -> Optional[int]:
        """Connections this listener may still accept, or None when nothing limits them."""
        rooms = [room for room in (self.gate.headroom(),) if room is not None]
        if self.max_connections:
            rooms.append(max(0, self.max_connections - len(self.protocols)))
        return min(rooms) if rooms else None

    def stopped(self) -> None:
        """The listener stopped listening: never touch its port again."""
        self.port = None
        self.gate.remove(self)

    @property
    def full(self) -> bool:
        return bool(self.max_connections) and len(self.protocols) >= self.max_connections

    def registerProtocol(self, p: CountedConnection) -> None:
        super().registerProtocol(p)
        if not isinstance(p, ProxiedConnection):
            self.count_address(p)
        if self.full and len(self.protocols) == self.max_connections:
            self.stats.increment("accept_paused")
            log.warn(
                "listener max_connections {limit} reached: accepting paused",
                limit=self.max_connections,
            )
        self.gate.opened()

    def count_address(self, p: CountedConnection) -> None:
        """Count ``p`` against its client address's ``max_connections_per_ip``."""
        peer = p.getPeer()
        p.client_ip = getattr(peer, "host", "") or ""
        if self.max_per_ip and p.client_ip not in self.trusted:
            count = self._per_ip.get(p.client_ip, 0) + 1
            self._per_ip[p.client_ip] = count
            p.over_ip_limit = count > self.max_per_ip
            p.counted_ip = True

    def unregisterProtocol(self, p: CountedConnection) -> None:
        super().unregisterProtocol(p)
        if p.counted_ip:
            count = self._per_ip.get(p.client_ip, 1) - 1
            if count > 0:
                self._per_ip[p.client_ip] = count
            else:
                self._per_ip.pop(p.client_ip, None)
        self.gate.closed()

    def update_accepting(self) -> None:
        """Stop or resume accepting, as the listener's and the global counts say."""
        port = self.port
        if port is None or not hasattr(port, "stopReading"):
            return
        if getattr(port, "disconnecting", False) or not getattr(port, "connected", True):
            return
        pause = self.full or self.gate.full
        if pause and not self._paused:
            self._paused = True
            port.stopReading()
        elif not pause and self._paused:
            self._paused = False
            port.startReading()


@attrs.frozen
class Refusal:
    """Why a request is answered by the proxy itself: status, detail and the counter."""

    status: int
    detail: str
    counter: str
    headers: tuple[tuple[str, str], ...] = ()


class Admission:
    """A listener's gatekeeper, asked once per request before it is routed on.

    Order: the listener's ``allow``/``deny`` (403), the rule's (403), the
    connection's per-address limit (429), then for WebSocket handshakes the proxy
    shutting down (503) and the per-address handshake rate (429).
    """

    def __init__(self, listener: ListenerConfig, clock, stats: LimitStats) -> None:
        self._clock = clock
        self.stats = stats
        self.draining = False
        self.rate: Optional[HandshakeRate] = None
        self.configure(listener)

    def configure(self, listener: ListenerConfig) -> None:
        """The listener's new settings (reload); handshake buckets survive if unchanged."""
        self.access = AccessList.from_cidrs(listener.allow, listener.deny)
        self._rule_access: dict[RuleConfig, AccessList] = {}
        rate, burst = listener.websocket_handshake_rate, listener.websocket_handshake_burst
        if not rate:
            self.rate = None
        elif self.rate is None or (self.rate.rate, self.rate.burst) != (rate, burst):
            self.rate = HandshakeRate(self._clock, rate, burst)

    def _rule_list(self, rule: RuleConfig) -> AccessList:
        access = self._rule_access.get(rule)
        if access is None:
            access = AccessList.from_cidrs(rule.allow, rule.deny)
            self._rule_access[rule] = access
        return access

    def check(
        self,
        client_ip: str,
        rule: Optional[RuleConfig],
        *,
        websocket: bool,
        over_ip_limit: bool = False,
    ) -> Optional[Refusal]:
        """The refusal for this request, or None when it may go on."""
        refusal = self._refusal(client_ip, rule, websocket, over_ip_limit)
        if refusal is not None:
            self.stats.increment(refusal.counter)
            if websocket:
                self.stats.refused_websocket(refusal.status)
        return refusal

    def _refusal(
        self, client_ip: str, rule: Optional[RuleConfig], websocket: bool, over_ip_limit: bool
    ) -> Optional[Refusal]:
        if not self.access.permits(client_ip):
            return Refusal(
                403, "your address is not allowed on this listener", "denied_by_listener"
            )
        if rule is not None and not self._rule_list(rule).permits(client_ip):
            return Refusal(403, "your address is not allowed here", "denied_by_rule")
        if over_ip_limit:
            return Refusal(
                429,
                "too many connections from your address",
                "refused_per_ip_connections",
                (("Retry-After", "1"),),
            )
        if websocket and self.draining:
            return Refusal(
                503, "the proxy is shutting down", "refused_draining", (("Retry-After", "1"),)
            )
        if websocket and self.rate is not None and not self.rate.allow(client_ip):
            return Refusal(
                429,
                "too many WebSocket handshakes from your address",
                "refused_handshake_rate",
                (("Retry-After", "1"),),
            )
        return None
