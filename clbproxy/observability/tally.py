"""One count per HTTP request, read by the Prometheus metrics and the status page's series.

Both want the same few facts of each finished request: its listener, target
group and backend, its status and its backend's response time.  Counted twice
(``prometheus_client``'s counter and histogram, with their locks and a linear
scan of the bounds, then the series' own counts) they were about 2 µs of every
keep-alive GET; counted once here they are a fraction of that, and the series
add nothing per request but the check of the 5-second bucket.

:meth:`RequestTally.count` adds a request to plain integers of its key
``(listener, group, backend)``: a count per status and a latency histogram whose
cells are bounded by both consumers' bounds (:data:`CELL_BOUNDS_MS`, the union
of :data:`SERIES_BOUNDS_MS` and :data:`METRIC_BUCKETS_S`), so one ``bisect``
places a response time exactly for both.  Those pending counts all belong to
the bucket being filled; :meth:`RequestTally.fold` moves them into the
Prometheus totals (:class:`RequestTotals`) and into the arrays of the key's
series (:mod:`clbproxy.observability.series`), when the bucket ends, before
the series are read and before every scrape, so each reader sees every
request, and each request lands in its own bucket.

A tally without a clock (the metrics alone, as in a test) has one bucket
forever: it folds when read.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from operator import itemgetter
from typing import Callable

#: Upper bounds (ms) of the series' latency buckets: 0.25 ms to 46 s, each sqrt(2)
#: times the one before; one more bucket holds everything above.
SERIES_BOUNDS_MS = tuple(round(0.25 * 2 ** (i / 2), 3) for i in range(36))

#: Upper bounds (s) of the Prometheus latency histograms (handshakes, HTTP responses).
METRIC_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: The same in ms (the unit response times come in).
METRIC_BOUNDS_MS = tuple(round(bound * 1000, 6) for bound in METRIC_BUCKETS_S)

#: The tally's latency cells' upper bounds (ms): every bound of both, so a cell
#: lies inside one series bucket and one Prometheus bucket.
CELL_BOUNDS_MS = tuple(sorted(set(SERIES_BOUNDS_MS) | set(METRIC_BOUNDS_MS)))
#: Cells (the last one: above every bound).
CELLS = len(CELL_BOUNDS_MS) + 1
#: The series bucket of each cell, and its Prometheus bucket (``len(bounds)``: above all).
SERIES_BUCKET_OF_CELL = tuple(bisect_left(SERIES_BOUNDS_MS, b) for b in CELL_BOUNDS_MS) + (
    len(SERIES_BOUNDS_MS),
)
METRIC_BUCKET_OF_CELL = tuple(bisect_left(METRIC_BOUNDS_MS, b) for b in CELL_BOUNDS_MS) + (
    len(METRIC_BOUNDS_MS),
)

#: Status codes from this one up are errors (502 refused or failed, 503, 504 timed out).
ERROR_STATUS = 500

#: Seconds per bucket of the series.
BUCKET_SECONDS = 5


class _NoClock:
    """The time of a tally with one bucket forever (the metrics alone)."""

    @staticmethod
    def seconds() -> float:
        return 0.0


def _no_series(key: tuple, bucket: int) -> tuple:
    return ()


class Pending:
    """The counts of one key ``(listener, group, backend)`` in the bucket being filled.

    ``statuses`` and ``cells`` are HTTP requests' (both readers');
    ``requests``, ``errors`` and ``sessions`` are the series' alone (refused
    WebSocket handshakes, new sessions).  ``series`` are the key's
    :class:`~clbproxy.observability.series.Series` (the listener's and the
    backend's), empty when no series read this tally.
    """

    __slots__ = (
        "series",
        "statuses",
        "seen",
        "cells",
        "ms_sum",
        "requests",
        "errors",
        "sessions",
    )

    def __init__(self, series: tuple) -> None:
        self.series = series
        #: HTTP requests by status.
        self.statuses: dict[int, int] = {}
        #: When each status was first counted here (``time.time()``): the
        #: ``_created`` time of labels the totals did not hold yet.
        self.seen: dict[int, float] = {}
        #: HTTP responses per latency cell (a list: its cells are bumped in place).
        self.cells = [0] * CELLS
        #: Their response times' sum (ms).
        self.ms_sum = 0.0
        self.requests = 0
        self.errors = 0
        self.sessions = 0


def _label(value: object) -> str:
    return "-" if value is None else str(value)


class RequestTotals:
    """Every HTTP request counted so far, as the Prometheus metrics expose them.

    ``requests``: by ``(listener, backend, status)`` labels, ``[count,
    created]``; ``responses``: by listener label, ``[counts per Prometheus
    bucket, sum in seconds, created]``.  ``created`` is when the labels were
    first counted (``time.time()``, as ``prometheus_client`` sets it).
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], list] = {}
        self.responses: dict[str, list] = {}

    def add(self, key: tuple, pending: Pending) -> None:
        """Add ``pending``'s HTTP requests (of ``key``) to the totals."""
        listener, _, backend = key
        statuses, seen, cells, ms_sum = (
            pending.statuses,
            pending.seen,
            pending.cells,
            pending.ms_sum,
        )
        listener_label, backend_label = _label(listener), _label(backend)
        requests = self.requests
        for status, count in statuses.items():
            labels = (listener_label, backend_label, str(status))
            total = requests.get(labels)
            if total is None:
                requests[labels] = [count, seen.get(status) or time.time()]
            else:
                total[0] += count
        if ms_sum or any(cells):
            response = self.responses.get(listener_label)
            if response is None:
                response = self.responses[listener_label] = [
                    [0] * (len(METRIC_BUCKETS_S) + 1),
                    0.0,
                    min(seen.values(), default=0.0) or time.time(),
                ]
            buckets = response[0]
            for cell, count in enumerate(cells):
                if count:
                    buckets[METRIC_BUCKET_OF_CELL[cell]] += count
            response[1] += ms_sum / 1000


#: A request event's key: its listener, target group and backend.
_key_of = itemgetter("listener", "group", "backend")


class RequestTally:
    """The per-request counts both readers share (see the module's docstring).

    ``clock``: the reactor (its ``seconds()`` decides the bucket); without
    one, the tally has a single bucket and folds only when read.
    """

    def __init__(self, clock=None) -> None:
        self.clock = clock if clock is not None else _NoClock
        #: Pending counts by key, for the bucket being filled.
        self.pending: dict[tuple, Pending] = {}
        #: A key's series: given by the series store that reads this tally (:meth:`feed`).
        self._series_of: Callable[[tuple, int], tuple] = _no_series
        self.totals = RequestTotals()
        #: The bucket the pending counts are of, and its time span [start, end).
        self.bucket = -1
        self.start: float = 0
        self.end: float = 0

    def feed(self, series_of: Callable[[tuple, int], tuple]) -> None:
        """Put the counts in the series ``series_of(key, bucket)`` names, too."""
        self._series_of = series_of

    def count(self, event: dict) -> None:
        """Count one HTTP request's access event (the hot path: once per request)."""
        now = self.clock.seconds()
        if not self.start <= now < self.end:
            self.turn(now)  # a new bucket (or the clock went back)
        try:
            key = _key_of(event)  # an emitted event holds every field: one C call
        except KeyError:  # one made by hand may not
            key = (event.get("listener"), event.get("group"), event.get("backend"))
        pending = self.pending.get(key) or self.pend(key)
        statuses = pending.statuses
        status = event.get("status") or 0
        try:
            statuses[status] += 1
        except KeyError:
            statuses[status] = 1
            pending.seen[status] = time.time()
        response_ms = event.get("response_ms")
        if response_ms is not None:
            pending.cells[bisect_left(CELL_BOUNDS_MS, response_ms)] += 1
            pending.ms_sum += response_ms

    def at(self, now: float) -> None:
        """Make ``now``'s bucket the one being filled, if it is not."""
        if not self.start <= now < self.end:
            self.turn(now)

    def pend(self, key: tuple) -> Pending:
        """The pending counts of ``key``, made."""
        pending = self.pending[key] = Pending(self._series_of(key, self.bucket))
        return pending

    def turn(self, now: float) -> None:
        """Fold every pending count; count in the bucket of ``now`` from then on."""
        self.fold()
        bucket = self.bucket = int(now // BUCKET_SECONDS)
        self.start = bucket * BUCKET_SECONDS
        self.end = self.start + BUCKET_SECONDS

    def fold(self) -> None:
        """Put the pending counts in the totals and the series' arrays; zero them."""
        bucket = self.bucket
        totals = self.totals
        for key, pending in self.pending.items():
            statuses = pending.statuses
            requests, errors = pending.requests, pending.errors
            if statuses:
                cells = pending.cells
                totals.add(key, pending)
                for status, count in statuses.items():
                    requests += count
                    if status >= ERROR_STATUS:
                        errors += count
                series = pending.series
                if series:
                    latency = [(SERIES_BUCKET_OF_CELL[i], c) for i, c in enumerate(cells) if c]
                    _into_series(series, bucket, requests, errors, pending.sessions, latency)
                statuses.clear()
                pending.seen.clear()
                pending.cells = [0] * CELLS
                pending.ms_sum = 0.0
            elif requests or pending.sessions:
                _into_series(pending.series, bucket, requests, errors, pending.sessions, ())
            else:
                continue
            pending.requests = pending.errors = pending.sessions = 0

    def forget(self) -> None:
        """Fold, then drop the keys (so only those of recent traffic are held)."""
        self.fold()
        self.pending.clear()


def _into_series(
    series: tuple, bucket: int, requests: int, errors: int, sessions: int, latency
) -> None:
    """Add one bucket's counts to each of ``series`` (unless the bucket is too old for it)."""
    for one in series:
        slot = one.slot(bucket)
        if slot < 0:
            continue
        one.requests[slot] += requests
        one.errors[slot] += errors
        one.sessions[slot] += sessions
        cells = one.latency
        start = slot * (len(SERIES_BOUNDS_MS) + 1)
        for index, count in latency:
            cells[start + index] += count
