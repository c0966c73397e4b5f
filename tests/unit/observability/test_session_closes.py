"""Sessions the proxy ended itself, as the live state (status page, metrics) reads them."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import ListenerConfig, RuleConfig
from clbproxy.listener.limits import LimitStats
from clbproxy.observability.livestate import ListenerState


class ProxyClosesTests(unittest.TestCase):
    def test_each_reason_is_counted_apart_and_unseen_ones_are_zero(self):
        stats = LimitStats()
        for name in (
            "websocket_closes_lifetime",
            "websocket_closes_lifetime",
            "websocket_closes_drain",
        ):
            stats.increment(name)
        listener = ListenerState(
            ListenerConfig(name="web", bind="tcp:0", rules=(RuleConfig(target_group="g"),)),
            stats=stats,
        )
        self.assertEqual(
            listener.proxy_closes(),
            {"rate_limit": 0, "lifetime": 2, "rebalance": 0, "drain": 1},
        )
