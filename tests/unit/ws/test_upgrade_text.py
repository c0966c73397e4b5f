"""The client's upgrade checked from latin-1 text pairs (the listener's) as from raw bytes."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.ws.upgrade import UpgradeRefused, check_client_upgrade
from tests.unit.ws.test_upgrade import request


def text(pairs):
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in pairs]


class TextPairsTests(unittest.TestCase):
    def test_text_pairs_give_the_same_upgrade_as_bytes(self):
        raw = request(("Sec-WebSocket-Protocol", "chat, superchat"), ("Origin", "http://a.example"))
        self.assertEqual(
            check_client_upgrade(b"GET", b"HTTP/1.1", text(raw)),
            check_client_upgrade(b"GET", b"HTTP/1.1", raw),
        )

    def test_text_pairs_are_refused_as_bytes_are(self):
        raw = request(Sec_WebSocket_Version="8")
        with self.assertRaises(UpgradeRefused) as caught:
            check_client_upgrade(b"GET", b"HTTP/1.1", text(raw))
        self.assertEqual(caught.exception.status, 426)
