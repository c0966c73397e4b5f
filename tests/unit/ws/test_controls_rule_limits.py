"""A rule's rate limits, read once while sessions keep coming on the same settings and rule."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.ws.controls import rule_limits


class _Settings:
    def __init__(self, limits):
        self.limits = limits
        self.reads = 0

    def rate_limits(self, rule):
        self.reads += 1
        return self.limits[rule]


class RuleLimitsTests(unittest.TestCase):
    def test_the_same_settings_and_rule_are_read_once(self):
        rule = object()
        settings = _Settings({rule: (1.0, 2, 0, 0, "close")})
        self.assertEqual(rule_limits(settings, rule), (1.0, 2, 0, 0, "close"))
        self.assertEqual(rule_limits(settings, rule), (1.0, 2, 0, 0, "close"))
        self.assertEqual(settings.reads, 1)

    def test_another_rule_or_reloaded_settings_are_read_afresh(self):
        first, second = object(), object()
        limits = {first: (1.0, 0, 0, 0, "close"), second: (0.0, 0, 5, 0, "close")}
        settings, reloaded = _Settings(limits), _Settings({first: (9.0, 0, 0, 0, "drop")})
        self.assertEqual(rule_limits(settings, first), (1.0, 0, 0, 0, "close"))
        self.assertEqual(rule_limits(settings, second), (0.0, 0, 5, 0, "close"))
        self.assertEqual(rule_limits(reloaded, first), (9.0, 0, 0, 0, "drop"))
        self.assertEqual(rule_limits(settings, first), (1.0, 0, 0, 0, "close"))
