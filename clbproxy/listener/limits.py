"""Connection limits and access control: who may connect, how often, and how many at once.

Three layers, each answered the way nginx and HAProxy users expect:

- Connection counts (global ``max_connections``, a listener's ``max_connections``):
  when full, the listening socket stops accepting (new connections wait in the
  kernel's backlog) and accepting resumes as soon as a connection ends.  Nothing
  is refused and nothing crashes.  The global count is also held to the
  process's descriptor budget (:mod:`clbproxy.net.descriptors`), so running out of
  descriptors pauses accepting the same way instead of cutting new clients.
- Per client address: ``max_connections_per_ip`` (counted by client address: the
  TCP peer, or under ``haproxy:`` the PROXY header's source; addresses in
  ``trusted_proxies`` are exempt) closes a connection over the limit, without an
  answer, as soon as its address is known: at accept (it never becomes a
  connection of ours, so it holds no descriptor and no place in the global
  count), or right after its PROXY header, which must come within
  ``PROXY_HEADER_TIMEOUT``.  An answer (the 429 this was before) would keep the
  connection until the client sent a request, and an idle flood from one address
  then held every descriptor; HAProxy closes such connections the same way.
  ``websocket_handshake_rate``/``_burst`` (a token bucket per real client
  address) answers handshakes over the rate with 429.
- HTTP/2 streams in flight count as connections (:mod:`clbproxy.listener.streams`).
- ``allow``/``deny`` lists (CIDR) of the listener and of the rule: 403.  ``deny``
  wins over ``allow``; an empty ``allow`` allows every address.

Every refusal and pause is counted in a :class:`LimitStats`, which the metrics
exporter (:mod:`clbproxy.observability.metrics`) reads at scrape time.
"""

from __future__ import annotations

import collections
import ipaddress
from typing import Iterable, Optional, Union

import attrs
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from clbproxy.config import ListenerConfig, RuleConfig
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.listener.proxyheader import ProxyHeader, parsed_ip
from clbproxy.listener.streams import StreamCounting, StreamHolder
from clbproxy.net import descriptors
from clbproxy.net.transports import provide_like

log = Logger()

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: Seconds a connection to a PROXY-protocol listener (``haproxy:``) has to send
#: its whole PROXY header; then it is closed.  A balancer sends the header at
#: once, with the connection; until it arrives the connection's address is not
#: known, so it cannot be held to ``max_connections_per_ip``.
PROXY_HEADER_TIMEOUT = 5.0

#: Seconds over which the closes an attacker can cause in bulk (over the
#: per-address limit, no PROXY header) are logged as one line, not one each.
CLOSE_LOG_INTERVAL = 10.0

#: How a ``bind`` asks for the PROXY protocol (Twisted's ``haproxy:`` endpoint).
PROXY_PROTOCOL_PREFIX = "haproxy:"


def socket_bind(bind: str) -> str:
    """The endpoint of ``bind``'s socket: ``bind`` without ``haproxy:``.

    A PROXY-protocol listener's header is read by its :class:`ConnectionLimiter`
    (see :class:`ProxiedConnection`), not by Twisted's endpoint wrapper.
    """
    if bind.startswith(PROXY_PROTOCOL_PREFIX):
        return bind[len(PROXY_PROTOCOL_PREFIX) :]
    return bind


class LimitStats:
    """Named counters of what the limits did; ``snapshot()`` for the metrics exporter.

    ``accept_paused``: times accepting was paused at a connection limit;
    ``closed_per_ip_connections``: connections closed unanswered, over
    ``max_connections_per_ip``; ``closed_no_proxy_header``: connections closed
    because no valid PROXY header came in time; ``refused_handshake_rate`` (429);
    ``denied_by_listener``, ``denied_by_rule`` (403); ``refused_draining`` (503);
    ``header_timeouts`` (408 or close); ``websocket_idle_closes``;
    ``websocket_ping_timeouts``; ``websocket_closes_REASON``: sessions the proxy
    ended for a :class:`clbproxy.ws.closecodes.CloseReason` (``rate_limit``,
    ``lifetime``, ``rebalance``, ``drain``); ``websocket_rate_throttles``: times a
    hop was not read for a while, over its message or byte rate.
    ``websocket_refusals()``: the refusals above
    that answered a WebSocket handshake, by status (they are handshake outcomes too).
    ``refused_streams_*``: see :mod:`clbproxy.listener.streams`; ``http2_*``: what
    the HTTP/2 connections did (:class:`clbproxy.http2.connection.H2ServerConnection`).
    """

    NAMES = (
        "accept_paused",
        "closed_per_ip_connections",
        "closed_no_proxy_header",
        "refused_handshake_rate",
        "denied_by_listener",
        "denied_by_rule",
        "refused_draining",
        "header_timeouts",
        "websocket_idle_closes",
        "websocket_ping_timeouts",
        "websocket_closes_rate_limit",
        "websocket_closes_lifetime",
        "websocket_closes_rebalance",
        "websocket_closes_drain",
        "websocket_rate_throttles",
        "refused_streams_per_ip",
        "refused_streams_max_connections",
        "http2_connections",
        "http2_streams",
        "http2_streams_refused",
        "http2_streams_reset_by_client",
        "http2_streams_reset_by_proxy",
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
        ip = parsed_ip(address)
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
    :mod:`clbproxy.net.descriptors`; 0: none).  When full, every registered listener
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


class CloseLog:
    """Logs one kind of close at most once per ``interval``, then how many more came.

    The closes a client can cause in bulk (a flood over the per-address limit,
    connections that never send a PROXY header) would otherwise write a line
    each, and the log would become the next thing the flood fills.  The first
    close logs at once; the ones in the following ``interval`` are counted and
    summed up in one line at its end, for as long as they keep coming.
    """

    #: Addresses told apart in one summary; more only add to the total.
    MAX_ADDRESSES = 1000

    def __init__(self, clock, first: str, more: str, interval: float = CLOSE_LOG_INTERVAL):
        self._clock = clock
        self._first = first
        self._more = more
        self.interval = interval
        self._counts: collections.Counter[str] = collections.Counter()
        self._total = 0
        self._fields: dict = {}
        self._call = None

    def closed(self, client: str, **fields) -> None:
        """One close of ``client``'s connection; ``fields`` fill in the messages."""
        self._fields = fields
        if self._call is None:
            log.info(self._first, client=client, interval=self.interval, **fields)
            self._call = self._clock.callLater(self.interval, self._summarise)
            return
        self._total += 1
        if client in self._counts or len(self._counts) < self.MAX_ADDRESSES:
            self._counts[client] += 1

    def _summarise(self) -> None:
        self._call = None
        if not self._total:
            return
        client, most = self._counts.most_common(1)[0]
        log.info(
            self._more,
            count=self._total,
            addresses=len(self._counts),
            client=client,
            most=most,
            interval=self.interval,
            **self._fields,
        )
        self._counts.clear()
        self._total = 0
        self._call = self._clock.callLater(self.interval, self._summarise)

    def stop(self) -> None:
        """Forget what is counted and stop the timer (the listener stopped)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._counts.clear()
        self._total = 0


class CountedConnection(StreamHolder, ProtocolWrapper):
    """One client connection, counted for the limits (``client_ip``: the address counted).

    ``started``: whether the listener's protocol has the connection (false only
    while a PROXY-protocol connection waits for its header).
    """

    client_ip = ""
    counted_ip = False
    started = True

    def makeConnection(self, transport) -> None:
        # ProtocolWrapper.makeConnection, its interface declaration shared (see provide_like).
        provide_like(self, transport)
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(self)


class ProxiedConnection(CountedConnection):
    """A connection to a PROXY-protocol listener: reads the header, then counts its source.

    The limiter reads the header itself, in front of everything else, instead
    of Twisted's ``haproxy:`` wrapper: that wrapper says nothing when the header
    ends, and it makes the connection before it has read the header, so
    ``getPeer()`` then is the L4 balancer's address (twisted#12501).  Here the
    connection is made for the listener (TLS, HTTP) only once the header named
    the client, and only if that client is within ``max_connections_per_ip``;
    the bytes after the header go on to it.  No complete header within the
    limiter's ``proxy_header_timeout``, or an invalid one: the connection closes.
    """

    _info = None
    _header: Optional[ProxyHeader] = None
    _header_call = None
    started = False

    def makeConnection(self, transport) -> None:
        # ProtocolWrapper.makeConnection, but the listener's protocol waits for the header.
        provide_like(self, transport)
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self._header = ProxyHeader()
        self._header_call = self.factory.clock.callLater(
            self.factory.proxy_header_timeout, self._header_timed_out
        )

    def dataReceived(self, data: bytes) -> None:
        if self._info is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._header is None:
            return  # closing
        try:
            info, remaining = self._header.feed(data)
        except InvalidProxyHeader:
            self._refuse("an invalid PROXY header")
            return
        if info is None:
            return
        self._info = info
        self._header = None
        self._cancel_header_timer()
        if not self.factory.admit(self):
            self.transport.abortConnection()
            return
        self.started = True
        self.wrappedProtocol.makeConnection(self)
        if remaining:
            self.wrappedProtocol.dataReceived(remaining)

    def _header_timed_out(self) -> None:
        self._header_call = None
        self._refuse(f"no PROXY header within {self.factory.proxy_header_timeout:g} s")

    def _refuse(self, reason: str) -> None:
        self._header = None
        self._cancel_header_timer()
        self.factory.no_proxy_header(self, reason)
        self.transport.abortConnection()

    def _cancel_header_timer(self) -> None:
        call, self._header_call = self._header_call, None
        if call is not None and call.active():
            call.cancel()

    def connectionLost(self, reason) -> None:
        self._header = None
        self._cancel_header_timer()
        self.factory.unregisterProtocol(self)
        if self.started:
            self.wrappedProtocol.connectionLost(reason)
        self.wrappedProtocol = None

    def getPeer(self):
        if self._info is not None and self._info.source is not None:
            return self._info.source
        return self.transport.getPeer()

    def getHost(self):
        if self._info is not None and self._info.destination is not None:
            return self._info.destination
        return self.transport.getHost()


class ConnectionLimiter(StreamCounting, WrappingFactory):
    """Wraps a listener's factory: counts connections, pauses accepting when full,
    and closes connections over ``max_connections_per_ip``.

    ``port`` is set once the listener listens (see :meth:`listening`).  It also
    keeps every live connection (``protocols``) for draining, whatever protocol
    (HTTP or WebSocket) currently handles it.  With ``proxy_protocol`` (the
    listener binds ``haproxy:``) it reads the PROXY header itself (see
    :class:`ProxiedConnection`), and a connection is counted against its address
    once the header gave the real one.  ``clock`` runs the PROXY header timeout
    and the log of closes.
    """

    protocol = CountedConnection

    def __init__(
        self,
        wrapped,
        gate: ConnectionGate,
        *,
        clock,
        max_connections: int = 0,
        max_per_ip: int = 0,
        trusted: Optional[TrustedProxies] = None,
        stats: Optional[LimitStats] = None,
        proxy_protocol: bool = False,
        proxy_header_timeout: float = PROXY_HEADER_TIMEOUT,
    ) -> None:
        super().__init__(wrapped)
        if proxy_protocol:
            self.protocol = ProxiedConnection
        self.gate = gate
        self.clock = clock
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.trusted = trusted if trusted is not None else TrustedProxies()
        self.stats = stats if stats is not None else LimitStats()
        self.proxy_header_timeout = proxy_header_timeout
        self.port = None
        self._per_ip: dict[str, int] = {}
        self._paused = False
        self._over_limit_log = CloseLog(
            clock,
            "{client}: connection closed, over max_connections_per_ip {limit} (more such "
            "closes are counted and logged every {interval:g} s)",
            "{count} more connection(s) closed over max_connections_per_ip {limit} in "
            "{interval:g} s, from {addresses} address(es), most from {client} ({most})",
        )
        self._stream_log = CloseLog(
            clock,
            "{client}: HTTP/2 stream refused, over {limit} (more such refusals are counted "
            "and logged every {interval:g} s)",
            "{count} more HTTP/2 stream(s) refused over {limit} in {interval:g} s, from "
            "{addresses} address(es), most from {client} ({most})",
        )
        self._no_header_log = CloseLog(
            clock,
            "{client}: connection closed: {reason} (more such closes are counted and logged "
            "every {interval:g} s)",
            "{count} more connection(s) closed without a valid PROXY header in {interval:g} s, "
            "from {addresses} address(es), most from {client} ({most})",
        )
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
            rooms.append(max(0, self.max_connections - self.count))
        return min(rooms) if rooms else None

    def stopped(self) -> None:
        """The listener stopped listening: never touch its port again."""
        self.port = None
        self.gate.remove(self)
        self._over_limit_log.stop()
        self._no_header_log.stop()
        self._stream_log.stop()

    @property
    def count(self) -> int:
        """Connections counted: the live ones and their extra HTTP/2 streams."""
        return len(self.protocols) + self.extra_streams

    @property
    def full(self) -> bool:
        return bool(self.max_connections) and self.count >= self.max_connections

    def buildProtocol(self, addr):
        """The connection's protocol, or None for one over ``max_connections_per_ip``.

        Twisted's port closes the socket of a connection it gets no protocol for,
        at once: the connection never becomes one of ours (no count, no
        timer, no answer).  Under the PROXY protocol ``addr`` is the balancer's,
        so that check waits for the header (:meth:`admit`).
        """
        if self.protocol is not ProxiedConnection:
            client = getattr(addr, "host", "") or ""
            if self._over_limit(client):
                self._closed_over_limit(client)
                return None
        return super().buildProtocol(addr)

    def registerProtocol(self, p: CountedConnection) -> None:
        super().registerProtocol(p)
        if not isinstance(p, ProxiedConnection):
            self._count(p, getattr(p.getPeer(), "host", "") or "")
        if self.full and self.count == self.max_connections:
            self.stats.increment("accept_paused")
            log.warn(
                "listener max_connections {limit} reached: accepting paused",
                limit=self.max_connections,
            )
        self._gate_moved(+1)

    def admit(self, p: ProxiedConnection) -> bool:
        """Count ``p`` against the address its PROXY header named; False when that
        address is over ``max_connections_per_ip`` (``p`` is then to be closed)."""
        client = getattr(p.getPeer(), "host", "") or ""
        if self._over_limit(client):
            self._closed_over_limit(client)
            return False
        self._count(p, client)
        return True

    def no_proxy_header(self, p: ProxiedConnection, reason: str) -> None:
        """``p`` closes without a valid PROXY header: counted, and logged (:class:`CloseLog`)."""
        self.stats.increment("closed_no_proxy_header")
        self._no_header_log.closed(getattr(p.getPeer(), "host", "") or "-", reason=reason)

    def _over_limit(self, client: str) -> bool:
        return (
            bool(self.max_per_ip)
            and self._per_ip.get(client, 0) >= self.max_per_ip
            and client not in self.trusted
        )

    def _closed_over_limit(self, client: str) -> None:
        self.stats.increment("closed_per_ip_connections")
        self._over_limit_log.closed(client or "-", limit=self.max_per_ip)

    def _count(self, p: CountedConnection, client: str) -> None:
        p.client_ip = client
        if self.max_per_ip and client not in self.trusted:
            self._per_ip[client] = self._per_ip.get(client, 0) + 1
            p.counted_ip = True

    def unregisterProtocol(self, p: CountedConnection) -> None:
        self.release_streams(p)
        super().unregisterProtocol(p)
        if p.counted_ip:
            self._uncount_ip(p.client_ip)
        self._gate_moved(-1)

    def _uncount_ip(self, client: str) -> None:
        count = self._per_ip.get(client, 1) - 1
        if count > 0:
            self._per_ip[client] = count
        else:
            self._per_ip.pop(client, None)

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

    Order: the listener's ``allow``/``deny`` (403), the rule's (403), then for
    WebSocket handshakes the proxy shutting down (503) and the per-address
    handshake rate (429).  (``max_connections_per_ip`` is the
    :class:`ConnectionLimiter`'s: a connection over it never gets a request in.)
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
        #: No address list on the listener: a request under a rule without one is
        #: refused only if it is a handshake (:meth:`check`'s shortcut).
        self._open = not (listener.allow or listener.deny)
        #: Each rule's address list, by ``id(rule)``: hashing a frozen rule walks all its
        #: fields (0.3 µs a request); the rule is kept beside its list, so the id stays its.
        self._rule_access: dict[int, tuple[RuleConfig, AccessList]] = {}
        rate, burst = listener.websocket_handshake_rate, listener.websocket_handshake_burst
        if not rate:
            self.rate = None
        elif self.rate is None or (self.rate.rate, self.rate.burst) != (rate, burst):
            self.rate = HandshakeRate(self._clock, rate, burst)

    def _rule_list(self, rule: RuleConfig) -> AccessList:
        entry = self._rule_access.get(id(rule))
        if entry is None:
            access = AccessList.from_cidrs(rule.allow, rule.deny)
            entry = self._rule_access[id(rule)] = (rule, access)
        return entry[1]

    def check(
        self,
        client_ip: str,
        rule: Optional[RuleConfig],
        *,
        websocket: bool,
    ) -> Optional[Refusal]:
        """The refusal for this request, or None when it may go on."""
        if self._open and (rule is None or not (rule.allow or rule.deny)):
            # No address list applies: only a handshake may still be refused.
            if not websocket or (not self.draining and self.rate is None):
                return None
        refusal = self._refusal(client_ip, rule, websocket)
        if refusal is not None:
            self.stats.increment(refusal.counter)
            if websocket:
                self.stats.refused_websocket(refusal.status)
        return refusal

    def _refusal(
        self, client_ip: str, rule: Optional[RuleConfig], websocket: bool
    ) -> Optional[Refusal]:
        if not self.access.permits(client_ip):
            return Refusal(
                403, "your address is not allowed on this listener", "denied_by_listener"
            )
        if rule is not None and not self._rule_list(rule).permits(client_ip):
            return Refusal(403, "your address is not allowed here", "denied_by_rule")
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
