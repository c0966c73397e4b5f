"""A target group rebuilt by a reload takes over the live state of the one it replaces."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.upstream.balancer import TargetGroup, action_survives

A, B, C = (BackendConfig(f"10.0.0.{n}", 80) for n in (1, 2, 3))


def config(*backends, policy="least_conn", **fields):
    return TargetGroupConfig(name="g", backends=backends, policy=policy, **fields)


def reloaded(old, new_config):
    group = TargetGroup(new_config, Clock())
    group.take_over(old)
    return group


class TakeOverTests(unittest.TestCase):
    def test_live_sessions_are_counted_on_the_new_groups_backend(self):
        old = TargetGroup(config(A, B), Clock())
        for _ in range(3):
            old.acquire(A, close=lambda reason: None)
        new = reloaded(old, config(A, B, C))
        self.assertEqual((new.load(A), new.load(B), new.load(C)), (3, 0, 0))

    def test_a_carried_lease_is_released_on_the_new_group_once(self):
        old = TargetGroup(config(A, B), Clock())
        lease = old.acquire(A)
        new = reloaded(old, config(A, B))
        lease.release()
        lease.release()
        self.assertEqual((new.load(A), old.load(A)), (0, 0))

    def test_least_conn_after_a_reload_sends_new_sessions_to_the_emptier_backend(self):
        old = TargetGroup(config(A, B), Clock())
        for _ in range(4):
            old.acquire(A)
        old.acquire(B)
        new = reloaded(old, config(A, B, C))
        picks = [new.acquire(new.pick()).backend_config.address for _ in range(5)]
        self.assertEqual(picks.count(A.address), 0)
        self.assertEqual((new.load(A), new.load(B), new.load(C)), (4, 3, 3))

    def test_a_backend_with_a_new_weight_keeps_its_sessions(self):
        old = TargetGroup(config(A, B), Clock())
        old.acquire(A)
        heavier = attrs.evolve(A, weight=30)
        new = reloaded(old, config(heavier, B))
        self.assertEqual(new.load(heavier), 1)
        self.assertIs(new.leases(heavier)[0].backend_config, heavier)

    def test_leases_of_a_removed_backend_stay_with_the_old_group(self):
        old = TargetGroup(config(A, B), Clock())
        lease = old.acquire(B)
        new = reloaded(old, config(A))
        self.assertEqual((old.load(B), new.load(A)), (1, 0))
        lease.release()
        self.assertEqual(old.load(B), 0)

    def test_max_conns_counts_the_sessions_from_before_the_reload(self):
        old = TargetGroup(config(A), Clock())
        old.acquire(A)
        full = attrs.evolve(A, max_conns=1)
        new = reloaded(old, config(full))
        self.assertIsNone(new.pick())

    def test_the_count_of_traffic_sent_goes_on(self):
        old = TargetGroup(config(A, B), Clock())
        old.acquire(A).release()
        old.acquire(A).release()
        new = reloaded(old, config(A, B, C))
        self.assertEqual(new.sent(A), 2)

    def test_the_old_group_keeps_its_count_and_the_new_one_counts_on(self):
        old = TargetGroup(config(A, B), Clock())
        old.acquire(A).release()
        live = old.acquire(A)
        new = reloaded(old, config(A, B))
        new.acquire(A)
        live.release()
        self.assertEqual((old.sent(A), old.load(A)), (2, 0))
        self.assertEqual((new.sent(A), new.load(A)), (3, 1))

    def test_an_admin_drain_survives_a_reload_that_keeps_the_backend(self):
        old = TargetGroup(config(A, B), Clock())
        old.set_state(A.address, "drain")
        old.set_state(B.address, "maint")
        new = reloaded(old, config(A, B, C))
        self.assertEqual([c.state.value for c in new.controls()], ["drain", "maint", "ready"])

    def test_a_weight_override_survives_unless_tap_conf_changed_that_weight(self):
        old = TargetGroup(config(A, B), Clock())
        old.set_weight(A.address, 50)
        old.set_weight(B.address, 50)
        new = reloaded(old, config(A, attrs.evolve(B, weight=20), C))
        self.assertEqual([c.weight for c in new.controls()], [50, 20, 10])

    def test_the_reweighted_backend_takes_its_share_after_the_reload(self):
        old = TargetGroup(config(A, B, policy="round_robin"), Clock())
        old.set_weight(B.address, 30)
        new = reloaded(old, config(A, B, policy="round_robin", retries=2))
        picks = [new.pick().address for _ in range(40)]
        self.assertEqual((picks.count(A.address), picks.count(B.address)), (10, 30))


class ActionSurvivesTests(unittest.TestCase):
    def test_actions_on_kept_backends_survive(self):
        before, after = config(A, B), config(A, C)
        self.assertTrue(action_survives(before, after, A.address, "drain"))
        self.assertFalse(action_survives(before, after, B.address, "drain"))

    def test_a_weight_survives_only_while_tap_conf_keeps_that_weight(self):
        before = config(A, B)
        self.assertTrue(action_survives(before, config(A, B, C), A.address, "weight"))
        after = config(attrs.evolve(A, weight=5), B)
        self.assertFalse(action_survives(before, after, A.address, "weight"))
