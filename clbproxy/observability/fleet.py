"""What a fleet instance shows of its fleet: a status section and ``clbproxy_fleet_*`` metrics.

Both read the :class:`~clbproxy.fleet.watch.FleetStatus` the watch loop keeps,
at the time they are asked: where the configuration came from (``etcd`` or
``cache``), the endpoint, whether the watch is connected, the applied and
rejected revisions, and the resyncs and watch restarts by reason.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from clbproxy.fleet.watch import FleetStatus


class FleetCollector(Collector):
    """The ``clbproxy_fleet_*`` metrics of one instance (its supervisor's, under workers)."""

    def __init__(self, status: FleetStatus) -> None:
        self.status = status

    def collect(self) -> Iterator:
        status = self.status
        connected = GaugeMetricFamily(
            "clbproxy_fleet_connected", "1 while the watch on etcd is connected."
        )
        connected.add_metric([], 1 if status.connected else 0)
        from_cache = GaugeMetricFamily(
            "clbproxy_fleet_from_cache",
            "1 while the configuration in use was read from the cache, not etcd.",
        )
        from_cache.add_metric([], 1 if status.source == "cache" else 0)
        applied = GaugeMetricFamily(
            "clbproxy_fleet_applied_revision", "The etcd revision of the document in use."
        )
        applied.add_metric([], status.applied_revision)
        rejected = GaugeMetricFamily(
            "clbproxy_fleet_rejected_revision",
            "The etcd revision of the last document refused (0: none).",
        )
        rejected.add_metric([], status.rejected_revision)
        resyncs = CounterMetricFamily(
            "clbproxy_fleet_resyncs", "Full reads of etcd's state, by reason.", labels=["reason"]
        )
        for reason, count in sorted(status.resyncs.items()):
            resyncs.add_metric([reason], count)
        restarts = CounterMetricFamily(
            "clbproxy_fleet_watch_restarts",
            "Watches on etcd started again, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(status.restarts.items()):
            restarts.add_metric([reason], count)
        yield from (connected, from_cache, applied, rejected, resyncs, restarts)
