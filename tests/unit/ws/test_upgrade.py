"""The upgrade checks, rule by rule: RFC 6455 4.1/4.2.1 and RFC 7692 7.1, statuses and reasons.

Their agreement with Autobahn on a generated corpus is
``tests/unit/ws/test_upgrade_differential.py``.
"""

from __future__ import annotations

from typing import Optional

from twisted.trial import unittest

from clbproxy.ws.upgrade import (
    GUID,
    BackendAcceptance,
    BadBackendAnswer,
    ClientUpgrade,
    DeflateOffer,
    UpgradeRefused,
    accept_value,
    check_backend_answer,
    check_client_upgrade,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
VALID = (
    ("Host", "public.test"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
)


def request(
    *extra: tuple[str, str], without: tuple[str, ...] = (), **replace: str
) -> list[tuple[bytes, bytes]]:
    """A valid request's headers, some dropped or replaced (``Sec_WebSocket_Key=``), some added."""
    replaced = {name.replace("_", "-").lower(): value for name, value in replace.items()}
    headers = [
        (name, replaced.get(name.lower(), value)) for name, value in VALID if name not in without
    ]
    headers += [(name, value) for name, value in extra]
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


def check(*extra: tuple[str, str], method=b"GET", version=b"HTTP/1.1", **kw) -> ClientUpgrade:
    return check_client_upgrade(method, version, request(*extra, **kw))


class ClientUpgradeTests(unittest.TestCase):
    def refused(self, *extra, **kw) -> UpgradeRefused:
        with self.assertRaises(UpgradeRefused) as caught:
            check(*extra, **kw)
        return caught.exception

    def assertRefused(self, detail: str, *extra, status: int = 400, **kw) -> None:
        refusal = self.refused(*extra, **kw)
        self.assertEqual((refusal.status, refusal.detail), (status, detail))

    def test_a_valid_request_is_described_for_the_backend(self):
        self.assertEqual(
            check(),
            ClientUpgrade(
                key=KEY, protocols=(), deflate_offer=None, deflate_params=None, origin=None
            ),
        )

    def test_a_request_that_is_not_http_1_1_is_400(self):
        self.assertRefused(
            "a WebSocket handshake needs HTTP/1.1 (RFC 6455 4.1)", version=b"HTTP/1.0"
        )

    def test_a_method_other_than_get_is_405_naming_get(self):
        refusal = self.refused(method=b"POST")
        self.assertEqual(refusal.status, 405)
        self.assertEqual(refusal.headers, (("Allow", "GET"),))

    def test_the_method_is_case_sensitive(self):
        self.assertEqual(self.refused(method=b"get").status, 405)

    def test_a_request_without_host_is_400(self):
        self.assertRefused("Host is missing (RFC 6455 4.2.1)", without=("Host",))

    def test_two_host_fields_are_400(self):
        self.assertRefused("Host appears more than once (RFC 6455 4.2.1)", ("Host", "b.test"))

    def test_a_host_port_that_is_not_digits_is_400(self):
        for host in ("public.test:", "public.test:http", "public.test:+80"):
            self.assertEqual(self.refused(Host=host).status, 400, host)

    def test_hosts_with_a_port_or_an_ipv6_literal_pass(self):
        for host in ("public.test:8080", "[::1]", "[::1]:8443"):
            self.assertEqual(check(Host=host).key, KEY)

    def test_an_upgrade_without_websocket_is_400(self):
        self.assertRefused("Upgrade does not name websocket (RFC 6455 4.2.1)", Upgrade="h2c")

    def test_a_request_without_upgrade_is_400(self):
        self.assertEqual(self.refused(without=("Upgrade",)).status, 400)

    def test_upgrade_is_a_case_insensitive_token_list(self):
        self.assertEqual(check(Upgrade="h2c, WebSocket").key, KEY)

    def test_an_upgrade_list_with_an_element_that_is_not_a_protocol_is_400(self):
        self.assertRefused(
            "Upgrade is not a list of protocols (RFC 9110 7.8)", Upgrade="\x85,websocket,\x85"
        )
        self.assertRefused(
            "Upgrade is not a list of protocols (RFC 9110 7.8)", Upgrade="websocket, web socket"
        )

    def test_an_upgrade_element_may_carry_a_version(self):
        self.assertEqual(check(Upgrade="HTTP/2.0, websocket").key, KEY)

    def test_a_connection_list_with_an_element_that_is_not_a_token_is_400(self):
        self.assertRefused(
            "Connection is not a list of tokens (RFC 9110 7.6.1)", Connection="Upgrade, keep alive"
        )

    def test_a_connection_without_upgrade_is_400(self):
        self.assertRefused(
            "Connection does not name upgrade (RFC 6455 4.2.1)", Connection="keep-alive"
        )

    def test_a_request_without_connection_is_400(self):
        self.assertEqual(self.refused(without=("Connection",)).status, 400)

    def test_connection_is_a_case_insensitive_token_list_over_its_fields(self):
        self.assertEqual(check(("Connection", "UPGRADE"), Connection="keep-alive").key, KEY)

    def test_a_request_without_version_is_400(self):
        self.assertRefused(
            "Sec-WebSocket-Version is missing (RFC 6455 4.2.1)", without=("Sec-WebSocket-Version",)
        )

    def test_an_unsupported_version_is_426_with_the_version_we_speak(self):
        refusal = self.refused(Sec_WebSocket_Version="8")
        self.assertEqual(refusal.status, 426)
        self.assertEqual(
            refusal.detail, "Sec-WebSocket-Version 8 is not supported, only 13 (RFC 6455 4.4)"
        )
        self.assertEqual(refusal.headers, (("Sec-WebSocket-Version", "13"),))

    def test_a_list_of_versions_is_400(self):
        self.assertEqual(self.refused(Sec_WebSocket_Version="13, 8").status, 400)

    def test_a_version_that_is_not_plain_decimal_is_400(self):
        for version in ("013", "+13", "1_3", "13.0", "thirteen", ""):
            self.assertEqual(self.refused(Sec_WebSocket_Version=version).status, 400, version)

    def test_two_version_fields_are_400_even_when_both_say_13(self):
        self.assertRefused(
            "Sec-WebSocket-Version appears more than once (RFC 6455 4.2.1)",
            ("Sec-WebSocket-Version", "13"),
        )

    def test_a_request_without_key_is_400(self):
        self.assertRefused(
            "Sec-WebSocket-Key is missing (RFC 6455 4.2.1)", without=("Sec-WebSocket-Key",)
        )

    def test_a_key_that_is_not_16_bytes_in_base64_is_400(self):
        for key in (
            "AAAAAAAAAAAAAAAAAAAA",  # 15 bytes
            "AAAAAAAAAAAAAAAAAAAAAAA=",  # 17 bytes
            KEY.rstrip("="),  # unpadded
            "-_-_-_-_-_-_-_-_-_-_-w==",  # the URL-safe alphabet
            KEY[:10] + " " + KEY[11:],
        ):
            self.assertRefused(
                "Sec-WebSocket-Key is not 16 bytes in base64 (RFC 6455 4.2.1)",
                Sec_WebSocket_Key=key,
            )

    def test_two_keys_are_400(self):
        self.assertRefused(
            "Sec-WebSocket-Key appears more than once (RFC 6455 4.2.1)",
            ("Sec-WebSocket-Key", KEY),
        )

    def test_the_key_is_taken_without_its_optional_whitespace(self):
        self.assertEqual(check(Sec_WebSocket_Key=f" \t{KEY} ").key, KEY)

    def test_a_key_padded_with_a_no_break_space_is_400(self):
        self.assertEqual(self.refused(Sec_WebSocket_Key=f"\xa0{KEY}").status, 400)

    def test_subprotocols_are_offered_in_the_clients_order(self):
        upgrade = check(("Sec-WebSocket-Protocol", "v2.chat, chat"))
        self.assertEqual(upgrade.protocols, ("v2.chat", "chat"))

    def test_subprotocols_of_several_fields_are_one_list(self):
        upgrade = check(("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b"))
        self.assertEqual(upgrade.protocols, ("a", "b"))

    def test_empty_subprotocol_list_elements_are_skipped(self):
        self.assertEqual(check(("Sec-WebSocket-Protocol", "a, , b,")).protocols, ("a", "b"))
        self.assertEqual(check(("Sec-WebSocket-Protocol", "")).protocols, ())

    def test_a_subprotocol_that_is_not_a_token_is_400(self):
        self.assertRefused(
            "Sec-WebSocket-Protocol offers 'chat;v=1', not a token (RFC 6455 4.1)",
            ("Sec-WebSocket-Protocol", "chat;v=1"),
        )

    def test_a_subprotocol_offered_twice_is_400(self):
        self.assertRefused(
            "Sec-WebSocket-Protocol offers a subprotocol twice (RFC 6455 4.1)",
            ("Sec-WebSocket-Protocol", "chat, chat"),
        )

    def test_subprotocols_differing_in_case_are_two(self):
        self.assertEqual(
            check(("Sec-WebSocket-Protocol", "chat, Chat")).protocols, ("chat", "Chat")
        )

    def test_the_origin_is_passed_on(self):
        for origin in ("https://app.test:8443", "null", "file://"):
            self.assertEqual(check(("Origin", origin)).origin, origin)

    def test_an_origin_without_a_host_or_with_a_bad_port_is_400(self):
        for origin in ("app.test", "http://", "http://app.test:99999", "http://app.test:x", ""):
            self.assertEqual(self.refused(("Origin", origin)).status, 400, origin)

    def test_two_origins_are_400(self):
        self.assertRefused(
            "Origin appears more than once (RFC 6454 7.3)",
            ("Origin", "http://a.test"),
            ("Origin", "http://a.test"),
        )


def offer(value: str) -> ClientUpgrade:
    return check(("Sec-WebSocket-Extensions", value))


class DeflateOfferTests(unittest.TestCase):
    def assertRefused(self, value: str, detail: Optional[str] = None) -> None:
        with self.assertRaises(UpgradeRefused) as caught:
            offer(value)
        self.assertEqual(caught.exception.status, 400)
        if detail is not None:
            self.assertEqual(caught.exception.detail, detail)

    def test_a_deflate_offer_is_forwarded_in_its_canonical_form(self):
        upgrade = offer("PerMessage-Deflate ;  Client_Max_Window_Bits")
        self.assertEqual(upgrade.deflate_offer, "permessage-deflate; client_max_window_bits")
        self.assertEqual(upgrade.deflate_params, DeflateOffer(client_max_window_bits=True))

    def test_every_offer_parameter_is_kept_in_rfc_order(self):
        upgrade = offer(
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12; "
            "client_no_context_takeover; server_no_context_takeover"
        )
        self.assertEqual(
            upgrade.deflate_offer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=10",
        )

    def test_a_quoted_value_is_read_unquoted_and_unescaped(self):
        upgrade = offer('permessage-deflate; server_max_window_bits="1\\0"')
        self.assertEqual(upgrade.deflate_params.server_max_window_bits, 10)

    def test_only_the_first_deflate_offer_is_forwarded(self):
        upgrade = offer("permessage-deflate; client_max_window_bits, permessage-deflate")
        self.assertEqual(upgrade.deflate_offer, "permessage-deflate; client_max_window_bits")

    def test_other_extensions_are_dropped(self):
        upgrade = offer("x-webkit-deflate-frame, foo; bar=1, permessage-deflate")
        self.assertEqual(upgrade.deflate_offer, "permessage-deflate")

    def test_other_compression_extensions_are_dropped_whatever_their_parameters(self):
        self.assertIsNone(offer("permessage-bzip2; server_max_window_bits=10").deflate_offer)

    def test_several_extension_fields_are_one_list(self):
        upgrade = check(
            ("Sec-WebSocket-Extensions", "foo"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"),
        )
        self.assertEqual(upgrade.deflate_offer, "permessage-deflate; server_no_context_takeover")

    def test_an_empty_extension_list_offers_nothing(self):
        self.assertIsNone(offer(" , ").deflate_params)

    def test_an_unknown_deflate_parameter_is_400(self):
        self.assertRefused(
            "permessage-deflate; mem_level=8",
            "invalid permessage-deflate offer: unknown parameter mem_level",
        )

    def test_a_repeated_deflate_parameter_is_400(self):
        self.assertRefused(
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "invalid permessage-deflate offer: client_max_window_bits appears twice",
        )

    def test_no_context_takeover_with_a_value_is_400(self):
        self.assertRefused(
            "permessage-deflate; server_no_context_takeover=1",
            "invalid permessage-deflate offer: server_no_context_takeover takes no value",
        )

    def test_server_max_window_bits_without_a_value_is_400(self):
        self.assertRefused(
            "permessage-deflate; server_max_window_bits",
            "invalid permessage-deflate offer: server_max_window_bits needs a value",
        )

    def test_window_bits_outside_9_to_15_are_400(self):
        for bits in ("8", "16", "0", "010", "+10", "ten"):
            self.assertRefused(
                f"permessage-deflate; client_max_window_bits={bits}",
                f"invalid permessage-deflate offer: client_max_window_bits={bits} is not 9 to 15",
            )

    def test_a_malformed_later_deflate_offer_is_400(self):
        self.assertRefused("permessage-deflate, permessage-deflate; x")

    def test_an_extension_list_outside_rfc_6455_9_1_is_400(self):
        for value in ("foo;", "foo; a=", "foo; a b", 'foo; a="b', "foo; =1", 'foo; a="b c"'):
            with self.assertRaises(UpgradeRefused) as caught:
                offer(value)
            self.assertTrue(
                caught.exception.detail.startswith(
                    "Sec-WebSocket-Extensions is not an extension list (RFC 6455 9.1): "
                ),
                caught.exception.detail,
            )


def upgrade(protocols: str = "", extensions: str = "") -> ClientUpgrade:
    extra = []
    if protocols:
        extra.append(("Sec-WebSocket-Protocol", protocols))
    if extensions:
        extra.append(("Sec-WebSocket-Extensions", extensions))
    return check(*extra)


def answer(
    *extra: tuple[str, str], without: tuple[str, ...] = (), **replace: str
) -> list[tuple[str, str]]:
    """A valid 101's headers for :data:`KEY`, some dropped or replaced, some added."""
    replaced = {name.replace("_", "-").lower(): value for name, value in replace.items()}
    base = (
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_value(KEY)),
    )
    headers = [(n, replaced.get(n.lower(), v)) for n, v in base if n not in without]
    return headers + list(extra)


class BackendAnswerTests(unittest.TestCase):
    def assertBad(self, upgrade: ClientUpgrade, headers, reason: Optional[str] = None) -> None:
        with self.assertRaises(BadBackendAnswer) as caught:
            check_backend_answer(upgrade, headers)
        if reason is not None:
            self.assertEqual(str(caught.exception), reason)
        self.assertNotIn("\n", str(caught.exception))

    def test_accept_value_is_rfc_6455s_example(self):
        self.assertEqual(accept_value(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertEqual(GUID, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")

    def test_a_valid_answer_completes_the_handshake_without_extras(self):
        self.assertEqual(
            check_backend_answer(upgrade(), answer()),
            BackendAcceptance(protocol=None, extensions=None, deflate=None),
        )

    def test_upgrade_must_be_websocket_alone(self):
        for value in ("h2c", "websocket, h2c", ""):
            self.assertBad(
                upgrade(), answer(Upgrade=value), "Upgrade is not websocket (RFC 6455 4.1)"
            )
        self.assertBad(upgrade(), answer(without=("Upgrade",)))

    def test_upgrade_is_compared_without_case(self):
        self.assertIsNone(check_backend_answer(upgrade(), answer(Upgrade="WebSocket")).protocol)

    def test_connection_must_name_upgrade(self):
        self.assertBad(
            upgrade(),
            answer(Connection="keep-alive"),
            "Connection does not name upgrade (RFC 6455 4.1)",
        )
        self.assertBad(upgrade(), answer(without=("Connection",)))

    def test_connection_is_a_token_list(self):
        self.assertIsNone(check_backend_answer(upgrade(), answer(Connection="x, upgrade")).protocol)

    def test_an_accept_for_another_key_is_refused(self):
        self.assertBad(
            upgrade(),
            answer(Sec_WebSocket_Accept=accept_value("AAAAAAAAAAAAAAAAAAAAAA==")),
            "Sec-WebSocket-Accept does not answer the key (RFC 6455 4.1)",
        )

    def test_a_missing_or_repeated_accept_is_refused(self):
        self.assertBad(upgrade(), answer(without=("Sec-WebSocket-Accept",)))
        self.assertBad(upgrade(), answer(("Sec-WebSocket-Accept", accept_value(KEY))))

    def test_the_subprotocol_the_backend_chose_is_returned(self):
        acceptance = check_backend_answer(
            upgrade("chat, v2.chat"), answer(("Sec-WebSocket-Protocol", "v2.chat"))
        )
        self.assertEqual(acceptance.protocol, "v2.chat")

    def test_a_subprotocol_that_was_not_offered_is_refused(self):
        self.assertBad(
            upgrade("chat"),
            answer(("Sec-WebSocket-Protocol", "Chat")),
            "Sec-WebSocket-Protocol 'Chat' was not offered (RFC 6455 4.1)",
        )

    def test_a_subprotocol_when_none_was_offered_is_refused(self):
        self.assertBad(upgrade(), answer(("Sec-WebSocket-Protocol", "chat")))

    def test_an_empty_subprotocol_is_none(self):
        acceptance = check_backend_answer(upgrade("chat"), answer(("Sec-WebSocket-Protocol", "")))
        self.assertIsNone(acceptance.protocol)

    def test_two_subprotocol_fields_are_refused(self):
        self.assertBad(
            upgrade("a, b"),
            answer(("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "a")),
        )

    def test_an_extension_when_none_was_offered_is_refused(self):
        self.assertBad(
            upgrade(),
            answer(("Sec-WebSocket-Extensions", "permessage-deflate")),
            "the backend agreed to permessage-deflate, which was not offered (RFC 6455 4.1)",
        )

    def test_an_extension_other_than_deflate_is_refused(self):
        self.assertBad(
            upgrade(extensions="permessage-deflate"),
            answer(("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")),
        )

    def test_two_extensions_or_extension_fields_are_refused(self):
        offered = upgrade(extensions="permessage-deflate")
        self.assertBad(
            offered, answer(("Sec-WebSocket-Extensions", "permessage-deflate, permessage-deflate"))
        )
        self.assertBad(
            offered,
            answer(
                ("Sec-WebSocket-Extensions", "permessage-deflate"),
                ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ),
        )

    def test_no_extension_in_the_answer_means_no_deflate(self):
        acceptance = check_backend_answer(upgrade(extensions="permessage-deflate"), answer())
        self.assertEqual((acceptance.extensions, acceptance.deflate), (None, None))

    def test_the_client_is_told_exactly_what_the_backend_agreed(self):
        acceptance = check_backend_answer(
            upgrade(extensions="permessage-deflate; client_max_window_bits"),
            answer(
                (
                    "Sec-WebSocket-Extensions",
                    "Permessage-Deflate; client_max_window_bits=10; client_no_context_takeover",
                )
            ),
        )
        self.assertEqual(
            acceptance.extensions,
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
        )
        self.assertEqual(acceptance.deflate, (True, False))

    def test_server_no_context_takeover_asked_for_must_be_agreed(self):
        self.assertBad(
            upgrade(extensions="permessage-deflate; server_no_context_takeover"),
            answer(("Sec-WebSocket-Extensions", "permessage-deflate")),
            "invalid permessage-deflate response: "
            "server_no_context_takeover was asked for and is missing",
        )

    def test_the_backend_may_add_either_no_context_takeover(self):
        acceptance = check_backend_answer(
            upgrade(extensions="permessage-deflate"),
            answer(
                (
                    "Sec-WebSocket-Extensions",
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                )
            ),
        )
        self.assertEqual(acceptance.deflate, (True, True))

    def test_server_max_window_bits_asked_for_must_be_echoed(self):
        offered = upgrade(extensions="permessage-deflate; server_max_window_bits=12")
        self.assertBad(
            offered,
            answer(("Sec-WebSocket-Extensions", "permessage-deflate")),
            "invalid permessage-deflate response: "
            "server_max_window_bits was asked for and is missing",
        )
        self.assertBad(
            offered,
            answer(("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=13")),
            "invalid permessage-deflate response: "
            "server_max_window_bits=13 is above the 12 asked for",
        )

    def test_server_max_window_bits_at_or_below_the_offer_is_agreed(self):
        acceptance = check_backend_answer(
            upgrade(extensions="permessage-deflate; server_max_window_bits=12"),
            answer(("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=9")),
        )
        self.assertEqual(acceptance.extensions, "permessage-deflate; server_max_window_bits=9")

    def test_the_backend_may_limit_its_own_window_unasked(self):
        acceptance = check_backend_answer(
            upgrade(extensions="permessage-deflate"),
            answer(("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=10")),
        )
        self.assertEqual(acceptance.extensions, "permessage-deflate; server_max_window_bits=10")

    def test_client_max_window_bits_only_when_the_client_offered_it(self):
        self.assertBad(
            upgrade(extensions="permessage-deflate"),
            answer(("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=10")),
            "invalid permessage-deflate response: client_max_window_bits was not offered",
        )

    def test_client_max_window_bits_in_an_answer_needs_a_value(self):
        self.assertBad(
            upgrade(extensions="permessage-deflate; client_max_window_bits"),
            answer(("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")),
            "invalid permessage-deflate response: client_max_window_bits needs a value",
        )

    def test_an_unknown_or_malformed_response_parameter_is_refused(self):
        offered = upgrade(extensions="permessage-deflate")
        for value in ("permessage-deflate; mem_level=8", "permessage-deflate;", 'a; b="'):
            self.assertBad(offered, answer(("Sec-WebSocket-Extensions", value)))
