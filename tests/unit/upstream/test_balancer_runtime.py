"""Runtime controls of a target group: drain, disable, enable and reweight act on ``pick``."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.upstream.balancer import TargetGroup, UnknownBackend

A, B = BackendConfig("10.0.0.1", 80), BackendConfig("10.0.0.2", 80)


def group():
    return TargetGroup(TargetGroupConfig(name="g", backends=(A, B)), MemoryReactorClock())


def addresses(g, n, exclude=()):
    return [g.pick(exclude=exclude).address for _ in range(n)]


class RuntimeControlTests(unittest.TestCase):
    def test_ready_backends_share_by_weight(self):
        self.assertEqual(sorted(addresses(group(), 4)), [A.address] * 2 + [B.address] * 2)

    def test_drained_and_disabled_backends_take_nothing_new(self):
        for state in ("drain", "maint"):
            g = group()
            g.set_state(A.address, state)
            self.assertEqual(set(addresses(g, 6)), {B.address})

    def test_enable_brings_a_backend_back(self):
        g = group()
        g.set_state(A.address, "maint")
        g.set_state(A.address, "ready")
        self.assertIn(A.address, addresses(g, 2))

    def test_all_out_of_service_is_none(self):
        g = group()
        g.set_state(A.address, "drain")
        g.set_state(B.address, "maint")
        self.assertIsNone(g.pick())

    def test_weight_changes_the_share_and_keeps_the_configured_one(self):
        g = group()
        control = g.set_weight(B.address, 30)
        self.assertEqual((control.weight, control.configured_weight), (30, 10))
        picks = addresses(g, 40)
        self.assertEqual((picks.count(A.address), picks.count(B.address)), (10, 30))

    def test_exclude_still_works_by_address(self):
        g = group()
        g.set_weight(B.address, 50)
        self.assertEqual(set(addresses(g, 5, exclude=[B])), {A.address})

    def test_bad_weights_and_unknown_backends_are_refused(self):
        g = group()
        for weight in (-1, 101, "5", True, 2.5):
            self.assertRaises(ValueError, g.set_weight, A.address, weight)
        self.assertRaises(UnknownBackend, g.set_state, "10.9.9.9:80", "drain")
        self.assertRaises(ValueError, g.set_state, A.address, "sleepy")
