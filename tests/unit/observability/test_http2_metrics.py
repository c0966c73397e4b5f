"""HTTP/2 in the live state and the metrics: connections and streams open, streams
opened, refused and reset, per listener."""

from __future__ import annotations

from h2.errors import ErrorCodes
from prometheus_client import generate_latest
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.config import AdminConfig, Config, ListenerConfig, RuleConfig
from clbproxy.http2.connection import H2Limits, H2ServerConnection
from clbproxy.listener.limits import LimitStats
from clbproxy.observability.aggregate import merge_status
from clbproxy.observability.service import Observability
from tests.support.h2client import H2Client, StubResource, later

LISTENER = ListenerConfig(name="web", bind="tcp:0", rules=(RuleConfig(target_group="g"),))


class HTTP2MetricsTests(unittest.TestCase):
    def setUp(self) -> None:
        config = Config(
            path="test.conf", listeners=(LISTENER,), target_groups=(), admin=AdminConfig()
        )
        self.clock = Clock()
        observability = Observability(config, {}, self.clock)
        self.live, self.registry = observability.live, observability.registry
        self.stats = LimitStats()
        self.listener = self.live.add_listener(LISTENER, set(), self.stats)
        self.listener._channels = {}

    def connect(self) -> H2Client:
        server = H2ServerConnection(StubResource(later), H2Limits(), self.clock, stats=self.stats)
        client = H2Client(server, self.clock)
        self.listener._channels[server] = 1
        return client

    def scrape(self, name: str) -> dict[str, float]:
        found = {}
        for line in generate_latest(self.registry).decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                key, _, value = line.rpartition(" ")
                found[key] = float(value)
        return found

    def test_open_connections_and_streams_in_flight_are_gauges(self) -> None:
        first, second = self.connect(), self.connect()
        first.request()
        first.request()
        second.request()
        self.assertEqual(
            (
                self.scrape("clbproxy_http2_connections_active"),
                self.scrape("clbproxy_http2_streams_active"),
                self.live.snapshot()["listeners"][0]["http2"],
            ),
            (
                {'clbproxy_http2_connections_active{listener="web"}': 2.0},
                {'clbproxy_http2_streams_active{listener="web"}': 3.0},
                {"connections": 2, "streams": 3},
            ),
        )

    def test_streams_opened_and_reset_are_counted_by_kind(self) -> None:
        client = self.connect()
        client.request()
        reset = client.request()
        client.h2.reset_stream(reset, ErrorCodes.CANCEL)
        client.pump()
        self.assertEqual(
            (
                self.scrape("clbproxy_http2_connections_total"),
                self.scrape("clbproxy_http2_streams_total"),
                self.scrape("clbproxy_http2_stream_resets_total"),
            ),
            (
                {'clbproxy_http2_connections_total{listener="web"}': 1.0},
                {'clbproxy_http2_streams_total{listener="web"}': 2.0},
                {
                    'clbproxy_http2_stream_resets_total{kind="refused",listener="web"}': 0.0,
                    'clbproxy_http2_stream_resets_total{kind="client",listener="web"}': 1.0,
                    'clbproxy_http2_stream_resets_total{kind="proxy",listener="web"}': 0.0,
                },
            ),
        )

    def test_streams_refused_by_a_connection_limit_are_limit_refusals(self) -> None:
        self.stats.increment("refused_streams_per_ip")
        refusals = self.scrape("clbproxy_limit_refusals_total")
        self.assertEqual(
            refusals[
                'clbproxy_limit_refusals_total{listener="web",reason="per_ip_stream_refused",'
                'status="none"}'
            ],
            1.0,
        )

    def test_workers_http2_counts_are_summed(self) -> None:
        def snapshot(connections: int, streams: int) -> dict:
            listener = {
                "name": "web",
                "connections": connections,
                "connections_total": connections,
                "sessions": 0,
                "http2": {"connections": connections, "streams": streams},
            }
            return {"listeners": [listener], "target_groups": []}

        snapshots = [({"pid": 1}, snapshot(1, 4)), ({"pid": 2}, snapshot(2, 1))]
        merged = merge_status(snapshots, "test.conf", 1.0)
        self.assertEqual(merged["listeners"][0]["http2"], {"connections": 3, "streams": 5})
