"""The client's address from a request's raw X-Forwarded-For values, as real_client_ip gives it."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.forwarded import TrustedProxies, claimed_client_ip, real_client_ip

TRUSTED = TrustedProxies.from_cidrs(["192.0.2.0/24"])


class ClaimedClientIpTests(unittest.TestCase):
    def test_without_the_header_the_client_is_the_peer(self):
        self.assertEqual(claimed_client_ip("192.0.2.1", None, TRUSTED), "192.0.2.1")

    def test_a_trusted_peer_names_the_client(self):
        claimed = [b"203.0.113.9, 192.0.2.7"]
        self.assertEqual(claimed_client_ip("192.0.2.1", claimed, TRUSTED), "203.0.113.9")

    def test_an_untrusted_peer_is_the_client_whatever_it_claims(self):
        client = claimed_client_ip("198.51.100.4", [b"203.0.113.9"], TRUSTED)
        self.assertEqual(client, "198.51.100.4")

    def test_the_answer_is_real_client_ips_for_the_decoded_values(self):
        claimed = [b"203.0.113.9", b"198.51.100.8, 192.0.2.7"]
        self.assertEqual(
            claimed_client_ip("192.0.2.1", claimed, TRUSTED),
            real_client_ip("192.0.2.1", [v.decode("latin-1") for v in claimed], TRUSTED),
        )
