"""One view of a group of worker processes: merged status JSON and merged Prometheus metrics.

With ``workers = N`` every worker serves traffic with its own listeners, target
groups, health checks and counters, and answers its own admin API on a private
unix socket.  The supervisor's admin listener asks every worker and shows the
sum, so the status page and ``/metrics`` describe the whole process group.
These functions are the pure part of that: they take what the workers answered.

Merging rules:

- counters and histograms, and the gauges that count things
  (:data:`SUMMED_GAUGES`), are summed over the workers, label set by label set;
- the other gauges describe a state (health, runtime state, weight): a labelled
  one-hot state is 1 when *any* worker is in that state (so a backend one worker
  finds unhealthy shows ``unhealthy`` 1 even if others still find it healthy),
  a weight is the highest any worker has;
- the workers' reload metrics are dropped: the supervisor validates tap.conf and
  counts reloads itself (:data:`SUPERVISOR_FAMILIES`);
- ``_created`` timestamps are dropped (they are per process and mean nothing summed).

In the status JSON, listeners are merged by name and backends by (group,
address): connections, sessions and relieved sessions are summed (so is a
group's rebalancing count; its last action is the latest); a backend's health is the worst
any worker reports (``unhealthy`` > ``unknown`` > ``healthy``) with each
worker's view under ``workers``; its runtime state and weight are the first
worker's (actions are applied to every worker); recent errors are merged, newest
first.

The status page's charts (``/api/series``) are merged by
:func:`clbproxy.observability.series.merge_raw`: each worker's counts and latency
histograms per 5-second bucket are summed, and percentiles are taken from the
summed histograms (never from the workers' percentiles).
"""

from __future__ import annotations

import io
import json
from typing import Any, Iterable, Iterator, Optional, Sequence
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    _HTTP11ClientFactory,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import Attribute, Interface

from clbproxy.config import AdminConfig
from clbproxy.observability.admin import (
    ACTIONS,
    UNKNOWN_ACTION,
    AdminResource,
    APIError,
    json_answer,
    wants_raw_series,
)
from clbproxy.observability.livestate import RECENT_ERRORS
from clbproxy.observability.series import merge_raw
from clbproxy.observability.series import render as render_series

log = Logger()

#: Gauges that count things and are summed over the workers.
SUMMED_GAUGES = frozenset(
    {
        "clbproxy_connections_active",
        "clbproxy_websocket_sessions_active",
        "clbproxy_backend_in_flight",
    }
)

#: Families the supervisor owns: the workers' copies are left out of the merge.
SUPERVISOR_FAMILIES = frozenset(
    {
        "clbproxy_config_reloads",
        "clbproxy_config_last_reload_successful",
        "clbproxy_config_last_reload_timestamp_seconds",
    }
)

#: Health states, best first: the merged health is the last one any worker reports.
_HEALTH_ORDER = ("healthy", "unknown", "unhealthy")


def merge_metrics(texts: Iterable[str]) -> list[Metric]:
    """The metric families of several workers' ``/metrics`` answers, merged."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created") or family.name in SUPERVISOR_FAMILIES:
                continue
            if family.name not in merged:
                merged[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            combine = _combiner(family.name, family.type)
            samples = values[family.name]
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = samples.get(key)
                samples[key] = sample.value if old is None else combine(old, sample.value)
    for name, family in merged.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(merged.values())


def _combiner(name: str, kind: str):
    if kind in ("counter", "histogram", "summary") or name in SUMMED_GAUGES:
        return lambda a, b: a + b
    return max


def merge_status(
    snapshots: Sequence[tuple[dict[str, Any], Optional[dict[str, Any]]]],
    config_path: str,
    uptime: Optional[float],
) -> dict[str, Any]:
    """The status JSON of the group from ``(worker info, its /api/status or None)`` pairs.

    A worker that did not answer (starting, restarting, stuck) is listed under
    ``workers`` with ``"up": false`` and contributes nothing else.
    """
    listeners: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    backends: dict[tuple[str, str], dict[str, Any]] = {}
    workers = []
    for info, snapshot in snapshots:
        row = dict(info)
        row["up"] = snapshot is not None
        row["connections"] = 0
        row["connections_total"] = 0
        row["sessions"] = 0
        workers.append(row)
        if snapshot is None:
            continue
        for listener in snapshot.get("listeners", []):
            row["connections"] += listener["connections"]
            row["connections_total"] += listener["connections_total"]
            row["sessions"] += listener["sessions"]
            merged = listeners.get(listener["name"])
            if merged is None:
                listeners[listener["name"]] = dict(listener)
                continue
            for key in ("connections", "connections_total", "sessions"):
                merged[key] += listener[key]
            merged["rate_throttles"] = merged.get("rate_throttles", 0) + listener.get(
                "rate_throttles", 0
            )
            closes = dict(merged.get("session_closes") or {})
            for reason, count in (listener.get("session_closes") or {}).items():
                closes[reason] = closes.get(reason, 0) + count
            merged["session_closes"] = closes
            http2 = dict(merged.get("http2") or {})
            for key, count in (listener.get("http2") or {}).items():
                http2[key] = http2.get(key, 0) + count
            merged["http2"] = http2
        for group in snapshot.get("target_groups", []):
            if group["name"] not in groups:
                groups[group["name"]] = {**group, "backends": []}
            elif "rebalance" in group:
                _merge_rebalance(groups[group["name"]], group["rebalance"])
            for backend in group["backends"]:
                key = (group["name"], backend["address"])
                view = {
                    "worker": info.get("index"),
                    "state": backend["state"],
                    "weight": backend["weight"],
                    "health": backend["health"],
                    "health_detail": backend["health_detail"],
                    "sessions": backend["sessions"],
                }
                merged = backends.get(key)
                if merged is None:
                    merged = {**backend, "workers": [view]}
                    backends[key] = merged
                    groups[group["name"]]["backends"].append(merged)
                    continue
                merged["workers"].append(view)
                merged["sessions"] += backend["sessions"]
                merged["relieved"] = merged.get("relieved", 0) + backend.get("relieved", 0)
                if _worse(backend["health"], merged["health"]):
                    merged["health"] = backend["health"]
                    merged["health_detail"] = backend["health_detail"]
                merged["recent_errors"] = sorted(
                    [*merged["recent_errors"], *backend["recent_errors"]],
                    key=lambda error: error.get("time") or 0,
                    reverse=True,
                )[:RECENT_ERRORS]
    for merged in backends.values():
        if merged["state"] in ("drain", "drained"):
            merged["state"] = "drained" if merged["sessions"] == 0 else "drain"
    return {
        "config": config_path,
        "uptime": uptime,
        "listeners": list(listeners.values()),
        "target_groups": list(groups.values()),
        "workers": workers,
    }


def _merge_rebalance(group: dict[str, Any], other: dict[str, Any]) -> None:
    """Add another worker's rebalancing to the group's: counts summed, the latest action."""
    mine = group.get("rebalance")
    if mine is None:
        group["rebalance"] = other
        return
    mine = group["rebalance"] = dict(mine)
    mine["relieved"] = mine.get("relieved", 0) + other.get("relieved", 0)
    mine["tasks"] = [*mine.get("tasks", []), *other.get("tasks", [])]
    latest, theirs = mine.get("last_action"), other.get("last_action")
    if theirs is not None and (latest is None or theirs["time"] > latest["time"]):
        mine["last_action"] = theirs


def _worse(health: str, than: str) -> bool:
    order = {state: rank for rank, state in enumerate(_HEALTH_ORDER)}
    return order.get(health, len(order)) > order.get(than, len(order))


class _UnixEndpoints:
    """Agent endpoint factory: every URI goes to one unix socket (a worker's admin API)."""

    def __init__(self, reactor, path: str) -> None:
        self._reactor = reactor
        self._path = path

    def endpointForURI(self, uri):
        return UNIXClientEndpoint(self._reactor, self._path, timeout=WORKER_TIMEOUT)


class _QuietClientFactory(_HTTP11ClientFactory):
    """No "Starting factory" log line for every scrape of a worker."""

    noisy = False


#: Seconds a worker's admin API has to answer the supervisor.
WORKER_TIMEOUT = 2.0

#: The Host of the supervisor's requests to a worker's admin API, the one name that
#: API allows: its unix socket is private, so no browser can be rebound to it.
WORKER_HOST = "worker"


def ask_worker(reactor, socket_path: str, method: bytes, path: bytes, body: bytes = b""):
    """``(status, body)`` of one request to a worker's admin API (fails after a timeout)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory = _QuietClientFactory
    agent = Agent.usingEndpointFactory(reactor, _UnixEndpoints(reactor, socket_path), pool=pool)
    headers = Headers({b"Content-Type": [b"application/json"]})
    producer = FileBodyProducer(io.BytesIO(body)) if body else None
    d = agent.request(method, f"http://{WORKER_HOST}".encode("ascii") + path, headers, producer)

    def read(response):
        return readBody(response).addCallback(lambda data: (response.code, data))

    d.addCallback(read)
    d.addTimeout(WORKER_TIMEOUT, reactor)
    return d


class _Families(Collector):
    """A collector of metric families already built (the merged ones)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class IProcessGroup(Interface):
    """What the supervisor's admin listener needs from the supervisor."""

    config_path = Attribute("The configuration file in effect.")

    def uptime() -> Optional[float]:
        """Seconds since the supervisor started."""

    def admin_targets() -> list:
        """``(worker info dict, admin socket path)`` of every current worker."""

    def remember_action(action: dict) -> None:
        """A runtime action every worker accepted (``group``, ``address``, ``action``,
        ``body``), for the workers started later to apply before they serve."""


class GroupAdminResource(AdminResource):
    """The supervisor's admin site: the status page, API and metrics of all workers together.

    ``GET /api/status`` and the metrics ask every worker's own admin API (a unix
    socket) and merge the answers; a runtime action is checked here (same
    rules as a single process), then applied to every worker, and answered with
    the workers' common answer (502 when they disagree, 503 when none answers).
    """

    def __init__(self, group: IProcessGroup, registry, admin: AdminConfig, reactor) -> None:
        super().__init__(None, registry, admin)
        self.group = group
        self.reactor = reactor

    def _route(self, request: Request, method: str, path: str):
        if path == self.metrics_path:
            self._allow(request, method, "GET")
            return self._later(request, self._metrics(request))
        if path == "/api/status":
            self._allow(request, method, "GET")
            return self._later(request, self._status(request))
        if path == "/api/series":
            self._allow(request, method, "GET")
            return self._later(request, self._series(request))
        if path.startswith("/api/backends/"):
            parts = path[len("/api/backends/") :].split("/")
            if len(parts) == 3 and all(parts):
                self._allow(request, method, "POST")
                group, address, action = (unquote(part) for part in parts)
                if action not in ACTIONS:
                    raise APIError(404, UNKNOWN_ACTION.format(action))
                body = self._body(request)
                remembered = {"group": group, "address": address, "action": action, "body": body}
                return self._later(request, self._action(request, remembered))
        return super()._route(request, method, path)

    def _ask_all(self, method: bytes, path: bytes, body: bytes = b"") -> defer.Deferred:
        targets = self.group.admin_targets()

        def asked(results):
            return [
                (info, result if ok else None) for (info, _), (ok, result) in zip(targets, results)
            ]

        d = defer.DeferredList(
            [ask_worker(self.reactor, socket, method, path, body) for _, socket in targets],
            consumeErrors=True,
        )
        d.addCallback(asked)
        return d

    def _status(self, request: Request) -> defer.Deferred:
        def merge(answers):
            snapshots = []
            for info, answer in answers:
                snapshot = None
                if answer is not None and answer[0] == 200:
                    snapshot = json.loads(answer[1])
                snapshots.append((info, snapshot))
            status = merge_status(snapshots, self.group.config_path, self.group.uptime())
            fleet = getattr(self.group, "fleet", None)
            if fleet is not None:
                status["fleet"] = fleet.as_dict(self.reactor.seconds())
            return json_answer(request, 200, status)

        return self._ask_all(b"GET", b"/api/status").addCallback(merge)

    def _series(self, request: Request) -> defer.Deferred:
        """Every worker's counts and histograms, summed; percentiles from the sums."""

        def merge(answers):
            raws = [
                json.loads(answer[1])
                for _, answer in answers
                if answer is not None and answer[0] == 200
            ]
            merged = merge_raw(raws)
            answer = merged if wants_raw_series(request) else render_series(merged)
            return json_answer(request, 200, answer)

        return self._ask_all(b"GET", b"/api/series?raw=1").addCallback(merge)

    def _metrics(self, request: Request) -> defer.Deferred:
        def merge(answers):
            texts = [
                answer[1].decode("utf-8")
                for _, answer in answers
                if answer is not None and answer[0] == 200
            ]
            families = merge_metrics(texts) + list(self.registry.collect())
            registry = CollectorRegistry()
            registry.register(_Families(families))
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            return generate_latest(registry)

        return self._ask_all(b"GET", b"/metrics").addCallback(merge)

    def _action(self, request: Request, action: dict) -> defer.Deferred:
        def answer(answers):
            answered = [(info, result) for info, result in answers if result is not None]
            if not answered:
                return json_answer(request, 503, {"error": "no worker answered; try again"})
            statuses = {status for _, (status, _) in answered}
            if len(statuses) > 1 or len(answered) < len(answers):
                return json_answer(
                    request,
                    502,
                    {
                        "error": "the workers answered differently",
                        "workers": [
                            {"worker": info.get("index"), "status": r[0] if r else None}
                            for info, r in answers
                        ],
                    },
                )
            status, data = answered[0][1]
            if status == 200 and action["action"] == "shed":
                # Each worker sheds its own sessions: the answer counts them all.
                merged = json.loads(data)
                merged["shedding"] = sum(json.loads(r[1]).get("shedding", 0) for _, r in answered)
                data = json.dumps(merged, indent=1).encode("utf-8") + b"\n"
            elif status == 200:
                # Later workers apply it too (a shedding is about sessions open now: not).
                self.group.remember_action(action)
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            return data

        body = json.dumps(action["body"]).encode("utf-8")
        return self._ask_all(b"POST", request.path, body).addCallback(answer)

    def _later(self, request: Request, d: defer.Deferred):
        """Answer ``request`` when ``d`` fires with the body (502 if it fails)."""
        gone = []
        request.notifyFinish().addBoth(gone.append)

        def failed(failure):
            log.failure("admin: asking the workers failed", failure)
            return json_answer(request, 502, {"error": "asking the workers failed"})

        def write(body: bytes) -> None:
            if not gone:
                request.write(body)
                request.finish()

        d.addErrback(failed)
        d.addCallback(write)
        return NOT_DONE_YET


def group_admin_site(group: IProcessGroup, registry, admin: AdminConfig, reactor) -> Site:
    """The supervisor's admin listener's site."""
    site = Site(GroupAdminResource(group, registry, admin, reactor), reactor=reactor)
    site.displayTracebacks = False
    return site
