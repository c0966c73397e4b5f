"""Bench only: the metrics' counting without the status page's series (issue 24).

:func:`patch` makes every :class:`~clbproxy.observability.service.Observability`
built afterwards count HTTP requests in a tally with one bucket forever that
feeds no series (:class:`MetricsOnlyTally`: what the metrics alone need), and
its access observer give WebSocket events to the metrics only
(:class:`MetricsOnly`).  ``sitecustomize`` here applies it to a whole process;
``bench/ids_cost.py`` to its ``off`` and ``ids`` rows.
"""

from __future__ import annotations

from clbproxy.observability import service
from clbproxy.observability.accesslog import NAMESPACE
from clbproxy.observability.tally import RequestTally

#: What the package ships, for :func:`unpatch`.
_SHIPPED = (service.RequestTally, service.AccessCounters)


class MetricsOnlyTally(RequestTally):
    """No clock (no bucket to check per request) and no series to fold into."""

    def __init__(self, clock=None) -> None:
        super().__init__()

    def feed(self, series_of) -> None:
        pass


class MetricsOnly(service.AccessCounters):
    """The access observer of a proxy without series: the metrics count every event."""

    __slots__ = ()

    def __call__(self, event: dict) -> None:
        if event.get("log_namespace") == NAMESPACE:
            kind = event.get("type")
            if kind == "http":
                self.tally.count(event)
            elif kind is not None:
                self.metrics.count_session(event)


def patch() -> None:
    """Series off for every Observability made from now on."""
    service.RequestTally = MetricsOnlyTally
    service.AccessCounters = MetricsOnly


def unpatch() -> None:
    """Series on again, as shipped."""
    service.RequestTally, service.AccessCounters = _SHIPPED
