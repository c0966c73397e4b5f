"""The status page's charts: the last 15 minutes of traffic per listener and per backend.

Each listener and each backend has one :class:`Series`: a ring of
:data:`SLOTS` five-second buckets in fixed-size arrays (requests, new WebSocket
sessions, errors, live sessions, and a latency histogram per bucket), so its
memory is the same after one request or a billion.  :class:`SeriesStore`
observes the access events (as :class:`~clbproxy.observability.metrics.Metrics`
does) and counts each one in O(1): the bucket is the clock's time divided by
:data:`~clbproxy.observability.tally.BUCKET_SECONDS`; the events of the
bucket being filled are added up in plain integers per listener and backend by the
:class:`~clbproxy.observability.tally.RequestTally` it shares with the
metrics (one count per HTTP request for both), which go into the arrays once,
when the bucket ends or before the series are read (a sample, the API), and a
series clears the buckets it skipped only when a new one starts.
:meth:`SeriesStore.sample` (every bucket, and before each answer of the API)
reads the live sessions from
:class:`~clbproxy.observability.livestate.LiveState`: the counts each relay's
:class:`~clbproxy.ws.livecount.SessionSet` keeps as sessions open and end, and
the sessions opened since the last sample, never every live session.

A WebSocket session's access event comes when it ends, so a new session is
counted in the bucket it opened in: by the sample that first sees it open, or,
if it ended before any sample saw it, by its end event (opened = end - duration).

Latency is the HTTP backend's response time (request to response headers) in a
histogram with :data:`LATENCY_BOUNDS_MS` (log-spaced, a factor of sqrt(2)), so
several workers' histograms can be summed and percentiles taken from the sum
(:func:`merge_raw`); a percentile is interpolated inside its bucket, so it is
within that bucket's width (41 %) of the true one.

The API's answer (:func:`render`) holds the :data:`BUCKETS` complete buckets,
oldest first, as rates per second, live sessions and p50/p99 in milliseconds
(``null`` where a bucket had no response); the bucket being filled is not shown.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any, Iterable, Optional

from twisted.logger import ILogObserver
from zope.interface import implementer

from clbproxy.observability import accesslog
from clbproxy.observability.livestate import LiveState
from clbproxy.observability.tally import (
    BUCKET_SECONDS,
    ERROR_STATUS,
    SERIES_BOUNDS_MS,
    RequestTally,
)
from clbproxy.ws.livecount import SessionSet, backend_key

#: Complete buckets shown: 15 minutes.
BUCKETS = 180
#: Buckets kept: the complete ones and the one being filled.
SLOTS = BUCKETS + 1

#: Upper bounds (ms) of the latency buckets: 0.25 ms to 46 s, each sqrt(2) times the one
#: before; one more bucket holds everything above.
LATENCY_BOUNDS_MS = SERIES_BOUNDS_MS
#: Latency buckets per time bucket (the last one: above every bound).
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1

#: The counters of a bucket: one array of :class:`Series` each, by these names.
COUNTERS = ("requests", "sessions", "errors", "live_sessions")

#: Array type code of the counts: 4-byte unsigned (4 billion per bucket and worker).
TYPECODE = "I"

_INF = float("inf")


def _latency_index(ms: float) -> int:
    """The histogram bucket of a response time (the first bound not below it)."""
    return bisect_left(LATENCY_BOUNDS_MS, ms)


class Series:
    """One listener's or backend's ring of buckets, in arrays allocated once.

    ``newest`` is the number of the bucket being filled (time //
    :data:`~clbproxy.observability.tally.BUCKET_SECONDS`); bucket ``n`` lives in
    slot ``n % SLOTS``.
    """

    __slots__ = ("requests", "sessions", "errors", "live_sessions", "latency", "newest")

    def __init__(self, newest: int) -> None:
        self.requests = array(TYPECODE, bytes(4 * SLOTS))
        self.sessions = array(TYPECODE, bytes(4 * SLOTS))
        self.errors = array(TYPECODE, bytes(4 * SLOTS))
        self.live_sessions = array(TYPECODE, bytes(4 * SLOTS))
        self.latency = array(TYPECODE, bytes(4 * SLOTS * LATENCY_BUCKETS))
        self.newest = newest

    def nbytes(self) -> int:
        """Bytes held by the arrays (the same for every series, whatever the traffic)."""
        return sum(
            a.itemsize * len(a)
            for a in (self.requests, self.sessions, self.errors, self.live_sessions, self.latency)
        )

    def slot(self, bucket: int) -> int:
        """The slot of ``bucket``, moving the ring forward to it; -1 if it is too old."""
        newest = self.newest
        if bucket > newest:
            self._advance(bucket)
        elif newest - bucket >= SLOTS:
            return -1
        return bucket % SLOTS

    def _advance(self, bucket: int) -> None:
        """Start ``bucket``: clear the slots of the buckets skipped; live sessions carry on."""
        live = self.live_sessions[self.newest % SLOTS]
        first = max(self.newest + 1, bucket - SLOTS + 1)
        latency = self.latency
        for n in range(first, bucket + 1):
            slot = n % SLOTS
            self.requests[slot] = self.sessions[slot] = self.errors[slot] = 0
            self.live_sessions[slot] = live
            start = slot * LATENCY_BUCKETS
            latency[start : start + LATENCY_BUCKETS] = _ZEROS
        self.newest = bucket

    def count(self, bucket: int, status: int, response_ms: Optional[float]) -> None:
        """One HTTP request (or refused WebSocket handshake) answered in ``bucket``."""
        slot = bucket % SLOTS if bucket == self.newest else self.slot(bucket)
        if slot < 0:
            return
        self.requests[slot] += 1
        if status >= ERROR_STATUS:
            self.errors[slot] += 1
        if response_ms is not None:
            self.latency[slot * LATENCY_BUCKETS + _latency_index(response_ms)] += 1

    def opened(self, bucket: int) -> None:
        """One WebSocket session opened in ``bucket``."""
        slot = self.slot(bucket)
        if slot >= 0:
            self.sessions[slot] += 1

    def raw(self, last: int) -> dict[str, Any]:
        """The complete buckets up to ``last`` (included), oldest first, as counts.

        The latency histograms are sparse: per bucket, ``[[index, count], ...]``.
        """
        self.slot(last + 1)
        numbers = range(last - BUCKETS + 1, last + 1)
        slots = [n % SLOTS for n in numbers]
        data: dict[str, Any] = {name: [getattr(self, name)[s] for s in slots] for name in COUNTERS}
        latency = self.latency
        histograms = []
        for s in slots:
            start = s * LATENCY_BUCKETS
            row = latency[start : start + LATENCY_BUCKETS]
            histograms.append([[i, c] for i, c in enumerate(row) if c])
        data["latency"] = histograms
        return data


_ZEROS = array(TYPECODE, bytes(4 * LATENCY_BUCKETS))


def bucket_of(seconds: float) -> int:
    return int(seconds // BUCKET_SECONDS)


@implementer(ILogObserver)
class SeriesStore:
    """Every listener's and backend's :class:`Series`; observe access events with it.

    Series are made on first use; :meth:`sample` drops those of listeners and
    backends no longer in the configuration once their whole window is past, so
    their number follows the configuration, never the traffic.
    """

    def __init__(
        self, clock, live: Optional[LiveState] = None, tally: Optional[RequestTally] = None
    ) -> None:
        self.clock = clock
        self.live = live
        self.listeners: dict[str, Series] = {}
        #: By group, then backend address (no tuple made per event).
        self.backends: dict[Optional[str], dict[str, Series]] = {}
        #: The per-request counts (shared with the metrics when given): the
        #: events of the bucket being filled wait there, by ``(listener, group,
        #: backend)``, until it folds them into this store's arrays.  Every
        #: :meth:`sample` forgets its keys, so it holds those of the last five
        #: seconds only.
        self.tally = tally if tally is not None else RequestTally(clock)
        self.tally.feed(self._series_of)
        self._sampled = clock.seconds()

    def listener(self, name: str, bucket: int) -> Series:
        series = self.listeners.get(name)
        if series is None:
            series = self.listeners[name] = Series(bucket)
        return series

    def backend(self, group: Optional[str], address: str, bucket: int) -> Series:
        backends = self.backends.get(group)
        if backends is None:
            backends = self.backends[group] = {}
        series = backends.get(address)
        if series is None:
            series = backends[address] = Series(bucket)
        return series

    def __call__(self, event: dict) -> None:
        if event.get("log_namespace") == accesslog.NAMESPACE and "type" in event:
            self.count(event)

    def _series_of(self, key: tuple, bucket: int) -> tuple[Series, ...]:
        """The series an event of ``key`` counts in: its listener's, and its backend's."""
        listener_name, group, address = key
        listener = self.listener(listener_name or "-", bucket)
        if address is None:
            return (listener,)
        return (listener, self.backend(group, address, bucket))

    def fold(self) -> None:
        """Put the pending counts in the series' arrays (each series then holds every event)."""
        self.tally.fold()

    def count(self, event: dict) -> None:
        """Count one access event (what calling this object does, without the namespace check).

        An HTTP request (the hot path: one per request) is the tally's
        (:meth:`~clbproxy.observability.tally.RequestTally.count`); a refused
        WebSocket handshake adds to its key's pending requests, a session
        that no sample saw open to the sessions of the bucket it opened in:
        each event lands in its own bucket, as :meth:`Series.count` would
        count it.
        """
        tally = self.tally
        if event["type"] == "http":
            tally.count(event)
            return
        now = self.clock.seconds()
        tally.at(now)
        key = (event.get("listener"), event.get("group"), event.get("backend"))
        pending = tally.pending.get(key) or tally.pend(key)
        status = event.get("status") or 0
        if status != 101:
            pending.requests += 1
            if status >= ERROR_STATUS:
                pending.errors += 1
            return
        # When it opened: exactly, as the sample compared it (``opened_at``); from its
        # duration for an event without it.
        opened = event.get("opened_at")
        if opened is None:
            opened = now - (event.get("duration_s") or 0.0)
        if opened >= self._sampled:
            # No sample saw it open: count it now, in the bucket it opened in.
            if tally.start <= opened < tally.end:
                pending.sessions += 1
            else:
                opened_bucket = int(opened // BUCKET_SECONDS)
                for series in pending.series:
                    series.opened(opened_bucket)

    def sample(self) -> None:
        """Read the live sessions; count the sessions opened since the last sample.

        A relay's :class:`~clbproxy.ws.livecount.SessionSet` has the counts and
        the sessions opened since the last sample ready, so a sample costs the
        same with ten sessions or a hundred thousand; a listener with a plain set
        of sessions has them walked.
        """
        now = self.clock.seconds()
        bucket = int(now // BUCKET_SECONDS)
        since, self._sampled = self._sampled, now
        self.tally.forget()
        live = self.live
        if live is None:
            return
        per_backend: dict[tuple[str, str], int] = {}
        for name, state in live.listeners.items():
            listener = self.listener(name, bucket)
            sessions = state.sessions
            counted = isinstance(sessions, SessionSet)
            if counted:
                count = sessions.open
                for key, n in sessions.by_backend.items():
                    if key[1] is not None:
                        per_backend[key] = per_backend.get(key, 0) + n  # type: ignore[index]
                opened = sessions.take_opened()
            else:
                opened = state.open_sessions()
                count = len(opened)
                for session in opened:
                    key = backend_key(session)
                    if key[1] is not None:
                        per_backend[key] = per_backend.get(key, 0) + 1  # type: ignore[index]
            for session in opened:
                at = getattr(session, "opened_at", None)
                if at is None or at < since:
                    continue
                if at >= now:
                    if counted:
                        sessions.opened(session)  # the next sample's
                    continue
                opened_bucket = int(at // BUCKET_SECONDS)
                listener.opened(opened_bucket)
                group, address = backend_key(session)
                if address is not None:
                    self.backend(group, address, bucket).opened(opened_bucket)
            listener.live_sessions[listener.slot(bucket)] = count
        self._forget(live, bucket)
        for group in live.config.target_groups:
            for backend in group.backends:
                self.backend(group.name, backend.address, bucket)
        for key in per_backend:
            self.backend(*key, bucket)
        for group_name, backends in self.backends.items():
            for address, series in backends.items():
                count = per_backend.get((group_name, address), 0)  # type: ignore[arg-type]
                series.live_sessions[series.slot(bucket)] = count

    def _forget(self, live: LiveState, bucket: int) -> None:
        """Drop the series of removed listeners and backends once their window is past."""
        configured = {(g.name, b.address) for g in live.config.target_groups for b in g.backends}
        for name in [n for n, s in self.listeners.items() if bucket - s.newest > SLOTS]:
            if name not in live.listeners:
                del self.listeners[name]
        for group, backends in list(self.backends.items()):
            for address in [a for a, s in backends.items() if bucket - s.newest > SLOTS]:
                if (group, address) not in configured:
                    del backends[address]
            if not backends:
                del self.backends[group]

    def raw(self) -> dict[str, Any]:
        """Every series' complete buckets as counts (what a worker gives the supervisor)."""
        self.fold()
        last = bucket_of(self.clock.seconds()) - 1
        return {
            "bucket_seconds": BUCKET_SECONDS,
            "last": last,
            "latency_bounds_ms": list(LATENCY_BOUNDS_MS),
            "listeners": [
                {"name": name, **series.raw(last)} for name, series in self.listeners.items()
            ],
            "backends": [
                {"group": group, "address": address, **series.raw(last)}
                for group, backends in self.backends.items()
                for address, series in backends.items()
            ],
        }


def merge_raw(raws: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several workers' :meth:`SeriesStore.raw` answers as one: counts and histograms summed.

    Answers are aligned on their bucket numbers (the newest ``last`` wins); live
    sessions are summed too (each worker has its own).
    """
    raws = [raw for raw in raws if raw]
    if not raws:
        return {
            "bucket_seconds": BUCKET_SECONDS,
            "last": 0,
            "latency_bounds_ms": list(LATENCY_BOUNDS_MS),
            "listeners": [],
            "backends": [],
        }
    last = max(raw["last"] for raw in raws)
    listeners: dict[Any, dict[str, Any]] = {}
    backends: dict[Any, dict[str, Any]] = {}
    for raw in raws:
        shift = last - raw["last"]
        for kind, merged, key_names in (
            ("listeners", listeners, ("name",)),
            ("backends", backends, ("group", "address")),
        ):
            for entry in raw.get(kind, []):
                key = tuple(entry[k] for k in key_names)
                target = merged.get(key)
                if target is None:
                    target = merged[key] = {k: entry[k] for k in key_names}
                    for name in COUNTERS:
                        target[name] = [0] * BUCKETS
                    target["latency"] = [[0] * LATENCY_BUCKETS for _ in range(BUCKETS)]
                for i in range(shift, BUCKETS):
                    j = i - shift
                    for name in COUNTERS:
                        target[name][j] += entry[name][i]
                    row = target["latency"][j]
                    for index, count in entry["latency"][i]:
                        row[index] += count
    for merged in (*listeners.values(), *backends.values()):
        merged["latency"] = [[[i, c] for i, c in enumerate(row) if c] for row in merged["latency"]]
    return {
        "bucket_seconds": BUCKET_SECONDS,
        "last": last,
        "latency_bounds_ms": list(LATENCY_BOUNDS_MS),
        "listeners": list(listeners.values()),
        "backends": list(backends.values()),
    }


def percentile(histogram: Iterable[tuple[int, int]] | list, share: float) -> Optional[float]:
    """The ``share`` (0-1) percentile in ms of a sparse histogram; None when it is empty.

    Interpolated linearly inside the bucket that holds it (from the bound below,
    0 for the first bucket); in the bucket above every bound it is the last bound.
    """
    rows = sorted((int(i), int(c)) for i, c in histogram)
    total = sum(c for _, c in rows)
    if total == 0:
        return None
    rank = share * total
    seen = 0
    for index, count in rows:
        if count and seen + count >= rank:
            if index >= len(LATENCY_BOUNDS_MS):
                return LATENCY_BOUNDS_MS[-1]
            low = LATENCY_BOUNDS_MS[index - 1] if index else 0.0
            high = LATENCY_BOUNDS_MS[index]
            return round(low + (high - low) * max(rank - seen, 0) / count, 3)
        seen += count
    return LATENCY_BOUNDS_MS[-1]


def _rates(counts: list) -> list:
    return [round(c / BUCKET_SECONDS, 3) for c in counts]


def _chart(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests_per_s": _rates(entry["requests"]),
        "sessions_per_s": _rates(entry["sessions"]),
        "errors_per_s": _rates(entry["errors"]),
        "live_sessions": list(entry["live_sessions"]),
        "p50_ms": [percentile(h, 0.50) for h in entry["latency"]],
        "p99_ms": [percentile(h, 0.99) for h in entry["latency"]],
        "requests": list(entry["requests"]),
    }


def render(raw: dict[str, Any]) -> dict[str, Any]:
    """The API's answer (``GET /api/series``) from raw counts (one process's or merged)."""
    last = raw["last"]
    return {
        "bucket_seconds": BUCKET_SECONDS,
        "buckets": BUCKETS,
        "end": (last + 1) * BUCKET_SECONDS,
        "listeners": [{"name": e["name"], **_chart(e)} for e in raw["listeners"]],
        "backends": [
            {"group": e["group"], "address": e["address"], **_chart(e)} for e in raw["backends"]
        ],
    }
