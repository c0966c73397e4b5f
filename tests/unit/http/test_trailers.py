"""Trailer fields: parsing, the fields forwarded, the trailer section written."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.http.trailers import (
    TrailerError,
    accepts_trailers,
    forwardable,
    parse_trailer_lines,
    trailer_section,
)


class ParseTests(unittest.TestCase):
    def test_well_formed_lines(self) -> None:
        self.assertEqual(
            parse_trailer_lines([b"X-A: one", b"x-b:two  ", bytearray(b"X-C:")]),
            [(b"X-A", b"one"), (b"x-b", b"two"), (b"X-C", b"")],
        )

    def test_malformed_lines_are_refused(self) -> None:
        for line, rule in [
            (b" X-A: one", "obsolete line folding"),
            (b"\tX-A: one", "obsolete line folding"),
            (b"X-A one", "without a colon"),
            (b"X-A : one", "not a token"),
            (b": one", "not a token"),
            (b"X(A): one", "not a token"),
            (b"X-A: o\x00ne", "NUL, CR or LF"),
            (b"X-A: one\nX-B: two", "NUL, CR or LF"),
        ]:
            with self.assertRaises(TrailerError, msg=line) as caught:
                parse_trailer_lines([line])
            self.assertIn(rule, str(caught.exception))

    def test_forbidden_and_dropped_fields_are_not_forwarded(self) -> None:
        fields = [
            (b"X-Checksum", b"1"),
            (b"Content-Length", b"5"),
            (b"transfer-encoding", b"chunked"),
            (b"Host", b"evil"),
            (b"Authorization", b"x"),
            (b"X-Forwarded-For", b"6.6.6.6"),
            (b"Set-Cookie", b"a=1"),
            (b"X-Env", b"dev"),
            (b"Server-Timing", b"db;dur=5"),
        ]
        self.assertEqual(
            forwardable(fields, {"x-env"}), [(b"X-Checksum", b"1"), (b"Server-Timing", b"db;dur=5")]
        )

    def test_te_trailers(self) -> None:
        self.assertTrue(accepts_trailers([b"deflate;q=0.5, Trailers"]))
        self.assertTrue(accepts_trailers([b"gzip", b"trailers"]))
        self.assertFalse(accepts_trailers([b"deflate", b"trailersx"]))
        self.assertFalse(accepts_trailers([]))

    def test_trailer_section(self) -> None:
        self.assertEqual(trailer_section([]), b"0\r\n\r\n")
        self.assertEqual(trailer_section([(b"X-A", b"1")]), b"0\r\nX-A: 1\r\n\r\n")


_TRAILER_BYTES = st.sampled_from(
    [b"a", b"X-1", b":", b" ", b"\t", b"\x00", b"\r", b"\n", b"v", b"("]
)


class ParseProperties(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(
            st.one_of(st.binary(max_size=40), st.lists(_TRAILER_BYTES, max_size=10).map(b"".join)),
            max_size=6,
        )
    )
    def test_any_lines_give_clean_fields_or_a_trailer_error(self, lines) -> None:
        try:
            fields = parse_trailer_lines(lines)
        except TrailerError as e:
            self.assertTrue(str(e))
            return
        self.assertEqual(len(fields), len(lines))
        for name, value in fields:
            self.assertTrue(name)
            self.assertFalse(set(name) & set(b" \t:\x00\r\n()"), name)
            self.assertFalse(set(value) & set(b"\x00\r\n"), value)
            self.assertEqual(value, value.strip(b" \t"))
