"""A fleet instance's status section and ``clbproxy_fleet_*`` metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import task
from twisted.trial import unittest

from clbproxy.fleet.watch import FleetStatus
from clbproxy.observability.fleet import FleetCollector


def status() -> FleetStatus:
    fleet = FleetStatus(cluster="prod", instance="node-2", endpoint="http://e1:2379")
    fleet.connected = True
    fleet.connected_since = 100.0
    fleet.applied_revision = 42
    fleet.rejected_revision = 43
    fleet.rejected_reason = "etcd:/clbproxy/prod/config@43: workers: is local"
    fleet.resyncs["compacted"] = 2
    fleet.restarts["check failed"] = 1
    fleet.unserved = ("intranet",)
    return fleet


class FleetMetricsTests(unittest.TestCase):
    def test_the_metrics_show_connection_revisions_and_restarts_by_reason(self):
        registry = CollectorRegistry()
        registry.register(FleetCollector(status()))
        text = generate_latest(registry).decode()
        for line in (
            "clbproxy_fleet_connected 1.0",
            "clbproxy_fleet_from_cache 0.0",
            "clbproxy_fleet_applied_revision 42.0",
            "clbproxy_fleet_rejected_revision 43.0",
            'clbproxy_fleet_resyncs_total{reason="compacted"} 2.0',
            'clbproxy_fleet_watch_restarts_total{reason="check failed"} 1.0',
        ):
            self.assertIn(line, text)


class FleetStatusTests(unittest.TestCase):
    def test_the_status_section_says_source_endpoint_revisions_and_unserved_listeners(self):
        clock = task.Clock()
        clock.advance(130)
        section = status().as_dict(clock.seconds())
        self.assertEqual(section["source"], "etcd")
        self.assertEqual(section["endpoint"], "http://e1:2379")
        self.assertEqual(section["connected_for"], 30.0)
        self.assertEqual(section["applied_revision"], 42)
        self.assertEqual(section["rejected_revision"], 43)
        self.assertEqual(section["unserved_listeners"], ["intranet"])
