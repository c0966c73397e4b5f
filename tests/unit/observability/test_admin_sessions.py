"""The admin actions that move sessions (shed, a drain that ends), and how they are shown."""

from __future__ import annotations

import json

from prometheus_client import generate_latest
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.config import (
    AdminConfig,
    BackendConfig,
    Config,
    ListenerConfig,
    RebalanceConfig,
    RuleConfig,
    TargetGroupConfig,
)
from clbproxy.observability.admin import AdminResource
from clbproxy.observability.aggregate import merge_status
from clbproxy.observability.service import Observability
from clbproxy.upstream.balancer import Lease, TargetGroup
from tests.unit.observability.test_admin import request

BACKEND = "127.0.0.1:8181"
OTHER = "127.0.0.1:8182"


class Session(Lease):
    closable = True

    def __init__(self, group, backend, opened):
        super().__init__(group, None)
        self.opened = opened
        self.reasons = []
        group.hold(self, backend)

    def last_activity(self):
        return None if self.released else self.opened

    def relieve(self, reason):
        self.reasons.append(reason)
        self.release()


class SessionActionTests(unittest.TestCase):
    def setUp(self):
        self.build(rebalance=None)

    def build(self, rebalance):
        group = TargetGroupConfig(
            name="pool",
            backends=(BackendConfig("127.0.0.1", 8181), BackendConfig("127.0.0.1", 8182)),
            policy="least_conn",
            rebalance=rebalance,
        )
        config = Config(
            path="test.conf",
            listeners=(
                ListenerConfig(name="web", bind="tcp:0", rules=(RuleConfig(target_group="pool"),)),
            ),
            target_groups=(group,),
            admin=AdminConfig(),
        )
        self.clock = Clock()
        self.group = TargetGroup(group, self.clock)
        self.group.rebalancer.start()
        self.addCleanup(self.group.rebalancer.stop)
        observability = Observability(config, {"pool": self.group}, self.clock)
        self.registry = observability.registry
        self.site = AdminResource(observability.live, observability.registry, config.admin)
        backend = self.group.backend(BACKEND)
        self.sessions = [Session(self.group, backend, i) for i in range(20)]

    def post(self, action, body):
        req = request(b"POST", f"/api/backends/pool/{BACKEND}/{action}".encode(), body=body)
        answer = self.site.render(req)
        return req.responseCode or 200, json.loads(answer)

    def relieved(self):
        return sum(1 for s in self.sessions if s.reasons)

    def test_shed_relieves_the_share_over_the_time_given(self):
        status, answer = self.post("shed", b'{"share": 0.5, "over": 2}')
        self.assertEqual((status, answer["shedding"], answer["state"]), (200, 10, "ready"))
        self.clock.advance(1.0)
        self.assertEqual(self.relieved(), 5)
        self.clock.advance(1.25)
        self.assertEqual(self.relieved(), 10)
        self.assertEqual({r for s in self.sessions for r in s.reasons}, {"rebalance"})

    def test_bad_shed_bodies_are_refused_with_400(self):
        for body in (b"{}", b'{"share": 2}', b'{"share": "half"}', b'{"share": 0.5, "over": -1}'):
            status, answer = self.post("shed", body)
            self.assertEqual(status, 400, body)
            self.assertIn("share" if b"over" not in body else "over", answer["error"])
        self.assertEqual(self.relieved(), 0)

    def test_a_drain_with_close_after_and_spread_ends(self):
        status, answer = self.post("drain", b'{"close_after": 5, "spread": 2}')
        self.assertEqual((status, answer["state"], answer["close_after"]), (200, "drain", 5.0))
        self.clock.advance(4.5)
        self.assertEqual(self.relieved(), 0)
        self.clock.pump([0.25] * 14)
        self.assertEqual(self.relieved(), 20)
        self.assertEqual({r for s in self.sessions for r in s.reasons}, {"drain"})

    def test_a_plain_drain_still_lives_forever(self):
        self.post("drain", b"{}")
        self.clock.pump([1.0] * 100)
        self.assertEqual(self.relieved(), 0)

    def test_a_plain_drain_cancels_a_planned_end(self):
        self.post("drain", b'{"close_after": 5}')
        self.post("drain", b"")
        self.clock.pump([1.0] * 10)
        self.assertEqual(self.relieved(), 0)

    def test_the_status_shows_rebalancing_and_relieved_sessions(self):
        self.build(rebalance=RebalanceConfig(max_ratio=2.0, closes_per_second=5))
        self.clock.pump([0.25] * 8)
        req = request(b"GET", b"/api/status")
        status = json.loads(self.site.render(req))
        (group,) = status["target_groups"]
        self.assertEqual(
            (group["rebalance"]["enabled"], group["rebalance"]["max_ratio"]), (True, 2.0)
        )
        relieved = group["rebalance"]["relieved"]
        self.assertGreater(relieved, 0)
        self.assertEqual([b["relieved"] for b in group["backends"]], [relieved, 0])
        self.assertIn(BACKEND, group["rebalance"]["last_action"]["text"])

    def test_the_metrics_count_relieved_sessions_by_group_backend_and_action(self):
        self.post("shed", b'{"share": 0.25, "over": 0}')
        text = generate_latest(self.registry).decode()
        self.assertIn(
            'clbproxy_rebalance_relieved_total{action="shed",backend="127.0.0.1:8181",'
            'group="pool"} 5.0',
            text,
        )


class MergedStatusTests(unittest.TestCase):
    def test_workers_relieved_counts_add_up_and_the_latest_action_shows(self):
        def snapshot(relieved, when):
            return {
                "listeners": [],
                "target_groups": [
                    {
                        "name": "pool",
                        "policy": "least_conn",
                        "rebalance": {
                            "enabled": True,
                            "relieved": relieved,
                            "last_action": {"time": when, "text": f"at {when}"},
                            "tasks": [],
                        },
                        "backends": [
                            {
                                "address": BACKEND,
                                "state": "ready",
                                "weight": 10,
                                "health": "healthy",
                                "health_detail": "",
                                "sessions": 1,
                                "relieved": relieved,
                                "recent_errors": [],
                            }
                        ],
                    }
                ],
            }

        merged = merge_status(
            [({"index": 0}, snapshot(3, 10.0)), ({"index": 1}, snapshot(4, 20.0))], "x", None
        )
        (group,) = merged["target_groups"]
        self.assertEqual(group["rebalance"]["relieved"], 7)
        self.assertEqual(group["rebalance"]["last_action"]["text"], "at 20.0")
        self.assertEqual(group["backends"][0]["relieved"], 7)
