"""Tests for :mod:`clbproxy.net.descriptors`: the connection budget of a descriptor limit."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.net.descriptors import (
    budget_warning,
    connection_budget,
    descriptor_reserve,
    effective_limit,
)


class BudgetTests(unittest.TestCase):
    def test_reserve_is_32_or_an_eighth_of_the_limit(self) -> None:
        cases = [(64, 32), (256, 32), (257, 32), (1024, 128), (4096, 512), (65536, 8192)]
        self.assertEqual([(limit, descriptor_reserve(limit)) for limit, _ in cases], cases)

    def test_budget_is_two_descriptors_per_connection_after_the_reserve(self) -> None:
        cases = [(64, 16), (65, 16), (256, 112), (1024, 448), (4096, 1792), (65536, 28672)]
        self.assertEqual([(limit, connection_budget(limit)) for limit, _ in cases], cases)

    def test_a_limit_below_the_reserve_still_allows_one_connection(self) -> None:
        cases = [(1, 1), (20, 1), (32, 1), (35, 1), (36, 2)]
        self.assertEqual([(limit, connection_budget(limit)) for limit, _ in cases], cases)

    def test_no_known_limit_gives_no_budget(self) -> None:
        self.assertEqual((connection_budget(0), connection_budget(-1)), (0, 0))


class EffectiveLimitTests(unittest.TestCase):
    def test_the_smaller_of_the_two_that_are_set(self) -> None:
        cases = [
            ((0, 0), 0),
            ((100, 0), 100),
            ((0, 448), 448),
            ((100, 448), 100),
            ((5000, 448), 448),
            ((448, 448), 448),
        ]
        self.assertEqual([(args, effective_limit(*args)) for args, _ in cases], cases)


class BudgetWarningTests(unittest.TestCase):
    def test_max_connections_over_the_budget_names_the_key_and_both_numbers(self) -> None:
        warning = budget_warning("tap.conf", 5000, 1024)
        self.assertEqual(
            warning,
            "tap.conf: max_connections = 5000 is more than the descriptor budget of 448 "
            "connections per process (RLIMIT_NOFILE 1024, 128 reserved, 2 per connection): "
            "accepting pauses at 448; raise the limit (ulimit -n) to allow more",
        )

    def test_no_warning_within_the_budget_unset_or_without_a_limit(self) -> None:
        self.assertEqual(
            [
                budget_warning("tap.conf", 448, 1024),
                budget_warning("tap.conf", 0, 1024),
                budget_warning("tap.conf", 5000, 0),
            ],
            [None, None, None],
        )
