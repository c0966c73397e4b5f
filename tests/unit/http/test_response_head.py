"""response_head: what a status line, a field name and a Connection value say, read once each."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.response_head import (
    CONNECTION,
    CONTENT_LENGTH,
    FRAMING_KINDS,
    OTHER,
    STATUS_LINES,
    TRANSFER_ENCODING,
    connection_says,
    framing_kind,
    status_line,
)


class StatusLineTests(unittest.TestCase):
    def test_a_good_line_gives_status_reason_and_version_and_is_kept(self) -> None:
        self.assertEqual(status_line(b"HTTP/1.0 418 I'm a teapot"), (418, b"I'm a teapot", b"1.0"))
        self.assertEqual(STATUS_LINES[b"HTTP/1.0 418 I'm a teapot"], (418, b"I'm a teapot", b"1.0"))

    def test_a_line_without_a_reason_is_good(self) -> None:
        self.assertEqual(status_line(b"HTTP/1.1 200"), (200, b"", b"1.1"))

    def test_a_refused_line_says_why_and_is_not_kept(self) -> None:
        self.assertEqual(
            status_line(b"HTTP/1.1 20x OK"), "not an HTTP/1.x status line: b'HTTP/1.1 20x OK'"
        )
        self.assertEqual(
            status_line(b"HTTP/1.1 200 O\x00K"), "a bare CR or LF, or a NUL, in the status line"
        )
        self.assertNotIn(b"HTTP/1.1 20x OK", STATUS_LINES)


class FramingKindTests(unittest.TestCase):
    def test_each_framing_name_in_any_spelling_is_known_and_kept(self) -> None:
        for name, kind in (
            (b"CONTENT-length", CONTENT_LENGTH),
            (b"Transfer-ENCODING", TRANSFER_ENCODING),
            (b"connectioN", CONNECTION),
            (b"Content-Type", OTHER),
        ):
            self.assertEqual(framing_kind(name), kind)
            self.assertEqual(FRAMING_KINDS[name], kind)


class ConnectionSaysTests(unittest.TestCase):
    def test_close_and_keep_alive_are_found_among_the_tokens(self) -> None:
        self.assertEqual(connection_says([b"Keep-Alive, X-Other"]), (False, True))
        self.assertEqual(connection_says([b"upgrade", b" CLOSE "]), (True, False))
