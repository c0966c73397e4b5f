"""The forwarding headers a backend receives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.http.forwarded import (
    FORWARDING_HEADERS,
    TrustedProxies,
    client_header_passes,
    forwarded_headers,
    hop_by_hop_names,
    is_hop_by_hop,
    untrusted_headers,
)


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

    def test_proxy_and_every_proxy_header_are_hop_by_hop(self):
        hop = hop_by_hop_names(["X-Private"])
        self.assertEqual(
            [
                is_hop_by_hop(name, hop)
                for name in ("Proxy", "Proxy-Status", "proxy-authorization", "X-Private")
            ],
            [True, True, True, True],
        )
        self.assertEqual(
            [is_hop_by_hop(name, hop) for name in ("Proxyish", "X-Proxy", "Host")],
            [False, False, False],
        )

    def test_connection_cannot_nominate_the_headers_the_proxy_relies_on(self):
        names = hop_by_hop_names(["Host, Content-Length", "forwarded,X-Real-IP, X-Forwarded-For"])
        self.assertEqual(
            names & {"host", "content-length", "forwarded", "x-real-ip", "x-forwarded-for"},
            set(),
        )

    def test_connection_naming_framing_headers_keeps_them_hop_by_hop(self):
        names = hop_by_hop_names(["Transfer-Encoding, Upgrade"])
        self.assertTrue({"transfer-encoding", "upgrade"} <= names)


class ClientHeaderTests(unittest.TestCase):
    """Which client request headers may reach a backend."""

    def test_a_name_with_an_underscore_is_dropped_by_default(self):
        self.assertEqual(
            [client_header_passes(name, frozenset()) for name in ("X_Custom", "X-Custom")],
            [False, True],
        )

    def test_a_name_with_an_underscore_passes_when_the_listener_allows_them(self):
        self.assertTrue(client_header_passes("X_Custom", frozenset(), underscores=True))

    def test_underscore_spellings_of_our_headers_never_pass(self):
        spellings = [name.replace("-", "_").title() for name in FORWARDING_HEADERS]
        spellings += ["X-Forwarded_For", "x_real-ip", "X_CLIENT_CERT_SUBJECT"]
        self.assertEqual(
            [
                name
                for name in spellings
                if client_header_passes(name, frozenset(), underscores=True)
            ],
            [],
        )

    def test_underscore_spellings_of_the_rules_headers_never_pass(self):
        self.assertEqual(
            [
                client_header_passes(name, frozenset(), underscores=True, ours={"x-role"})
                for name in ("X_Role", "x-ROLE_", "X_Roles")
            ],
            [False, True, True],
        )

    def test_hop_by_hop_and_skipped_names_do_not_pass(self):
        skip = hop_by_hop_names(["X-Private"]) | {"x-dropped"}
        self.assertEqual(
            [
                client_header_passes(name, skip, underscores=True)
                for name in ("X-Private", "x-dropped", "Proxy", "Keep-Alive", "Accept")
            ],
            [False, False, False, False, True],
        )

    def test_forwarded_is_dropped_from_an_untrusted_peer_only(self):
        trusted = TrustedProxies.from_cidrs(["10.0.0.0/8"])
        self.assertEqual(
            (untrusted_headers("192.0.2.1", trusted), untrusted_headers("10.1.2.3", trusted)),
            (frozenset({"forwarded"}), frozenset()),
        )


_ipv4 = st.ip_addresses(v=4).map(str)
_ip = st.ip_addresses().map(str)


class ForwardingProperties(unittest.TestCase):
    @given(
        _ip, st.lists(st.text(max_size=30), max_size=4), st.text(max_size=20), st.text(max_size=20)
    )
    def test_an_untrusted_peer_is_the_real_ip_and_its_claims_are_replaced(
        self, peer, chain, proto, host
    ):
        headers = dict(
            forwarded_headers(
                peer_ip=peer,
                scheme="http",
                host="site.example",
                forwarded_for=chain,
                forwarded_proto=proto,
                forwarded_host=host,
            )
        )
        self.assertEqual(headers["X-Real-IP"], peer)
        self.assertEqual(headers["X-Forwarded-Proto"], "http")
        self.assertEqual(headers["X-Forwarded-Host"], "site.example")
        self.assertTrue(headers["X-Forwarded-For"].endswith(peer))

    @given(st.lists(_ipv4, max_size=6), _ipv4)
    def test_a_trusted_chain_yields_its_rightmost_untrusted_address(self, chain, client):
        trusted = TrustedProxies.from_cidrs(["10.0.0.0/8"])
        proxies = [f"10.0.0.{i}" for i in range(len(chain) % 3)]
        xff = [", ".join([*chain, client, *proxies])]
        headers = dict(
            forwarded_headers(
                peer_ip="10.9.9.9", scheme="https", host=None, forwarded_for=xff, trusted=trusted
            )
        )
        expected = client if client not in trusted else None
        if expected is not None:
            self.assertEqual(headers["X-Real-IP"], client)
        self.assertEqual(
            headers["X-Forwarded-For"], ", ".join([*chain, client, *proxies, "10.9.9.9"])
        )

    @given(st.lists(st.text(max_size=40), max_size=5))
    def test_hop_by_hop_names_always_include_the_fixed_set_and_are_lowercase(self, values):
        names = hop_by_hop_names(values)
        self.assertTrue({"connection", "upgrade", "transfer-encoding"} <= names)
        self.assertTrue(all(name == name.lower().strip() and name for name in names))

    @given(st.text(max_size=60))
    def test_membership_never_raises(self, text):
        trusted = TrustedProxies.from_cidrs(["10.0.0.0/8", "::1/128"])
        self.assertIn(text in trusted, (True, False))
