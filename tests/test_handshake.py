"""Parsing a backend's non-101 answer to a handshake."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.handshake import RefusalReader, parse_response_head


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

    def test_bad_chunk_size_ends_the_body(self):
        reader = self.reader(b"Transfer-Encoding: chunked\r\n")
        reader.feed(b"zz\r\n")
        self.assertTrue(reader.done)
        self.assertEqual(reader.body, b"")
