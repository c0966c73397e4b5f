"""The forwarding headers a backend receives."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.forwarding import TrustedProxies, forwarded_headers, hop_by_hop_names


class ForwardedHeadersTests(unittest.TestCase):
    def test_direct_client(self):
        self.assertEqual(
            forwarded_headers(peer_ip="203.0.113.7", scheme="http", host="a.test"),
            [
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "a.test"),
                ("X-Real-IP", "203.0.113.7"),
            ],
        )

    def test_untrusted_peer_claims_are_appended_to_but_not_believed(self):
        headers = dict(
            forwarded_headers(
                peer_ip="203.0.113.7",
                scheme="http",
                host="a.test",
                forwarded_for=["1.2.3.4"],
                forwarded_proto="https",
                forwarded_host="evil.test",
            )
        )
        self.assertEqual(headers["X-Forwarded-For"], "1.2.3.4, 203.0.113.7")
        self.assertEqual(headers["X-Real-IP"], "203.0.113.7")
        self.assertEqual(headers["X-Forwarded-Proto"], "http")
        self.assertEqual(headers["X-Forwarded-Host"], "a.test")

    def test_trusted_chain_yields_the_rightmost_untrusted_address(self):
        trusted = TrustedProxies.from_cidrs(["10.0.0.0/8"])
        headers = dict(
            forwarded_headers(
                peer_ip="10.0.0.2",
                scheme="http",
                host="a.test",
                forwarded_for=["198.51.100.1, 192.0.2.9", "10.0.0.5"],
                forwarded_proto="https",
                trusted=trusted,
            )
        )
        self.assertEqual(headers["X-Forwarded-For"], "198.51.100.1, 192.0.2.9, 10.0.0.5, 10.0.0.2")
        self.assertEqual(headers["X-Real-IP"], "192.0.2.9")
        self.assertEqual(headers["X-Forwarded-Proto"], "https")

    def test_ipv4_mapped_peer_matches_ipv4_networks(self):
        self.assertIn("::ffff:10.1.2.3", TrustedProxies.from_cidrs(["10.0.0.0/8"]))
        self.assertNotIn("garbage", TrustedProxies.from_cidrs(["10.0.0.0/8"]))

    def test_connection_names_more_hop_by_hop_headers(self):
        names = hop_by_hop_names(["close, X-Private", "keep-alive"])
        self.assertIn("x-private", names)
        self.assertIn("transfer-encoding", names)
