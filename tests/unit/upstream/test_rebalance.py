"""Rebalancing live sessions: the plan, the rate cap, shedding and drains that end."""

from __future__ import annotations

import collections
import math

import attrs
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.config import BackendConfig, RebalanceConfig, TargetGroupConfig
from clbproxy.upstream.balancer import Lease, TargetGroup
from clbproxy.upstream.rebalance import TICK, BackendLoad, CloseRate, plan

A, B, C = (BackendConfig(f"10.0.0.{n}", 80) for n in (1, 2, 3))


class Session(Lease):
    """A session lease that reconnects (through the group's pick) when relieved."""

    closable = True

    def __init__(self, group, backend, opened, clock, reconnect=True, journal=None):
        super().__init__(group, None)
        self.opened = opened
        self.clock = clock
        self.reconnect = reconnect
        self.relieved = []
        #: Every relief of this session and of the sessions its client reconnects with.
        self.journal = journal if journal is not None else []
        group.hold(self, backend)

    def last_activity(self):
        return None if self.released else self.opened

    def relieve(self, reason):
        relief = (self.clock.seconds(), self.backend_config.address, reason)
        self.relieved.append(relief)
        self.journal.append(relief)
        self.release()
        if self.reconnect:
            group = self.group
            now = self.clock.seconds()
            Session(group, group.pick(), now, self.clock, self.reconnect, self.journal)


def rebalanced_group(*backends, max_ratio=1.5, closes_per_second=10.0, clock=None, **fields):
    config = TargetGroupConfig(
        name="g",
        backends=backends,
        policy="least_conn",
        rebalance=RebalanceConfig(max_ratio=max_ratio, closes_per_second=closes_per_second),
        **fields,
    )
    return TargetGroup(config, clock or Clock())


def open_sessions(group, backend, count, clock, reconnect=True, start=0.0, journal=None):
    return [Session(group, backend, start + i, clock, reconnect, journal) for i in range(count)]


def run(group, clock, seconds):
    group.rebalancer.start()
    for _ in range(int(round(seconds / TICK))):
        clock.advance(TICK)
    group.rebalancer.stop()


def loads(group):
    return [group.load(b) for b in group.config.backends]


class PlanTests(unittest.TestCase):
    def test_backends_within_the_ratio_are_left_alone(self):
        backends = [BackendLoad("a", 10, 15, allowance=100), BackendLoad("b", 10, 10)]
        self.assertEqual(plan(backends, 1.5), {})

    def test_the_busiest_gives_sessions_until_the_spread_is_within_the_ratio(self):
        backends = [
            BackendLoad("a", 10, 100, allowance=100),
            BackendLoad("b", 10, 100, allowance=100),
            BackendLoad("c", 10, 0, allowance=100),
        ]
        closes = plan(backends, 1.5)
        after = {"a": 100 - closes["a"], "b": 100 - closes["b"], "c": sum(closes.values())}
        self.assertLessEqual(max(after.values()), 1.5 * min(after.values()))
        self.assertLessEqual(abs(closes["a"] - closes["b"]), 1)

    def test_weights_count_sessions_per_unit_of_weight(self):
        backends = [
            BackendLoad("a", 10, 30, allowance=100),
            BackendLoad("b", 20, 60, allowance=100),
        ]
        self.assertEqual(plan(backends, 1.1), {})
        backends[1] = BackendLoad("b", 40, 60, allowance=100)
        closes = plan(backends, 1.1)
        self.assertEqual(set(closes), {"a"})

    def test_no_backend_gives_more_than_its_allowance(self):
        backends = [BackendLoad("a", 10, 100, allowance=3), BackendLoad("b", 10, 0)]
        self.assertEqual(plan(backends, 1.5), {"a": 3})

    def test_a_move_that_would_turn_two_backends_round_is_not_made(self):
        self.assertEqual(
            plan([BackendLoad("a", 10, 1, allowance=9), BackendLoad("b", 10, 0)], 1.5), {}
        )
        self.assertEqual(
            plan([BackendLoad("a", 10, 2, allowance=9), BackendLoad("b", 10, 0)], 1.5), {"a": 1}
        )

    def test_expected_reconnections_count_on_their_backend(self):
        backends = [BackendLoad("a", 10, 70, allowance=100), BackendLoad("b", 10, 0, owed=40)]
        self.assertEqual(plan(backends, 1.5), {"a": 4})

    def test_a_full_backend_takes_no_more(self):
        backends = [
            BackendLoad("a", 10, 100, allowance=100),
            BackendLoad("b", 10, 0, room=5),
        ]
        self.assertEqual(plan(backends, 1.5), {"a": 5})


class CloseRateTests(unittest.TestCase):
    def test_never_more_than_the_rate_in_any_second(self):
        rate, now, times = CloseRate(10), 0.0, []
        for _ in range(40):
            allowed = rate.allowance(now)
            rate.spend(now, allowed)
            times += [now] * allowed
            now += TICK
        for start in times:
            self.assertLessEqual(sum(1 for t in times if start <= t < start + 1), 10)
        self.assertEqual(len(times), 100)

    def test_each_tick_uses_only_its_share(self):
        self.assertEqual(CloseRate(10).allowance(0.0), 3)

    def test_a_rate_below_one_is_one_close_per_period(self):
        rate = CloseRate(0.5)
        rate.spend(0.0, rate.allowance(0.0))
        self.assertEqual([rate.allowance(t) for t in (1.0, 1.99, 2.0)], [0, 0, 1])


class RebalancerTests(unittest.TestCase):
    def test_a_new_backend_gets_sessions_until_within_the_ratio(self):
        clock = Clock()
        group = rebalanced_group(A, B, C, closes_per_second=20, clock=clock)
        open_sessions(group, A, 100, clock)
        open_sessions(group, B, 100, clock)
        run(group, clock, 10)
        counts = loads(group)
        self.assertEqual(sum(counts), 200)
        self.assertLessEqual(max(counts), 1.5 * min(counts))

    def test_the_per_backend_rate_is_never_exceeded(self):
        clock = Clock()
        group = rebalanced_group(A, B, closes_per_second=8, max_ratio=1.05, clock=clock)
        journal = []
        open_sessions(group, A, 200, clock, journal=journal)
        run(group, clock, 20)
        times = sorted(t for t, _, _ in journal)
        self.assertGreater(len(times), 50)
        for start in times:
            self.assertLessEqual(sum(1 for t in times if start <= t < start + 1), 8)

    def test_it_stops_once_within_the_ratio(self):
        clock = Clock()
        group = rebalanced_group(A, B, closes_per_second=100, clock=clock)
        open_sessions(group, A, 100, clock)
        run(group, clock, 5)
        relieved = sum(group.rebalancer.relieved.values())
        run(group, clock, 5)
        self.assertEqual(sum(group.rebalancer.relieved.values()), relieved)
        self.assertLessEqual(relieved, 50)

    def test_the_quietest_sessions_go_first(self):
        clock = Clock()
        clock.advance(1000)
        group = rebalanced_group(A, B, closes_per_second=1, clock=clock)
        sessions = open_sessions(group, A, 10, clock, reconnect=False, start=500)
        run(group, clock, TICK)
        self.assertEqual([bool(s.relieved) for s in sessions], [True] + [False] * 9)

    def test_drained_and_unhealthy_backends_are_left_out(self):
        for spoil in ("drain", "unhealthy"):
            clock = Clock()
            group = rebalanced_group(A, B, C, closes_per_second=100, clock=clock)
            open_sessions(group, A, 50, clock)
            open_sessions(group, B, 50, clock)
            if spoil == "drain":
                group.set_state(C.address, "drain")
            else:
                for _ in range(3):
                    group.report_failure(C, "connection refused")
            run(group, clock, 5)
            self.assertEqual(loads(group), [50, 50, 0], spoil)
            self.assertEqual(sum(group.rebalancer.relieved.values()), 0, spoil)

    def test_sessions_of_a_drained_backend_are_not_rebalanced(self):
        clock = Clock()
        group = rebalanced_group(A, B, closes_per_second=100, clock=clock)
        open_sessions(group, A, 50, clock)
        group.set_state(A.address, "drain")
        run(group, clock, 5)
        self.assertEqual(loads(group), [50, 0])

    def test_a_raised_weight_draws_sessions(self):
        clock = Clock()
        group = rebalanced_group(A, B, closes_per_second=100, clock=clock)
        open_sessions(group, A, 50, clock)
        open_sessions(group, B, 50, clock)
        group.set_weight(B.address, 40)
        run(group, clock, 5)
        a, b = loads(group)
        self.assertLessEqual((a / 10) / (b / 40), 1.5)

    def test_nothing_ticks_without_rebalancing_or_tasks(self):
        clock = Clock()
        group = TargetGroup(TargetGroupConfig(name="g", backends=(A, B)), clock)
        group.rebalancer.start()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_relieved_sessions_are_counted_by_backend(self):
        clock = Clock()
        group = rebalanced_group(A, B, closes_per_second=100, clock=clock)
        open_sessions(group, A, 10, clock)
        run(group, clock, 2)
        self.assertEqual(dict(group.rebalancer.relieved), {(A.address, "rebalance"): 4})
        status = group.rebalancer.status()
        self.assertEqual((status["enabled"], status["relieved"]), (True, 4))
        self.assertIn(A.address, status["last_action"]["text"])


class SheddingTests(unittest.TestCase):
    def test_a_share_is_relieved_evenly_over_the_time_given(self):
        clock = Clock()
        group = TargetGroup(TargetGroupConfig(name="g", backends=(A, B)), clock)
        sessions = open_sessions(group, A, 40, clock, reconnect=False)
        group.rebalancer.start()
        self.assertEqual(group.rebalancer.shed(A.address, 0.5, 4.0), 20)
        done = []
        for _ in range(6):
            clock.advance(1.0)
            done.append(sum(1 for s in sessions if s.relieved))
        self.assertEqual(done, [5, 10, 15, 20, 20, 20])
        self.assertEqual(group.rebalancer.tasks, [])

    def test_shedding_over_no_time_relieves_at_once(self):
        clock = Clock()
        group = TargetGroup(TargetGroupConfig(name="g", backends=(A,)), clock)
        sessions = open_sessions(group, A, 10, clock, reconnect=False)
        group.rebalancer.shed(A.address, 0.3, 0)
        self.assertEqual(sum(1 for s in sessions if s.relieved), 3)
        self.assertEqual({s.relieved[0][2] for s in sessions if s.relieved}, {"rebalance"})


class DrainThatEndsTests(unittest.TestCase):
    def drained(self, close_after, spread, count=30):
        clock = Clock()
        group = TargetGroup(TargetGroupConfig(name="g", backends=(A, B)), clock)
        sessions = open_sessions(group, A, count, clock, reconnect=False)
        group.rebalancer.start()
        group.set_state(A.address, "drain")
        group.rebalancer.drain(A.address, close_after, spread)
        return clock, group, sessions

    def test_sessions_stay_for_the_grace_then_go_over_the_spread(self):
        clock, group, sessions = self.drained(close_after=10, spread=3)
        relieved = []
        for _ in range(14):
            clock.advance(1.0)
            relieved.append(sum(1 for s in sessions if s.relieved))
        self.assertEqual(relieved[:9], [0] * 9)
        self.assertEqual(relieved[10:13], [10, 20, 30])
        self.assertEqual({s.relieved[0][2] for s in sessions}, {"drain"})
        self.assertEqual(group.load(A), 0)

    def test_enabling_the_backend_cancels_the_end(self):
        clock, group, sessions = self.drained(close_after=5, spread=0)
        group.set_state(A.address, "ready")
        clock.advance(10)
        self.assertEqual(sum(1 for s in sessions if s.relieved), 0)
        self.assertEqual(group.rebalancer.tasks, [])

    def test_a_drain_under_way_survives_a_reload_that_keeps_the_backend(self):
        clock, group, sessions = self.drained(close_after=2, spread=0)
        new = TargetGroup(attrs.evolve(group.config, retries=3), clock)
        new.take_over(group)
        group.rebalancer.stop()
        new.rebalancer.start()
        clock.advance(3)
        self.assertEqual(sum(1 for s in sessions if s.relieved), 30)
        self.assertEqual(new.load(A), 0)
        self.assertEqual(new.rebalancer.relieved[A.address, "drain"], 30)


class ExpectedCountTests(unittest.TestCase):
    def test_two_hundred_sessions_and_a_third_backend_within_the_bound(self):
        clock = Clock()
        group = rebalanced_group(A, B, C, closes_per_second=50, clock=clock)
        journal = []
        open_sessions(group, A, 100, clock, journal=journal)
        open_sessions(group, B, 100, clock, journal=journal)
        to_move = 200 - 2 * math.floor(200 / 3)
        run(group, clock, math.ceil(to_move / 50) + 1)
        counts = loads(group)
        self.assertLessEqual(max(counts), 1.5 * min(counts))
        per_second = collections.Counter((math.floor(t), address) for t, address, _ in journal)
        self.assertLessEqual(max(per_second.values()), 50)
        self.assertLessEqual(len(journal), to_move)
