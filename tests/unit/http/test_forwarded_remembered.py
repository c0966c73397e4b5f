"""hop_by_hop_names remembers short Connection values, and forwarded_headers' two shapes."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http import forwarded
from clbproxy.http.forwarded import HOP_BY_HOP, TrustedProxies, forwarded_headers, hop_by_hop_names


class HopByHopRememberedTests(unittest.TestCase):
    def test_values_asked_again_give_the_same_names(self) -> None:
        for _ in range(2):
            self.assertEqual(hop_by_hop_names(["Upgrade, X-Mine"]), HOP_BY_HOP | {"x-mine"})
            self.assertEqual(hop_by_hop_names(iter(["Upgrade, X-Mine"])), HOP_BY_HOP | {"x-mine"})

    def test_long_values_are_not_remembered(self) -> None:
        long = ", ".join(f"x-{index}" for index in range(100))
        names = hop_by_hop_names([long])
        self.assertIn("x-99", names)
        self.assertNotIn((long,), forwarded._HOP_NAMES)

    def test_the_values_remembered_are_bounded(self) -> None:
        for index in range(forwarded._MAX_HOP_NAMES + 10):
            self.assertIn(f"x-{index}", hop_by_hop_names([f"X-{index}"]))
            self.assertLessEqual(len(forwarded._HOP_NAMES), forwarded._MAX_HOP_NAMES)


class ForwardedShapesTests(unittest.TestCase):
    def test_with_a_host_and_a_port_all_five_headers_come_in_order(self) -> None:
        self.assertEqual(
            forwarded_headers(peer_ip="203.0.113.7", scheme="https", host="a.test", port=443),
            [
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "a.test"),
                ("X-Forwarded-Port", "443"),
                ("X-Real-IP", "203.0.113.7"),
            ],
        )

    def test_without_a_host_the_port_still_comes_before_the_real_ip(self) -> None:
        self.assertEqual(
            forwarded_headers(peer_ip="203.0.113.7", scheme="http", host="", port=80),
            [
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Port", "80"),
                ("X-Real-IP", "203.0.113.7"),
            ],
        )

    def test_a_trusted_peers_claimed_host_stands_for_a_missing_one(self) -> None:
        headers = forwarded_headers(
            peer_ip="10.0.0.2",
            scheme="http",
            host=None,
            forwarded_host="b.test",
            trusted=TrustedProxies.from_cidrs(["10.0.0.0/8"]),
            port=8080,
        )
        self.assertEqual(dict(headers)["X-Forwarded-Host"], "b.test")

    def test_a_trusted_peer_without_a_chain_is_the_real_ip(self) -> None:
        headers = forwarded_headers(
            peer_ip="10.0.0.2",
            scheme="http",
            host="a.test",
            trusted=TrustedProxies.from_cidrs(["10.0.0.0/8"]),
        )
        self.assertEqual(dict(headers)["X-Real-IP"], "10.0.0.2")
        self.assertEqual(dict(headers)["X-Forwarded-For"], "10.0.0.2")
