"""Parsing a backend's non-101 answer to a handshake."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.ws.handshake import (
    MalformedAnswer,
    MalformedChunk,
    RefusalReader,
    chunk_size,
    parse_response_head,
    read_response_head,
)


def head(text: bytes):
    return parse_response_head(text)


class ResponseHeadTests(unittest.TestCase):
    def test_status_reason_and_duplicate_headers(self):
        parsed = head(b"HTTP/1.1 401 Unauthorized\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n")
        self.assertEqual((parsed.status, parsed.reason), (401, "Unauthorized"))
        self.assertEqual(parsed.values("set-cookie"), ["a", "b"])

    def test_missing_reason_phrase(self):
        self.assertEqual(head(b"HTTP/1.1 404\r\n\r\n").reason, "")

    def test_not_http_is_rejected(self):
        for data in (
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: x\r\n folded\r\n\r\n",
        ):
            self.assertIsNone(head(data), data)


class RefusalReaderTests(unittest.TestCase):
    def reader(self, headers: bytes, limit=100):
        return RefusalReader(head(b"HTTP/1.1 403 Forbidden\r\n" + headers + b"\r\n"), limit)

    def test_content_length_body_in_pieces(self):
        reader = self.reader(b"Content-Length: 5\r\n")
        reader.feed(b"he")
        self.assertFalse(reader.done)
        reader.feed(b"lloEXTRA")
        self.assertTrue(reader.done)
        self.assertEqual(reader.body, b"hello")

    def test_chunked_body(self):
        reader = self.reader(b"Transfer-Encoding: chunked\r\n")
        reader.feed(b"3;ext=1\r\nabc\r\n")
        reader.feed(b"2\r\nde\r\n0\r\n\r\n")
        self.assertTrue(reader.done)
        self.assertEqual(reader.body, b"abcde")

    def test_body_until_close(self):
        reader = self.reader(b"")
        reader.feed(b"partial")
        self.assertFalse(reader.done)
        self.assertTrue(reader.until_close)
        reader.finish()
        self.assertEqual(reader.body, b"partial")

    def test_over_the_limit_is_truncated(self):
        reader = self.reader(b"Content-Length: 300\r\n", limit=10)
        reader.feed(b"x" * 300)
        self.assertTrue(reader.done)
        self.assertTrue(reader.truncated)
        self.assertEqual(reader.body, b"x" * 10)

    def test_no_body_statuses(self):
        for status in (b"204 No Content", b"304 Not Modified"):
            reader = RefusalReader(head(b"HTTP/1.1 " + status + b"\r\n\r\n"), 10)
            self.assertTrue(reader.done)

    def test_bad_chunk_size_ends_the_body_as_malformed(self):
        reader = self.reader(b"Transfer-Encoding: chunked\r\n")
        reader.feed(b"zz\r\n")
        self.assertTrue(reader.done)
        self.assertEqual((reader.body, reader.malformed), (b"", "bad chunk size b'zz'"))

    def test_sizes_int_would_take_are_malformed(self):
        for size in (b"-1", b"0x1", b"1_0", b" 1", b"+1", b"1 ", b"0" * 17 + b"1", b""):
            reader = self.reader(b"Transfer-Encoding: chunked\r\n")
            reader.feed(size + b"\r\nx\r\n0\r\n\r\n")
            self.assertEqual((reader.done, reader.body), (True, b""), size)
            self.assertIsNotNone(reader.malformed, size)

    def test_chunk_data_must_end_with_crlf(self):
        reader = self.reader(b"Transfer-Encoding: chunked\r\n")
        reader.feed(b"1\r\nxyz\r\n0\r\n\r\n")
        self.assertEqual(reader.malformed, "no CRLF after a chunk's data")

    def test_a_well_formed_chunked_body_is_not_malformed(self):
        reader = self.reader(b"Transfer-Encoding: chunked\r\n")
        reader.feed(b"a;x=1\r\n0123456789\r\nFfFf\r\n")
        self.assertEqual((reader.done, reader.malformed), (False, None))


class ChunkSizeTests(unittest.TestCase):
    def test_hex_digits_with_optional_extensions(self):
        self.assertEqual(
            [chunk_size(line) for line in (b"0", b"1f", b"FF;a=b", b"0" * 15 + b"1;x")],
            [0, 31, 255, 1],
        )

    def test_everything_else_is_refused(self):
        for line in (b"-1", b"0x1", b"1_0", b" 1", b"1 ", b"", b";x", b"1;\x01", b"f" * 17):
            with self.assertRaises(MalformedChunk, msg=line):
                chunk_size(line)

    def test_sizes_over_2_63_minus_1_are_refused(self):
        self.assertEqual(chunk_size(b"7" + b"f" * 15), 2**63 - 1)
        with self.assertRaises(MalformedChunk):
            chunk_size(b"8" + b"0" * 15)


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
    min_size=1,
    max_size=20,
)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def _head(status: int, headers) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HandshakeParserProperties(unittest.TestCase):
    @given(st.binary(max_size=300))
    def test_any_bytes_parse_or_give_none_without_raising(self, data):
        head = parse_response_head(data)
        if head is not None:
            self.assertTrue(100 <= head.status <= 999)

    @given(st.integers(100, 999), st.lists(st.tuples(_token, _value), max_size=8))
    def test_a_well_formed_head_round_trips(self, status, headers):
        head = parse_response_head(_head(status, headers))
        self.assertIsNotNone(head)
        self.assertEqual(head.status, status)
        self.assertEqual(list(head.headers), [(n, v.strip()) for n, v in headers])

    @given(
        st.binary(max_size=2000),
        st.integers(0, 3000),
        st.lists(st.integers(1, 200), min_size=1, max_size=20),
    )
    def test_a_content_length_body_is_read_whatever_the_segmentation(self, body, limit, cuts):
        head = parse_response_head(_head(403, [("Content-Length", str(len(body)))]))
        reader = RefusalReader(head, limit)
        position = 0
        for cut in cuts * (len(body) // max(sum(cuts), 1) + 1):
            reader.feed(body[position : position + cut])
            position += cut
            if position >= len(body):
                break
        self.assertTrue(reader.done)
        self.assertEqual(reader.body, body[:limit])
        self.assertEqual(reader.truncated, len(body) > limit)

    @given(st.lists(st.binary(min_size=1, max_size=100), max_size=10), st.integers(1, 5))
    def test_a_chunked_body_is_decoded_whatever_the_segmentation(self, chunks, step):
        head = parse_response_head(_head(302, [("Transfer-Encoding", "chunked")]))
        wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        reader = RefusalReader(head, 1 << 20)
        for index in range(0, len(wire), step):
            reader.feed(wire[index : index + step])
        self.assertTrue(reader.done)
        self.assertEqual(reader.body, b"".join(chunks))

    @given(st.binary(max_size=500), st.integers(0, 600))
    def test_a_garbage_chunked_body_ends_within_the_limit_without_raising(self, garbage, limit):
        head = parse_response_head(_head(302, [("Transfer-Encoding", "chunked")]))
        reader = RefusalReader(head, limit)
        reader.feed(garbage)
        reader.finish()
        self.assertLessEqual(len(reader.body), limit)


class ReadResponseHeadTests(unittest.TestCase):
    def test_an_incomplete_head_is_none(self):
        self.assertIsNone(read_response_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: w"))

    def test_a_complete_head_comes_with_the_bytes_after_it(self):
        head, rest = read_response_head(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\n\x81\x00")
        self.assertEqual(
            (head.status, head.values("upgrade"), rest), (101, ["websocket"], b"\x81\x00")
        )

    def test_a_head_over_64_kib_is_malformed(self):
        with self.assertRaisesRegex(MalformedAnswer, "larger than 64 KiB"):
            read_response_head(b"HTTP/1.1 101 OK\r\nX: " + b"a" * 65536)

    def test_a_head_that_is_not_http_is_malformed(self):
        with self.assertRaisesRegex(MalformedAnswer, "malformed HTTP response"):
            read_response_head(b"SSH-2.0-OpenSSH\r\n\r\n")
