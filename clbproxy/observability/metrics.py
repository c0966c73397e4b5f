"""Prometheus metrics, in a registry owned by the process (never the global one).

Counters of finished work come from the access events (:mod:`clbproxy.observability.accesslog`),
which :class:`Metrics` observes; gauges and the traffic of sessions still open
are read from :class:`~clbproxy.observability.livestate.LiveState` at scrape time, so nothing
is counted per message on the traffic path.  Message and byte counters are the
finished sessions' totals plus the open sessions' counts so far, so they grow
while a long session runs.  What the limits and timeouts did (refusals, accept
pauses, timeouts) is read from each listener's
:class:`~clbproxy.listener.limits.LimitStats` and the global gate's; a WebSocket
handshake a limit refused is also a handshake outcome (the listener logs it as
an HTTP request, so its access event does not say it was one).

Directions: ``in`` is client -> backend, ``out`` backend -> client.
"""

from __future__ import annotations

import collections
import time
from bisect import bisect_left
from typing import Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from twisted.logger import ILogObserver
from zope.interface import implementer

from clbproxy.observability import accesslog
from clbproxy.observability.livestate import LiveState
from clbproxy.observability.tally import METRIC_BOUNDS_MS, METRIC_BUCKETS_S, RequestTally
from clbproxy.upstream.balancer import DRAIN, MAINT, READY
from clbproxy.upstream.health.view import HEALTH_STATES, Health

#: Latency buckets (seconds) for handshakes and HTTP responses.
LATENCY_BUCKETS = METRIC_BUCKETS_S
#: Their ``le`` labels, ``+Inf`` last.
_LE = tuple(floatToGoString(bound) for bound in (*LATENCY_BUCKETS, float("inf")))

#: ``LimitStats`` refusal counters as ``(reason label, status label)``; ``none``: the
#: connection was closed without an answer.
LIMIT_REFUSALS = {
    "denied_by_listener": ("listener_deny", "403"),
    "denied_by_rule": ("rule_deny", "403"),
    "closed_per_ip_connections": ("per_ip_closed", "none"),
    "closed_no_proxy_header": ("no_proxy_header", "none"),
    "refused_handshake_rate": ("handshake_rate", "429"),
    "refused_draining": ("shutting_down", "503"),
    "refused_streams_per_ip": ("per_ip_stream_refused", "none"),
    "refused_streams_max_connections": ("max_connections_stream_refused", "none"),
}

#: ``LimitStats`` HTTP/2 stream reset counters as the ``kind`` label.
HTTP2_RESETS = {
    "http2_streams_refused": "refused",
    "http2_streams_reset_by_client": "client",
    "http2_streams_reset_by_proxy": "proxy",
}

#: ``LimitStats`` WebSocket timeout counters as the ``kind`` label.
WEBSOCKET_TIMEOUTS = {"websocket_idle_closes": "idle", "websocket_ping_timeouts": "ping"}


def _label(value: object) -> str:
    return "-" if value is None else str(value)


def _created_series() -> bool:
    """Whether ``_created`` samples are exposed (``prometheus_client``'s switch)."""
    return getattr(prometheus_metrics, "_use_created", True)


class _RequestCounter(Collector):
    """``clbproxy_http_requests``: the tally's totals by listener, backend and status."""

    def __init__(self, tally: RequestTally) -> None:
        self.tally = tally

    def collect(self) -> Iterator:
        self.tally.fold()
        family = CounterMetricFamily(
            "clbproxy_http_requests",
            "HTTP requests answered, by listener, backend and status.",
            labels=["listener", "backend", "status"],
        )
        created = _created_series()
        for labels, (count, when) in self.tally.totals.requests.items():
            family.add_metric(labels, count, created=when if created else None)
        yield family


class _ResponseHistogram(Collector):
    """``clbproxy_http_response_seconds``: the tally's response times, by listener."""

    def __init__(self, tally: RequestTally) -> None:
        self.tally = tally

    def collect(self) -> Iterator:
        self.tally.fold()
        yield histogram_family(
            "clbproxy_http_response_seconds",
            "Time from a request to its backend's response headers.",
            "listener",
            self.tally.totals.responses,
        )


class _Counts(Collector):
    """A Prometheus counter family as plain integers by label values (``inc``)."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        #: ``[count, created]`` by label values.
        self.values: dict[tuple[str, ...], list] = {}

    def inc(self, labels: tuple[str, ...]) -> None:
        value = self.values.get(labels)
        if value is None:
            self.values[labels] = [1, time.time()]
        else:
            value[0] += 1

    def collect(self) -> Iterator:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        created = _created_series()
        for labels, (count, when) in self.values.items():
            family.add_metric(labels, count, created=when if created else None)
        yield family


class _Latency(Collector):
    """A Prometheus histogram family (:data:`LATENCY_BUCKETS`) of times in ms, by one label."""

    def __init__(self, name: str, doc: str, label: str) -> None:
        self.name = name
        self.doc = doc
        self.label = label
        #: ``[counts per bucket, sum in seconds, created]`` by label value.
        self.values: dict[str, list] = {}

    def observe(self, label: str, ms: float) -> None:
        value = self.values.get(label)
        if value is None:
            value = self.values[label] = [[0] * (len(METRIC_BOUNDS_MS) + 1), 0.0, time.time()]
        value[0][bisect_left(METRIC_BOUNDS_MS, ms)] += 1
        value[1] += ms / 1000

    def collect(self) -> Iterator:
        yield histogram_family(self.name, self.doc, self.label, self.values)


def histogram_family(name: str, doc: str, label: str, values: dict[str, list]) -> Metric:
    """A histogram family from ``[counts per bucket, sum (s), created]`` by ``label``'s value.

    The samples ``prometheus_client``'s ``Histogram`` exposes, in its order:
    cumulative ``_bucket`` counts by ``le``, ``_count``, ``_sum``, ``_created``.
    """
    family = Metric(name, doc, "histogram")
    created = _created_series()
    for value, (buckets, seconds, when) in values.items():
        total = 0
        for bound, count in zip(_LE, buckets):
            total += count
            family.add_sample(f"{name}_bucket", {label: value, "le": bound}, total)
        family.add_sample(f"{name}_count", {label: value}, total)
        family.add_sample(f"{name}_sum", {label: value}, seconds)
        if created:
            family.add_sample(f"{name}_created", {label: value}, when)
    return family


@implementer(ILogObserver)
class Metrics:
    """Every clbproxy metric, registered in ``registry``; observe access events with it.

    HTTP requests are counted by ``tally`` (shared with the status page's
    series, :mod:`clbproxy.observability.tally`), whose totals
    ``http_requests`` and ``http_response`` expose at scrape time.
    """

    def __init__(
        self, registry: CollectorRegistry, live: LiveState, tally: Optional[RequestTally] = None
    ) -> None:
        self.registry = registry
        self.live = live
        self.tally = tally if tally is not None else RequestTally()
        self.http_requests = _RequestCounter(self.tally)
        registry.register(self.http_requests)
        self.http_response = _ResponseHistogram(self.tally)
        registry.register(self.http_response)
        # The session metrics are plain integers, exposed at scrape time: a
        # session's end counts in five of them (prometheus_client's children take
        # a lock and several calls each, about 6 µs a session).
        self.handshake_latency = _Latency(
            "clbproxy_websocket_handshake_seconds",
            "Time from a client's upgrade request to the answer (backend handshake included).",
            "listener",
        )
        self.sessions = _Counts(
            "clbproxy_websocket_sessions",
            "WebSocket sessions opened (and since ended), by listener and backend.",
            ("listener", "group", "backend"),
        )
        self.closes = _Counts(
            "clbproxy_websocket_closes",
            "How WebSocket sessions' hops ended: the close code each side sent "
            "(1006: connection lost without a Close, none: a Close without a code).",
            ("listener", "side", "code"),
        )
        self.closed_first = _Counts(
            "clbproxy_websocket_closed_first",
            "WebSocket sessions by the side that ended first.",
            ("listener", "side"),
        )
        for family in (self.handshake_latency, self.sessions, self.closes, self.closed_first):
            registry.register(family)
        self.reload_metrics = self.register_reload_metrics(registry)
        self.finished: collections.Counter = collections.Counter()
        registry.register(_LiveCollector(live, self.finished))

    @staticmethod
    def register_reload_metrics(registry: CollectorRegistry) -> tuple[Counter, Gauge, Gauge]:
        """The reload counter and gauges (a worker supervisor has its own, too)."""
        return (
            Counter(
                "clbproxy_config_reloads",
                "Configuration reloads by result (success or failure).",
                ["result"],
                registry=registry,
            ),
            Gauge(
                "clbproxy_config_last_reload_successful",
                "1 if the last configuration reload succeeded, 0 if it failed.",
                registry=registry,
            ),
            Gauge(
                "clbproxy_config_last_reload_timestamp_seconds",
                "When the configuration was last reloaded (either result).",
                registry=registry,
            ),
        )

    @staticmethod
    def count_reload(
        metrics: tuple[Counter, Gauge, Gauge], ok: bool, when: Optional[float] = None
    ) -> None:
        """Count one reload in metrics made by :meth:`register_reload_metrics`."""
        reloads, last, last_time = metrics
        reloads.labels("success" if ok else "failure").inc()
        last.set(1 if ok else 0)
        if when is None:
            last_time.set_to_current_time()
        else:
            last_time.set(when)

    def config_reloaded(self, ok: bool, when: Optional[float] = None) -> None:
        """Count a configuration reload (the lifecycle code calls this)."""
        self.count_reload(self.reload_metrics, ok, when)

    def __call__(self, event: dict) -> None:
        if accesslog.is_access_event(event):
            self.count(event)

    def count(self, event: dict) -> None:
        """Count one access event (what calling this object does, without the namespace check)."""
        if event["type"] == "http":
            self.tally.count(event)
        else:
            self._session(_label(event.get("listener")), event)

    def count_session(self, event: dict) -> None:
        """Count one WebSocket handshake's or session's access event."""
        self._session(_label(event.get("listener")), event)

    def _session(self, listener: str, event: dict) -> None:
        status = event["status"]
        finished = self.finished
        finished[("handshakes", listener, str(status))] += 1
        handshake_ms = event.get("handshake_ms")
        if handshake_ms is not None and event.get("backend") is not None:
            self.handshake_latency.observe(listener, handshake_ms)
        if status != 101:
            return
        group = event.get("group")  # _label(...), inline here and below
        self.sessions.inc((listener, "-" if group is None else str(group), event["backend"]))
        closes = self.closes
        code = event.get("client_close_code")
        closes.inc((listener, "client", "none" if code is None else str(code)))
        code = event.get("backend_close_code")
        closes.inc((listener, "backend", "none" if code is None else str(code)))
        side = event.get("closed_by")
        self.closed_first.inc((listener, "-" if side is None else str(side)))
        # Messages and bytes each way (in: client to backend), no loop.
        finished[("messages", listener, "in")] += event.get("messages_in") or 0
        finished[("bytes", listener, "in")] += event.get("bytes_in") or 0
        finished[("messages", listener, "out")] += event.get("messages_out") or 0
        finished[("bytes", listener, "out")] += event.get("bytes_out") or 0


class _LiveCollector(Collector):
    """Metrics read from the live state at scrape time."""

    def __init__(self, live: LiveState, finished: collections.Counter) -> None:
        self._live = live
        self._finished = finished

    def collect(self) -> Iterator:
        live = self._live
        connections = GaugeMetricFamily(
            "clbproxy_connections_active", "Open client connections.", labels=["listener"]
        )
        connections_total = CounterMetricFamily(
            "clbproxy_connections", "Client connections accepted.", labels=["listener"]
        )
        handshakes = CounterMetricFamily(
            "clbproxy_websocket_handshakes",
            "WebSocket handshakes by outcome (the status the client got; 101 is success), "
            "those refused by a limit included.",
            labels=["listener", "status"],
        )
        sessions = GaugeMetricFamily(
            "clbproxy_websocket_sessions_active",
            "Open WebSocket sessions.",
            labels=["listener", "group", "backend"],
        )
        messages = CounterMetricFamily(
            "clbproxy_websocket_messages",
            "WebSocket messages relayed (in: client to backend, out: backend to client).",
            labels=["listener", "direction"],
        )
        octets = CounterMetricFamily(
            "clbproxy_websocket_bytes",
            "WebSocket bytes on the client hop's wire after the handshake, by direction.",
            labels=["listener", "direction"],
        )
        outcomes: collections.Counter = collections.Counter()
        for (kind, name, status), count in self._finished.items():
            if kind == "handshakes":
                outcomes[name, status] += count
        for name, listener in live.listeners.items():
            for status, count in listener.stats.websocket_refusals().items():
                outcomes[name, str(status)] += count
        for (name, status), count in sorted(outcomes.items()):
            handshakes.add_metric([name, status], count)
        for name, listener in live.listeners.items():
            connections.add_metric([name], listener.connections_active())
            connections_total.add_metric([name], listener.connections_total)
            counts: collections.Counter = collections.Counter()
            per_backend: collections.Counter = collections.Counter()
            for session in listener.open_sessions():
                front, backend = session.front, session.backend
                counts["messages", "in"] += front.messages_in
                counts["messages", "out"] += backend.messages_in if backend else 0
                counts["bytes", "in"] += front.octets_in
                counts["bytes", "out"] += front.octets_out
                address = session.backend_config.address if session.backend_config else "-"
                per_backend[session.group.name, address] += 1
            for (group, address), count in sorted(per_backend.items()):
                sessions.add_metric([name, group, address], count)
            for direction in ("in", "out"):
                messages.add_metric(
                    [name, direction],
                    self._finished["messages", name, direction] + counts["messages", direction],
                )
                octets.add_metric(
                    [name, direction],
                    self._finished["bytes", name, direction] + counts["bytes", direction],
                )
        yield from (connections, connections_total, handshakes, sessions, messages, octets)
        yield from self._limits()
        yield from self._backends()

    def _limits(self) -> Iterator:
        live = self._live
        refusals = CounterMetricFamily(
            "clbproxy_limit_refusals",
            "Requests and WebSocket handshakes answered by a limit or access list, and "
            "connections closed unanswered (status none), by reason (listener_deny, rule_deny, "
            "per_ip_closed: over max_connections_per_ip, no_proxy_header, handshake_rate, "
            "shutting_down, per_ip_stream_refused and max_connections_stream_refused: an "
            "HTTP/2 stream refused with REFUSED_STREAM over max_connections_per_ip or a "
            "connection count).",
            labels=["listener", "reason", "status"],
        )
        paused = CounterMetricFamily(
            "clbproxy_accept_paused",
            "Times a listener stopped accepting at its max_connections.",
            labels=["listener"],
        )
        global_paused = CounterMetricFamily(
            "clbproxy_global_accept_paused",
            "Times every listener stopped accepting at the global max_connections or at the "
            "descriptor budget of RLIMIT_NOFILE.",
        )
        http_timeouts = CounterMetricFamily(
            "clbproxy_http_timeouts",
            "Client connections closed because the request headers did not arrive within "
            "header_timeout (408, or a plain close when nothing came).",
            labels=["listener"],
        )
        websocket_timeouts = CounterMetricFamily(
            "clbproxy_websocket_timeouts",
            "WebSocket sessions ended by a timeout: idle (websocket_idle_timeout) or ping "
            "(a hop did not answer a ping within websocket_ping_timeout).",
            labels=["listener", "kind"],
        )
        proxy_closes = CounterMetricFamily(
            "clbproxy_websocket_proxy_closes",
            "WebSocket sessions the proxy ended itself, by reason: rate_limit (a hop over "
            "its rate, with websocket_rate_action = close), lifetime, rebalance, drain.",
            labels=["listener", "reason"],
        )
        throttles = CounterMetricFamily(
            "clbproxy_websocket_rate_throttles",
            "Times a WebSocket hop was not read for a while, over its message or byte rate.",
            labels=["listener"],
        )
        h2_connections = CounterMetricFamily(
            "clbproxy_http2_connections",
            "Client connections that chose HTTP/2 (ALPN h2).",
            labels=["listener"],
        )
        h2_active = GaugeMetricFamily(
            "clbproxy_http2_connections_active", "Open HTTP/2 connections.", labels=["listener"]
        )
        h2_streams = CounterMetricFamily(
            "clbproxy_http2_streams",
            "HTTP/2 streams (requests) clients opened, those refused or reset included.",
            labels=["listener"],
        )
        h2_streams_active = GaugeMetricFamily(
            "clbproxy_http2_streams_active",
            "HTTP/2 streams in flight (a request whose response has not ended).",
            labels=["listener"],
        )
        h2_resets = CounterMetricFamily(
            "clbproxy_http2_stream_resets",
            "HTTP/2 streams ended by RST_STREAM, by kind: refused (REFUSED_STREAM: over a "
            "limit or draining, never processed), client (the client's RST_STREAM), proxy "
            "(the proxy's, for a malformed request, a stall or a backend failing mid-response).",
            labels=["listener", "kind"],
        )
        for name, listener in live.listeners.items():
            counts = listener.stats.snapshot()
            h2_connections.add_metric([name], counts["http2_connections"])
            h2_streams.add_metric([name], counts["http2_streams"])
            for counter, kind in HTTP2_RESETS.items():
                h2_resets.add_metric([name, kind], counts[counter])
            connections_open, streams_open = listener.http2_active()
            h2_active.add_metric([name], connections_open)
            h2_streams_active.add_metric([name], streams_open)
            for counter, (reason, status) in LIMIT_REFUSALS.items():
                refusals.add_metric([name, reason, status], counts[counter])
            paused.add_metric([name], counts["accept_paused"])
            http_timeouts.add_metric([name], counts["header_timeouts"])
            for counter, kind in WEBSOCKET_TIMEOUTS.items():
                websocket_timeouts.add_metric([name, kind], counts[counter])
            for reason, count in listener.proxy_closes().items():
                proxy_closes.add_metric([name, reason], count)
            throttles.add_metric([name], counts["websocket_rate_throttles"])
        global_paused.add_metric([], live.gate_stats["accept_paused"])
        yield from (refusals, paused, global_paused, http_timeouts, websocket_timeouts)
        yield from (proxy_closes, throttles)
        yield from (h2_connections, h2_active, h2_streams, h2_streams_active, h2_resets)

    def _backends(self) -> Iterator:
        live = self._live
        health = GaugeMetricFamily(
            "clbproxy_backend_health",
            "1 for a backend's current health state (healthy, unhealthy, unknown).",
            labels=["group", "backend", "state"],
        )
        admin = GaugeMetricFamily(
            "clbproxy_backend_admin_state",
            "1 for a backend's runtime state (ready, drain, maint).",
            labels=["group", "backend", "state"],
        )
        weight = GaugeMetricFamily(
            "clbproxy_backend_weight", "A backend's current weight.", labels=["group", "backend"]
        )
        in_flight = GaugeMetricFamily(
            "clbproxy_backend_in_flight",
            "Open WebSocket sessions plus HTTP requests under way on a backend "
            "(the load least_conn and max_conns count).",
            labels=["group", "backend"],
        )
        sent = CounterMetricFamily(
            "clbproxy_backend_sent",
            "WebSocket sessions and HTTP requests sent to a backend (each attempt, retries "
            "included).",
            labels=["group", "backend"],
        )
        relieved = CounterMetricFamily(
            "clbproxy_rebalance_relieved",
            "WebSocket sessions asked to reconnect elsewhere, by action (rebalance: "
            "rebalancing, shed: the admin action, drain: a drain that ends).",
            labels=["group", "backend", "action"],
        )
        records = live.health_by_backend()
        for name, group in live.groups.items():
            for backend in group.backends:
                in_flight.add_metric([name, backend.address], group.load(backend))
                sent.add_metric([name, backend.address], group.sent(backend))
            for (address, action), count in sorted(group.rebalancer.relieved.items()):
                relieved.add_metric([name, address, action], count)
            for control in group.controls():
                record = records.get((name, control.address))
                current = record.health if record is not None else Health.UNKNOWN
                for state in HEALTH_STATES:
                    health.add_metric([name, control.address, state], int(state == current))
                for state in (READY, DRAIN, MAINT):
                    admin.add_metric([name, control.address, state], int(state == control.state))
                weight.add_metric([name, control.address], control.weight)
        yield from (health, admin, weight, in_flight, sent, relieved)
