"""Under workers, the group's status sums each worker's proxy closes and rate throttles."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.observability.aggregate import merge_status


def snapshot(closes: dict, throttles: int) -> dict:
    listener = {
        "name": "web",
        "protocol": "http",
        "bind": "tcp:8080",
        "connections": 0,
        "connections_total": 0,
        "sessions": 0,
        "session_closes": closes,
        "rate_throttles": throttles,
        "rules": [],
    }
    return {"config": "tap.conf", "uptime": 1.0, "listeners": [listener], "target_groups": []}


class MergedClosesTests(unittest.TestCase):
    def test_closes_by_reason_and_throttles_are_summed_over_workers(self):
        merged = merge_status(
            [
                ({"index": 1}, snapshot({"lifetime": 2, "drain": 0}, 3)),
                ({"index": 2}, snapshot({"lifetime": 1, "drain": 4}, 1)),
            ],
            "tap.conf",
            None,
        )
        (listener,) = merged["listeners"]
        self.assertEqual(listener["session_closes"], {"lifetime": 3, "drain": 4})
        self.assertEqual(listener["rate_throttles"], 4)
