"""The proxy's live state as observers see it: listeners, connections, sessions, backends.

Metrics and the admin API read the same :class:`LiveState`; it reads the
listeners' session sets and limit counters, the runtime-controlled target
groups, a health view and the recent backend errors, and owns nothing on the
traffic path except two counters per connection (open and close, counted by
:func:`count_connections`).
"""

from __future__ import annotations

import collections
import weakref
from typing import Any, Mapping, Optional

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

from clbproxy.config import Config, ListenerConfig
from clbproxy.http2.connection import H2ServerConnection
from clbproxy.listener.limits import LimitStats
from clbproxy.net.transports import innermost_protocol
from clbproxy.observability import accesslog
from clbproxy.upstream.balancer import DRAIN, TargetGroup
from clbproxy.upstream.health.view import BackendStatus, Health, IHealthView, all_backends
from clbproxy.ws.closecodes import CloseReason
from clbproxy.ws.livecount import SessionSet
from clbproxy.ws.passthrough import is_relay_hop

#: The access events' namespace (every HTTP request's passes :class:`RecentErrors`).
_ACCESS = accesslog.NAMESPACE
#: The levels :class:`RecentErrors` keeps (a set lookup: comparing levels is two Python calls).
_WARN_OR_ABOVE = frozenset(level for level in LogLevel.iterconstants() if level >= LogLevel.warn)

#: Recent errors kept per backend.
RECENT_ERRORS = 5


class ListenerState:
    """One listener's live connections, WebSocket sessions and limit counters."""

    def __init__(
        self,
        config: ListenerConfig,
        sessions: Optional[set] = None,
        stats: Optional[LimitStats] = None,
    ) -> None:
        self.config = config
        #: The relay's live sessions (``RelayServerFactory.sessions``).
        self.sessions = sessions if sessions is not None else set()
        #: What the listener's limits and timeouts did (``ListenerService.stats``).
        self.stats = stats if stats is not None else LimitStats()
        self.connections_total = 0
        #: The live connections: the connection limiter's own table when it has one
        #: (see :func:`count_connections`), else a weak set kept here.
        self._channels: Any = weakref.WeakSet()

    @property
    def name(self) -> str:
        return self.config.name

    def connection_made(self, channel) -> None:
        self.connections_total += 1
        self._channels.add(channel)

    def connection_lost(self, channel) -> None:
        self._channels.discard(channel)

    def connections_active(self) -> int:
        """Open client connections: HTTP ones plus those handed to the WebSocket relay."""
        http = 0
        for protocol in list(self._channels):
            # The connection limiter (and TLS) wrap the protocol; twisted.web's protocol switcher
            # wraps the HTTPChannel, whose transport Autobahn sets to None when it takes
            # the connection over (or puts its own protocol in the limiter's wrapper).
            inner = innermost_protocol(protocol)
            channel = getattr(inner, "_channel", inner)
            if is_relay_hop(channel):
                continue
            if getattr(channel, "transport", None) is not None:
                http += 1
        return http + len(self.sessions)

    def http2_active(self) -> tuple[int, int]:
        """Open HTTP/2 connections and the streams in flight on them (read now)."""
        connections = streams = 0
        for protocol in list(self._channels):
            inner = innermost_protocol(protocol)
            if isinstance(inner, H2ServerConnection) and inner.transport is not None:
                connections += 1
                streams += len(inner.streams)
        return connections, streams

    def proxy_closes(self) -> dict[str, int]:
        """Sessions the proxy ended itself, by :class:`~clbproxy.ws.closecodes.CloseReason`."""
        counts = self.stats.snapshot()
        return {reason.value: counts[f"websocket_closes_{reason.value}"] for reason in CloseReason}

    def open_sessions(self) -> list:
        """Sessions whose client got its 101 and that have not ended."""
        return [s for s in list(self.sessions) if s.record.status == 101]

    def open_count(self) -> int:
        """How many :meth:`open_sessions` there are, without walking them when counted.

        The status page asks every two seconds while someone watches it; with a
        hundred thousand sessions a walk would hold the reactor for tens of
        milliseconds each time.  A relay's :class:`~clbproxy.ws.livecount.SessionSet`
        keeps the count.
        """
        sessions = self.sessions
        if isinstance(sessions, SessionSet):
            return sessions.open
        return len(self.open_sessions())

    def open_by_backend(self) -> dict[tuple[str, str], int]:
        """Open sessions per ``(group, backend address)``, counted (see :meth:`open_count`)."""
        sessions = self.sessions
        if isinstance(sessions, SessionSet):
            return {key: n for key, n in sessions.by_backend.items() if key[1] is not None}
        counts: dict[tuple[str, str], int] = {}
        for session in self.open_sessions():
            if session.backend_config is not None:
                key = (session.group.name, session.backend_config.address)
                counts[key] = counts.get(key, 0) + 1
        return counts


def count_connections(site, listener: ListenerState) -> None:
    """Make ``site``'s connections counted by ``listener``, at no cost per byte.

    An upgraded connection leaves twisted.web (Autobahn takes its transport), so
    from then on it is counted as a relay session.
    """
    build = site.buildProtocol
    live = getattr(site, "protocols", None)
    if isinstance(live, dict):
        # A WrappingFactory (the connection limiter) already keeps its live
        # connections: read that table instead of hooking every connection's end,
        # which would cost each open connection a closure and a weak reference.
        listener._channels = live

        def buildCounted(addr):
            protocol = build(addr)
            if protocol is not None:
                listener.connections_total += 1
            return protocol

        site.buildProtocol = buildCounted
        return

    def buildProtocol(addr):
        protocol = build(addr)
        if protocol is None:
            return None
        lost = protocol.connectionLost

        def connectionLost(reason) -> None:
            listener.connection_lost(protocol)
            lost(reason)

        protocol.connectionLost = connectionLost
        listener.connection_made(protocol)
        return protocol

    site.buildProtocol = buildProtocol


@implementer(ILogObserver)
class RecentErrors:
    """The last few warnings and errors logged about each backend.

    Observes every log event; keeps those at warn level or above that name a
    ``backend`` (and ``group``), and WebSocket handshakes a backend failed (5xx),
    each with the ``request_id`` of the request or session it was about (None
    when IDs are off), so an error on the status page can be found in the logs.
    """

    def __init__(self, keep: int = RECENT_ERRORS) -> None:
        self._errors: dict[tuple[Optional[str], str], collections.deque] = {}
        self._keep = keep

    def __call__(self, event: dict) -> None:
        backend = event.get("backend")
        if not backend or not isinstance(backend, str):
            return
        if event.get("log_namespace") == _ACCESS and "type" in event:  # is_access_event, inline
            if event.get("type") != "websocket" or event.get("status", 0) < 500:
                return
            message = f"WebSocket handshake answered {event['status']}"
        elif event.get("log_level") in _WARN_OR_ABOVE:
            reason, outcome = event.get("reason"), event.get("outcome")
            if isinstance(reason, str):
                message = f"{reason} ({outcome})" if isinstance(outcome, str) else reason
            else:
                message = formatEvent(event)
        else:
            return
        request_id = event.get("request_id")
        if not isinstance(request_id, str) or request_id == "-":
            request_id = None
        key = (event.get("group"), backend)
        errors = self._errors.setdefault(key, collections.deque(maxlen=self._keep))
        errors.append({"time": event.get("log_time"), "message": message, "request_id": request_id})

    def recent(self, group: str, backend: str) -> list[dict[str, Any]]:
        """Newest first."""
        found = list(self._errors.get((group, backend), ()))
        found.extend(self._errors.get((None, backend), ()))
        found.sort(key=lambda error: error["time"] or 0, reverse=True)
        return found[: self._keep]


class LiveState:
    """Everything the status page and metrics show, read at the time they ask."""

    def __init__(
        self,
        config: Config,
        groups: Mapping[str, TargetGroup],
        health: IHealthView,
        errors: Optional[RecentErrors] = None,
        clock=None,
        gate_stats: Optional[LimitStats] = None,
    ) -> None:
        self.config = config
        self.groups = groups
        self.health = health
        self.errors = errors if errors is not None else RecentErrors()
        #: The global connection gate's counters (``ProxyService.gate.stats``).
        self.gate_stats = gate_stats if gate_stats is not None else LimitStats()
        self.listeners: dict[str, ListenerState] = {}
        self._clock = clock
        self._started = clock.seconds() if clock is not None else None
        #: A fleet instance's :class:`~clbproxy.fleet.watch.FleetStatus` (None otherwise).
        self.fleet = None

    def add_listener(
        self,
        config: ListenerConfig,
        sessions: Optional[set] = None,
        stats: Optional[LimitStats] = None,
    ) -> ListenerState:
        state = ListenerState(config, sessions, stats)
        self.listeners[config.name] = state
        return state

    def rename_listener(self, old_name: str, config: ListenerConfig) -> None:
        """A reload kept listener ``old_name`` with ``config`` (its counts go on)."""
        state = self.listeners.pop(old_name, None)
        if state is not None:
            state.config = config
            self.listeners[config.name] = state

    def sessions_by_backend(self) -> collections.Counter:
        """Open WebSocket sessions per ``(group, backend address)``."""
        counts: collections.Counter = collections.Counter()
        for listener in self.listeners.values():
            counts.update(listener.open_by_backend())
        return counts

    def health_by_backend(self) -> dict[tuple[str, str], BackendStatus]:
        """The health view's record of every backend, by ``(group, address)``."""
        return {(h.group, h.address): h for h in all_backends(self.health)}

    def snapshot(self) -> dict[str, Any]:
        """The status page's JSON: listeners with rules, target groups with backends."""
        sessions = self.sessions_by_backend()
        health = self.health_by_backend()
        groups = []
        for name, group in self.groups.items():
            backends = []
            relieved: collections.Counter = collections.Counter()
            for (address, _), count in group.rebalancer.relieved.items():
                relieved[address] += count
            for control in group.controls():
                key = (name, control.address)
                record = health.get(key)
                live = sessions.get(key, 0)
                state = control.state.value
                if control.state is DRAIN and live == 0:
                    state = "drained"
                backends.append(
                    {
                        "address": control.address,
                        "weight": control.weight,
                        "configured_weight": control.configured_weight,
                        "state": state,
                        "health": record.health.value if record else Health.UNKNOWN.value,
                        "health_detail": record.detail if record else "",
                        "sessions": live,
                        "relieved": relieved[control.address],
                        "recent_errors": self.errors.recent(name, control.address),
                    }
                )
            groups.append(
                {
                    "name": name,
                    "policy": group.config.policy,
                    "rebalance": group.rebalancer.status(),
                    "backends": backends,
                }
            )
        listeners = [
            {
                "name": listener.name,
                "protocol": listener.config.protocol,
                "bind": listener.config.bind,
                "connections": listener.connections_active(),
                "connections_total": listener.connections_total,
                "sessions": listener.open_count(),
                "session_closes": listener.proxy_closes(),
                "rate_throttles": listener.stats["websocket_rate_throttles"],
                "http2": dict(zip(("connections", "streams"), listener.http2_active())),
                "rules": [
                    {
                        "host": rule.host,
                        "path": rule.path,
                        "label": accesslog.rule_label(rule.host, rule.path),
                        "target_group": rule.target_group,
                    }
                    for rule in listener.config.rules
                ],
            }
            for listener in self.listeners.values()
        ]
        uptime = None
        if self._clock is not None:
            uptime = self._clock.seconds() - self._started
        snapshot = {
            "config": self.config.path,
            "uptime": uptime,
            "listeners": listeners,
            "target_groups": groups,
        }
        if self.fleet is not None:
            now = self._clock.seconds() if self._clock is not None else 0.0
            snapshot["fleet"] = self.fleet.as_dict(now)
        return snapshot
