"""Tests for the candidates a :class:`TargetGroup` keeps between picks.

A first pick takes the list of backends in service worked out last time; every
change that moves a backend in or out of service (health, an ejection's end,
admin state, weight) must show on the very next pick, as it did when every
pick asked each backend.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from clbproxy.config import TargetGroupConfig
from clbproxy.config.upstream import BackendConfig, HealthCheckConfig
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.upstream.health.checks import GroupHealth

A = BackendConfig("10.0.0.1", 80)
B = BackendConfig("10.0.0.2", 80)


def picks(group: TargetGroup, n: int = 20) -> set:
    """The backends ``n`` first picks land on (None: none could take it)."""
    return {group.pick() for _ in range(n)}


class KeptCandidatesTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.group = TargetGroup(TargetGroupConfig(name="g", backends=(A, B)), self.clock)
        self.assertEqual(picks(self.group), {A, B})  # the list is kept from here on

    def eject(self, backend: BackendConfig) -> None:
        for _ in range(3):  # passive.failures' default
            self.group.report_failure(backend, "connection refused")

    def test_an_ejected_backend_leaves_at_once_and_comes_back_when_its_ejection_ends(self):
        self.eject(A)
        self.assertEqual(picks(self.group), {B})
        self.clock.advance(9.9)  # passive.ejection's default is 10 s
        self.assertEqual(picks(self.group), {B})
        self.clock.advance(0.1)
        self.assertEqual(picks(self.group), {A, B})

    def test_the_sooner_of_two_ejections_ending_brings_its_backend_back(self):
        self.eject(A)
        self.clock.advance(5)
        self.eject(B)  # both out: fail open to both
        self.assertEqual(picks(self.group), {A, B})
        self.clock.advance(5)  # A's ejection ends, B's has 5 s to go
        self.assertEqual(picks(self.group), {A})
        self.clock.advance(5)
        self.assertEqual(picks(self.group), {A, B})

    def test_a_drain_and_a_return_to_ready_show_on_the_next_pick(self):
        self.group.set_state(A.address, "drain")
        self.assertEqual(picks(self.group), {B})
        self.group.set_state(A.address, "ready")
        self.assertEqual(picks(self.group), {A, B})

    def test_a_weight_of_zero_and_back_shows_on_the_next_pick(self):
        self.group.set_weight(B.address, 0)
        self.assertEqual(picks(self.group), {A})
        self.group.set_weight(B.address, 5)
        self.assertEqual(picks(self.group), {A, B})

    def test_failed_active_checks_take_a_backend_out_at_once(self):
        for _ in range(HealthCheckConfig().unhealthy_threshold):
            self.group.health.check_failed(B, "status 500")
        self.assertEqual(picks(self.group), {A})
        for _ in range(HealthCheckConfig().healthy_threshold):
            self.group.health.check_passed(B)
        self.assertEqual(picks(self.group), {A, B})

    def test_a_retry_leaves_out_the_backend_tried(self):
        self.assertEqual({self.group.pick(exclude=[A]) for _ in range(5)}, {B})
        self.assertEqual(picks(self.group), {A, B})


class KeptCandidatesWithMaxConnsTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.a = BackendConfig("10.0.0.1", 80, max_conns=1)
        self.b = BackendConfig("10.0.0.2", 80, max_conns=1)
        config = TargetGroupConfig(name="g", backends=(self.a, self.b))
        self.group = TargetGroup(config, self.clock)
        picks(self.group)

    def test_fullness_is_read_on_every_pick(self):
        lease = self.group.acquire(self.a)
        self.assertEqual(picks(self.group), {self.b})
        other = self.group.acquire(self.b)
        self.assertEqual(picks(self.group), {None})  # all full: 503, not fail open
        lease.release()
        self.assertEqual(picks(self.group), {self.a})
        other.release()
        self.assertEqual(picks(self.group), {self.a, self.b})


class KeptAndWorkedOutAgreeTests(unittest.TestCase):
    """A first pick from the kept list answers as one that works the candidates out."""

    def groups(self, policy: str) -> tuple[TargetGroup, TargetGroup]:
        backends = (
            BackendConfig("10.0.0.1", 80, weight=30),
            BackendConfig("10.0.0.2", 80, weight=10),
            BackendConfig("10.0.0.3", 80, weight=20),
        )
        config = TargetGroupConfig(name="g", backends=backends, policy=policy)
        clock = task.Clock()
        kept = TargetGroup(config, clock)
        # A health given in place of the group's own: candidates worked out every pick.
        worked_out = TargetGroup(config, clock, health=GroupHealth(config, clock))
        return kept, worked_out

    def test_round_robin_picks_the_same_sequence(self):
        kept, worked_out = self.groups("round_robin")
        self.assertEqual([kept.pick() for _ in range(30)], [worked_out.pick() for _ in range(30)])

    def test_least_conn_sees_the_same_loads_and_a_reweighted_backend(self):
        kept, worked_out = self.groups("least_conn")
        for group in (kept, worked_out):
            group.set_weight("10.0.0.2:80", 40)
        answers = []
        for group in (kept, worked_out):
            chosen = []
            for _ in range(12):
                backend = group.pick()
                group.acquire(backend)  # held: the next pick sees its load
                chosen.append(backend.address)
            answers.append(chosen)
        self.assertEqual(answers[0], answers[1])
