"""Client-controlled text in log events: control characters escaped."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.util.logtext import printable


class PrintableTests(unittest.TestCase):
    def test_control_characters_are_written_as_hex_escapes(self) -> None:
        self.assertEqual(
            printable("a\x1b[31mb\x07c\x00\t\r\n\x7f\x9b"),
            "a\\x1b[31mb\\x07c\\x00\\x09\\x0d\\x0a\\x7f\\x9b",
        )

    def test_printable_text_and_none_are_kept(self) -> None:
        self.assertEqual(
            [printable(text) for text in ("GET /a?b=c d", "caf\xe9", "\\x1b", None)],
            ["GET /a?b=c d", "caf\xe9", "\\x1b", None],
        )
