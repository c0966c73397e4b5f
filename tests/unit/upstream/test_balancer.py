"""Balancing policies, leases, drain, max_conns and fail-open of target groups."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.upstream.balancer import (
    ConsistentHash,
    IBalancingPolicy,
    RandomTwoChoices,
    RequestInfo,
    SmoothWeightedRoundRobin,
    TargetGroup,
    parse_cookies,
)

A = BackendConfig("10.0.0.1", 80, weight=5)
B = BackendConfig("10.0.0.2", 80, weight=1)
C = BackendConfig("10.0.0.3", 80, weight=1)


class CookieParsingProperties(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.one_of(
            st.text(),
            st.lists(st.sampled_from(["a", "=", ";", " ", '"', "b=1", "\x00", "é"])).map("".join),
        )
    )
    def test_any_cookie_header_gives_names_and_values(self, header) -> None:
        cookies = parse_cookies(header)
        for name, value in cookies.items():
            self.assertTrue(name)
            self.assertNotIn(";", name + value)
            self.assertNotIn("=", name)
            self.assertIn(name, header)

    def test_the_first_of_a_repeated_name_wins(self) -> None:
        self.assertEqual(parse_cookies('a=1; b="2"; a=3; =4; c'), {"a": "1", "b": "2"})


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


def group_of(*backends, clock=None, **options) -> TargetGroup:
    config = TargetGroupConfig(name="g", backends=tuple(backends), **options)
    return TargetGroup(config, clock or task.Clock())


def info(ip="192.0.2.1", **kwargs) -> RequestInfo:
    return RequestInfo(client_ip=ip, **kwargs)


class PolicyInterfaceTests(unittest.TestCase):
    def test_every_policy_provides_the_interface(self):
        for policy in ("round_robin", "least_conn", "consistent_hash", "random_two"):
            group = group_of(A, B, policy=policy)
            self.assertTrue(verifyObject(IBalancingPolicy, group.policy), policy)
            self.assertEqual(group.policy.name, policy)


class WeightedLeastConnectionsTests(unittest.TestCase):
    def test_new_sessions_go_to_the_backend_with_fewest_live_sessions(self):
        x, y = BackendConfig("10.0.0.1", 80), BackendConfig("10.0.0.2", 80)
        group = group_of(x, y, policy="least_conn")
        held = [group.acquire(x) for _ in range(3)]
        picks = []
        for _ in range(3):
            backend = group.pick(info())
            picks.append(backend)
            group.acquire(backend)
        self.assertEqual(picks, [y, y, y])
        for lease in held:
            lease.release()
        self.assertEqual(group.pick(info()), x)

    def test_load_is_divided_by_weight(self):
        heavy = BackendConfig("10.0.0.1", 80, weight=30)
        light = BackendConfig("10.0.0.2", 80, weight=10)
        group = group_of(heavy, light, policy="least_conn")
        for _ in range(40):
            group.acquire(group.pick(info()))
        self.assertEqual((group.load(heavy), group.load(light)), (30, 10))

    def test_release_is_idempotent(self):
        group = group_of(A, policy="least_conn")
        lease = group.acquire(A)
        lease.release()
        lease.release()
        self.assertEqual(group.load(A), 0)


class ConsistentHashTests(unittest.TestCase):
    def backends(self, count):
        return [BackendConfig(f"10.0.1.{i}", 8080) for i in range(count)]

    def test_adding_a_backend_moves_at_most_1_3_over_n_of_keys(self):
        keys = [f"198.51.{i // 256}.{i % 256}" for i in range(20000)]
        for count in (3, 5, 8):
            before = ConsistentHash(self.backends(count))
            after = ConsistentHash(self.backends(count + 1))
            everyone = self.backends(count + 1)
            moved = sum(
                before.pick(everyone[:count], info(k), len) != after.pick(everyone, info(k), len)
                for k in keys
            )
            self.assertLessEqual(moved / len(keys), 1.3 / (count + 1), count)

    def test_same_key_same_backend_and_keys_spread_by_weight(self):
        heavy = BackendConfig("10.0.0.1", 80, weight=30)
        light = BackendConfig("10.0.0.2", 80, weight=10)
        group = group_of(heavy, light, policy="consistent_hash")
        picks = Counter(group.pick(info(f"203.0.113.{i % 250}.{i}")) for i in range(8000))
        share = picks[heavy] / 8000
        self.assertTrue(0.68 <= share <= 0.82, share)
        self.assertEqual(len({group.pick(info("203.0.113.7")) for _ in range(20)}), 1)

    def test_a_backend_out_of_service_moves_only_its_own_keys(self):
        backends = self.backends(4)
        group = group_of(*backends, policy="consistent_hash")
        keys = [f"k{i}" for i in range(2000)]
        before = {k: group.pick(info(k)) for k in keys}
        after = {k: group.pick(info(k), exclude=[backends[0]]) for k in keys}
        moved = [k for k in keys if before[k] != after[k]]
        self.assertTrue(moved)
        self.assertTrue(all(before[k] == backends[0] for k in moved))

    def test_hash_on_header_cookie_and_query(self):
        backends = self.backends(5)
        for hash_key, make in (
            ("header:x-user", lambda v: RequestInfo(client_ip="1.1.1.1", headers={"x-user": v})),
            ("cookie:uid", lambda v: RequestInfo(client_ip="1.1.1.2", cookies={"uid": v})),
            ("query:room", lambda v: RequestInfo(client_ip="1.1.1.3", query={"room": v})),
        ):
            policy = ConsistentHash(backends, hash_key)
            for value in ("alice", "bob", "carol"):
                self.assertEqual(
                    policy.pick(backends, make(value), len),
                    ConsistentHash(backends, hash_key).pick(backends, make(value), len),
                )
            spread = {policy.pick(backends, make(f"user{i}"), len) for i in range(200)}
            self.assertEqual(len(spread), 5, hash_key)

    def test_request_without_the_key_is_round_robined(self):
        backends = self.backends(3)
        group = group_of(*backends, policy="consistent_hash", hash_key="header:x-user")
        self.assertEqual([group.pick(info()) for _ in range(3)], backends)


class RandomTwoChoicesTests(unittest.TestCase):
    def test_the_less_loaded_of_two_wins(self):
        x, y = BackendConfig("10.0.0.1", 80), BackendConfig("10.0.0.2", 80)
        policy = RandomTwoChoices(random.Random(7))
        loads = {x: 5, y: 0}
        self.assertEqual({policy.pick([x, y], info(), loads.get) for _ in range(50)}, {y})

    def test_distribution_follows_weights_when_idle(self):
        heavy = BackendConfig("10.0.0.1", 80, weight=30)
        light = BackendConfig("10.0.0.2", 80, weight=10)
        third = BackendConfig("10.0.0.3", 80, weight=10)
        policy = RandomTwoChoices(random.Random(1))
        counts = Counter(
            policy.pick([heavy, light, third], info(), lambda b: 0) for _ in range(6000)
        )
        self.assertGreater(counts[heavy], counts[light] * 1.5)


class DrainAndCapTests(unittest.TestCase):
    def test_weight_zero_gets_no_new_sessions_but_existing_ones_continue(self):
        drained = BackendConfig("10.0.0.1", 80, weight=0)
        group = group_of(drained, B, policy="least_conn")
        lease = group.acquire(drained)
        self.assertEqual({group.pick(info()) for _ in range(10)}, {B})
        self.assertEqual(group.load(drained), 1)
        lease.release()

    def test_a_full_backend_is_skipped_and_all_full_picks_nothing(self):
        small = BackendConfig("10.0.0.1", 80, max_conns=1)
        other = BackendConfig("10.0.0.2", 80, max_conns=2)
        group = group_of(small, other)
        leases = [group.acquire(group.pick(info())) for _ in range(3)]
        self.assertEqual(sorted(lease.backend_config.port for lease in leases), [80, 80, 80])
        self.assertEqual((group.load(small), group.load(other)), (1, 2))
        self.assertIsNone(group.pick(info()))
        leases[0].release()
        self.assertIsNotNone(group.pick(info()))


class FailOpenTests(unittest.TestCase):
    def eject_all(self, group, *backends):
        for backend in backends:
            for _ in range(3):
                group.report_failure(backend, "connection refused")

    def test_all_unhealthy_fails_open_to_all_and_logs_it(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        group = group_of(A, B)
        self.eject_all(group, A, B)
        self.assertEqual({group.pick(info()) for _ in range(10)}, {A, B})
        self.assertTrue(any("failing open" in e.get("log_format", "") for e in events))

    def test_fail_closed_picks_nothing(self):
        group = group_of(A, B, fail_open=False)
        self.eject_all(group, A, B)
        self.assertIsNone(group.pick(info()))

    def test_one_healthy_backend_takes_everything(self):
        group = group_of(A, B)
        self.eject_all(group, A)
        self.assertEqual({group.pick(info()) for _ in range(10)}, {B})
