"""Smooth weighted round robin, as nginx does it."""

from __future__ import annotations

from collections import Counter

from twisted.trial import unittest

from clbproxy.balancer import SmoothWeightedRoundRobin, TargetGroup
from clbproxy.config import BackendConfig, TargetGroupConfig

A = BackendConfig("10.0.0.1", 80, weight=5)
B = BackendConfig("10.0.0.2", 80, weight=1)
C = BackendConfig("10.0.0.3", 80, weight=1)


class SmoothWeightedRoundRobinTests(unittest.TestCase):
    def test_nginx_sequence_for_weights_5_1_1(self):
        policy = SmoothWeightedRoundRobin([A, B, C])
        picks = [policy.pick() for _ in range(7)]
        self.assertEqual(picks, [A, A, B, A, C, A, A])

    def test_distribution_matches_weights_over_many_picks(self):
        backends = [BackendConfig(f"10.0.0.{i}", 80, weight=w) for i, w in enumerate([10, 30, 60])]
        policy = SmoothWeightedRoundRobin(backends)
        counts = Counter(policy.pick() for _ in range(1000))
        self.assertEqual([counts[b] for b in backends], [100, 300, 600])

    def test_weight_zero_takes_no_traffic(self):
        idle = BackendConfig("10.0.0.9", 80, weight=0)
        policy = SmoothWeightedRoundRobin([idle, B])
        self.assertEqual({policy.pick() for _ in range(10)}, {B})

    def test_excluded_backends_are_skipped(self):
        policy = SmoothWeightedRoundRobin([A, B])
        self.assertEqual({policy.pick(exclude=[A]) for _ in range(10)}, {B})
        self.assertIsNone(policy.pick(exclude=[A, B]))

    def test_empty_group_picks_nothing(self):
        group = TargetGroup(TargetGroupConfig(name="g", backends=()))
        self.assertIsNone(group.pick())
