"""``[target_group.NAME.rebalance]``: its keys, and the policies it makes sense with."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import RebalanceConfig
from tests.unit.config.loading import LoaderMixin, document


def rebalanced(policy: str = '"least_conn"', table: str = "", extra: str = "") -> str:
    return document(
        group={"policy": policy},
        extra="[target_group.demo.rebalance]\n" + table + extra,
    )


class RebalanceConfigTests(LoaderMixin, unittest.TestCase):
    def test_no_table_means_no_rebalancing(self) -> None:
        self.assertIsNone(self.load(document()).target_group("demo").rebalance)

    def test_an_empty_table_turns_it_on_with_the_defaults(self) -> None:
        group = self.load(rebalanced()).target_group("demo")
        self.assertEqual(group.rebalance, RebalanceConfig(max_ratio=1.5, closes_per_second=10.0))

    def test_its_keys_load_into_the_model(self) -> None:
        table = "max_ratio = 2\ncloses_per_second = 0.5\n"
        group = self.load(rebalanced('"random_two"', table)).target_group("demo")
        self.assertEqual(group.rebalance, RebalanceConfig(max_ratio=2.0, closes_per_second=0.5))

    def test_bad_values_are_one_line_each_naming_the_key(self) -> None:
        table = 'max_ratio = 1\ncloses_per_second = "fast"\nmaximum = 3\n'
        self.assertEqual(
            self.problems(rebalanced(table=table)),
            [
                "tap.conf: target_group.demo.rebalance: unknown key 'maximum'",
                "tap.conf: target_group.demo.rebalance.max_ratio: 1 out of range 1.05-100",
                "tap.conf: target_group.demo.rebalance.closes_per_second: expected a number, "
                "got a string",
            ],
        )

    def test_a_policy_that_would_not_move_the_client_is_refused(self) -> None:
        for policy in ('"round_robin"', '"consistent_hash"'):
            (problem,) = self.problems(rebalanced(policy))
            self.assertTrue(
                problem.startswith(
                    'tap.conf: target_group.demo.rebalance: needs policy = "least_conn" or '
                    '"random_two"'
                ),
                problem,
            )

    def test_persistence_that_would_send_the_client_back_is_refused(self) -> None:
        extra = '[target_group.demo.persistence]\ntype = "cookie"\n'
        self.assertEqual(
            self.problems(rebalanced(extra=extra)),
            [
                "tap.conf: target_group.demo.rebalance: cookie persistence would send a "
                "relieved client straight back to the same backend; remove one of the two "
                "tables"
            ],
        )

    def test_persistence_none_is_fine(self) -> None:
        extra = '[target_group.demo.persistence]\ntype = "none"\n'
        self.assertIsNotNone(self.load(rebalanced(extra=extra)).target_group("demo").rebalance)
