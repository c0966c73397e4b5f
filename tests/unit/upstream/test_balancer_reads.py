"""Whether a target group's picking reads the request (so a caller may skip describing it)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.config.upstream import PersistenceConfig
from clbproxy.upstream.balancer import RequestInfo, TargetGroup
from tests.unit.upstream.test_balancer import group_of

A = BackendConfig("10.0.0.1", 8001)
B = BackendConfig("10.0.0.2", 8002)


class ReadsRequestsTests(unittest.TestCase):
    def test_round_robin_least_conn_and_random_two_read_nothing(self):
        for policy in ("round_robin", "least_conn", "random_two"):
            self.assertFalse(group_of(A, B, policy=policy).reads_requests, policy)

    def test_consistent_hash_reads_the_request(self):
        group = group_of(A, B, policy="consistent_hash", hash_key="header:x-user")
        self.assertTrue(group.reads_requests)

    def test_session_persistence_reads_the_request(self):
        for kind in ("cookie", "source_ip"):
            group = group_of(A, B, persistence=PersistenceConfig(type=kind))
            self.assertTrue(group.reads_requests, kind)

    def test_a_pick_without_a_request_goes_round_robin_as_with_an_empty_one(self):
        described = group_of(A, B)
        undescribed = group_of(A, B)
        self.assertEqual(
            [described.pick(RequestInfo()) for _ in range(4)],
            [undescribed.pick(None) for _ in range(4)],
        )

    def test_a_weight_change_keeps_the_answer(self):
        group = group_of(A, B, policy="consistent_hash", hash_key="header:x-user")
        group.set_weight(A.address, 20)
        self.assertTrue(group.reads_requests)
        plain = group_of(A, B)
        plain.set_weight(A.address, 20)
        self.assertFalse(plain.reads_requests)


class _Recorded:
    """A session persistence that remembers nothing and notes each question asked of it."""

    def __init__(self, says_it_reads: bool) -> None:
        if not says_it_reads:
            self.reads_request = False
        self.asked: list[str] = []

    def lookup(self, request):
        self.asked.append("lookup")
        return None

    def remember(self, request, backend):
        self.asked.append("remember")
        return []


class PersistenceAskedTests(unittest.TestCase):
    def test_persistence_that_never_reads_requests_is_not_asked_per_pick(self):
        persistence = _Recorded(says_it_reads=False)
        group = TargetGroup(TargetGroupConfig("g", (A, B)), Clock(), persistence=persistence)
        group.pick()
        group.pick(exclude=[A])
        self.assertEqual(persistence.asked, [])
        self.assertFalse(group.persists)

    def test_persistence_that_may_read_requests_is_asked_on_every_pick(self):
        persistence = _Recorded(says_it_reads=True)
        group = TargetGroup(TargetGroupConfig("g", (A, B)), Clock(), persistence=persistence)
        group.pick()
        group.pick(exclude=[A])
        self.assertEqual(persistence.asked, ["lookup", "lookup"])
        self.assertTrue(group.persists)
