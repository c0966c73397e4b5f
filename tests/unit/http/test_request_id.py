"""Request IDs: generated, kept from believed peers when well formed, replaced otherwise."""

from __future__ import annotations

import re

from twisted.trial import unittest

from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.request_id import OFF, RequestIds, new_request_id, well_formed

TRUSTED = TrustedProxies.from_cidrs(["10.0.0.0/8"])
POLICY = RequestIds("X-Request-Id", "trusted", TRUSTED)
HEX_ID = re.compile(r"[0-9a-f]{32}\Z")


class NewRequestIdTests(unittest.TestCase):
    def test_an_id_is_128_bits_as_32_hex_characters(self):
        self.assertRegex(new_request_id(), HEX_ID)

    def test_ids_are_unique_across_100k_generations(self):
        ids = {new_request_id() for _ in range(100_000)}
        self.assertEqual(len(ids), 100_000)


class WellFormedTests(unittest.TestCase):
    def test_common_id_formats_are_well_formed(self):
        for value in (
            b"0af7651916cd43dd8448eb211c80319c",
            b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            b"YWJjZGVm+/==",
            b"abc_DEF-123",
            b"1-5759e988-bd862e3fe1be46a994272793",
            b"req:42.7",
            b"a",
            b"x" * 200,
        ):
            self.assertTrue(well_formed(value), value)

    def test_ids_that_would_not_be_one_token_are_malformed(self):
        for value in (
            b"",
            b"x" * 201,
            b"a b",
            b"a,b",
            b"a;b",
            b'a"b',
            b"a\\b",
            b"a\tb",
            b"a\x00b",
            b"a\x7fb",
            b"caf\xc3\xa9",
            b"<script>",
        ):
            self.assertFalse(well_formed(value), value)


class ChooseTests(unittest.TestCase):
    def test_a_request_without_an_id_gets_a_new_one(self):
        self.assertRegex(POLICY.choose(None, "10.1.2.3"), HEX_ID)
        self.assertRegex(POLICY.choose([], "192.0.2.1"), HEX_ID)

    def test_an_id_from_a_trusted_proxy_is_kept(self):
        self.assertEqual(POLICY.choose([b"upstream-42"], "10.1.2.3"), "upstream-42")

    def test_an_id_from_an_untrusted_peer_is_replaced(self):
        chosen = POLICY.choose([b"upstream-42"], "192.0.2.1")
        self.assertNotEqual(chosen, "upstream-42")
        self.assertRegex(chosen, HEX_ID)

    def test_an_id_from_any_peer_is_kept_with_request_id_from_any(self):
        policy = RequestIds("X-Request-Id", "any", TRUSTED)
        self.assertEqual(policy.choose([b"client-7"], "192.0.2.1"), "client-7")

    def test_a_malformed_id_from_a_trusted_proxy_is_replaced(self):
        chosen = POLICY.choose([b"two words"], "10.1.2.3")
        self.assertRegex(chosen, HEX_ID)

    def test_two_ids_from_a_trusted_proxy_are_replaced(self):
        chosen = POLICY.choose([b"first", b"second"], "10.1.2.3")
        self.assertRegex(chosen, HEX_ID)

    def test_each_replacement_is_a_new_id(self):
        self.assertNotEqual(POLICY.choose(None, "10.1.2.3"), POLICY.choose(None, "10.1.2.3"))

    def test_no_id_when_ids_are_off(self):
        self.assertIsNone(OFF.choose([b"upstream-42"], "10.1.2.3"))
        self.assertFalse(OFF.enabled)

    def test_the_header_is_looked_up_in_lower_case(self):
        policy = RequestIds("X-Correlation-ID", "trusted", TRUSTED)
        self.assertEqual((policy.key, policy.raw_name), (b"x-correlation-id", b"X-Correlation-ID"))
