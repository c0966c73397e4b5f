"""Upgrade and Connection as lists: each element checked, the token found in any case or line."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.ws.upgrade import UpgradeRefused, check_client_upgrade

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def headers(upgrade: list[bytes], connection: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b"Host", b"public.test"),
        *[(b"Upgrade", value) for value in upgrade],
        *[(b"Connection", value) for value in connection],
        (b"Sec-WebSocket-Key", KEY),
        (b"Sec-WebSocket-Version", b"13"),
    ]


class ListTests(unittest.TestCase):
    def refusal(self, upgrade: list[bytes], connection: list[bytes]) -> str:
        with self.assertRaises(UpgradeRefused) as caught:
            check_client_upgrade(b"GET", b"HTTP/1.1", headers(upgrade, connection))
        return caught.exception.detail

    def test_a_bad_element_after_websocket_is_still_refused(self) -> None:
        self.assertEqual(
            self.refusal([b"websocket, a b"], [b"Upgrade"]),
            "Upgrade is not a list of protocols (RFC 9110 7.8)",
        )

    def test_a_bad_connection_element_after_upgrade_is_still_refused(self) -> None:
        self.assertEqual(
            self.refusal([b"websocket"], [b"Upgrade, a;b"]),
            "Connection is not a list of tokens (RFC 9110 7.6.1)",
        )

    def test_an_empty_upgrade_field_names_nothing(self) -> None:
        self.assertEqual(
            self.refusal([b""], [b"Upgrade"]), "Upgrade does not name websocket (RFC 6455 4.2.1)"
        )

    def test_an_empty_connection_field_names_nothing(self) -> None:
        self.assertEqual(
            self.refusal([b"websocket"], [b" , "]),
            "Connection does not name upgrade (RFC 6455 4.2.1)",
        )

    def test_the_tokens_may_come_in_any_line_and_case(self) -> None:
        upgrade = check_client_upgrade(
            b"GET", b"HTTP/1.1", headers([b"h2c", b"WEBSOCKET"], [b"keep-alive", b"upGrade"])
        )
        self.assertEqual(upgrade.key, KEY.decode())
