"""response_head: what a status line, a field name and a Connection value say, read once each."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.response_head import (
    CONNECTION,
    CONTENT_LENGTH,
    FRAMING_KINDS,
    FRAMING_SHAPES,
    MAX_FRAMING_SHAPES,
    MAX_SHAPE_BYTES,
    OTHER,
    SEVERAL,
    STATUS_LINES,
    TRANSFER_ENCODING,
    connection_says,
    framing_kind,
    framing_shape,
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


class FramingShapeTests(unittest.TestCase):
    def setUp(self) -> None:
        kept = dict(FRAMING_SHAPES)
        FRAMING_SHAPES.clear()  # (other tests' heads may have filled it)
        self.addCleanup(FRAMING_SHAPES.update, kept)
        self.addCleanup(FRAMING_SHAPES.clear)

    def test_each_framing_field_is_found_where_it_is_and_the_shape_kept(self) -> None:
        names = (b"Date", b"connection", b"X", b"Content-LENGTH", b"shape-test-1")
        self.assertEqual(framing_shape(names), (3, -1, 1))
        self.assertEqual(FRAMING_SHAPES[names], (3, -1, 1))
        self.assertEqual(framing_shape((b"shape-test-2", b"Transfer-Encoding")), (-1, 1, -1))
        self.assertEqual(framing_shape((b"shape-test-3",)), (-1, -1, -1))

    def test_a_repeated_kind_or_both_body_framings_are_several(self) -> None:
        for names, shape in (
            ((b"Content-Length", b"content-length"), (SEVERAL, -1, -1)),
            ((b"Transfer-Encoding", b"X", b"Transfer-Encoding"), (-1, SEVERAL, -1)),
            ((b"Transfer-Encoding", b"Content-Length"), (SEVERAL, SEVERAL, -1)),
            ((b"Connection", b"Content-Length", b"CONNECTION"), (1, -1, SEVERAL)),
        ):
            self.assertEqual(framing_shape(names), shape, names)

    def test_names_of_more_bytes_than_the_bound_are_not_kept(self) -> None:
        names = (b"x" * MAX_SHAPE_BYTES, b"Content-Length")
        self.assertEqual(framing_shape(names), (1, -1, -1))
        self.assertNotIn(names, FRAMING_SHAPES)

    def test_no_more_shapes_are_kept_than_the_bound(self) -> None:
        for index in range(MAX_FRAMING_SHAPES + 10):
            framing_shape((b"bound-%d" % index, b"Connection"))
        self.assertLessEqual(len(FRAMING_SHAPES), MAX_FRAMING_SHAPES)
        self.assertEqual(framing_shape((b"bound-past", b"Connection")), (-1, -1, 1))


class ConnectionSaysTests(unittest.TestCase):
    def test_close_and_keep_alive_are_found_among_the_tokens(self) -> None:
        self.assertEqual(connection_says([b"Keep-Alive, X-Other"]), (False, True))
        self.assertEqual(connection_says([b"upgrade", b" CLOSE "]), (True, False))
