"""The response parser reads each status line and field name once: a second read says the same."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.parsers import response_parser
from tests.unit.http.test_parsing import Recorder


def parsed(data: bytes, backend: str) -> list:
    recorder = Recorder()
    response_parser(recorder, b"GET", backend=backend).feed(data)
    return recorder.events


class _Lines:
    backend = ""

    def head(self, data: bytes):
        events = parsed(data, self.backend)
        self.assertEqual(events[0][0], "head", events)
        return events[0][1]

    def test_a_status_line_read_again_gives_the_same_status_reason_and_version(self) -> None:
        for _ in range(2):
            head = self.head(b"HTTP/1.0 203 Not Quite\r\nContent-Length: 0\r\n\r\n")
            self.assertEqual((head.status, head.reason, head.version), (203, b"Not Quite", b"1.0"))
            self.assertFalse(head.keep_alive)

    def test_a_refused_status_line_is_refused_every_time(self) -> None:
        for _ in range(2):
            events = parsed(b"HTTP/1.1 099 Odd\r\n\r\n", self.backend)
            self.assertEqual(events, [("error", 502, "status 99 is not a valid status")])

    def test_framing_names_are_read_in_any_spelling_every_time(self) -> None:
        for _ in range(2):
            head = self.head(b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 3\r\ncOnNeCtIoN: Close\r\n\r\n")
            self.assertEqual(head.content_length, 3)
            self.assertFalse(head.keep_alive)

    def test_a_connection_value_read_again_says_the_same(self) -> None:
        for _ in range(2):
            kept = self.head(
                b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
            )
            self.assertTrue(kept.keep_alive)
            closed = self.head(
                b"HTTP/1.1 200 OK\r\nConnection: x, close\r\nContent-Length: 0\r\n\r\n"
            )
            self.assertFalse(closed.keep_alive)

    def test_several_connection_fields_are_read_together(self) -> None:
        head = self.head(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        self.assertFalse(head.keep_alive)

    def test_of_several_framing_faults_the_first_in_the_head_is_named(self) -> None:
        ok = b"HTTP/1.1 200 OK\r\n"
        cases = [
            (b"Transfer-Encoding: gzip\r\nContent-Length: x", "a Transfer-Encoding other than"),
            (b"Content-Length: x\r\nTransfer-Encoding: gzip", "a repeated or invalid Content"),
            (b"Content-Length: 1\r\nTransfer-Encoding: gzip", "a Transfer-Encoding other than"),
            (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", "a Transfer-Encoding"),
            (b"Content-Length: 1\r\nX: y\r\nContent-Length: 2", "a repeated or invalid Content"),
            (b"Content-Length: 1\r\nTransfer-Encoding: chunked", "Content-Length with Transfer"),
        ]
        for block, detail in cases:
            events = parsed(ok + block + b"\r\n\r\n", self.backend)
            self.assertEqual(len(events), 1, events)
            self.assertEqual(events[0][:2], ("error", 502))
            self.assertTrue(events[0][2].startswith(detail), (block, events))

    def test_a_head_read_again_by_its_kept_shape_says_what_it_said_first(self) -> None:
        for block in (
            b"X-Shape-A: 1\r\nConnection: close\r\nContent-Length: 2",
            b"Connection: keep-alive\r\nX-Shape-B: 1\r\nconnection: close\r\nContent-Length: 2",
            b"X-Shape-C: 1\r\nContent-Length: x",
            b"X-Shape-D: 1\r\nContent-Length: 2\r\nContent-Length: 2",
        ):
            data = b"HTTP/1.1 200 OK\r\n" + block + b"\r\n\r\nhi"
            first, again = parsed(data, self.backend), parsed(data, self.backend)
            self.assertEqual(
                [tuple(event[1]) if event[0] == "head" else event for event in again],
                [tuple(event[1]) if event[0] == "head" else event for event in first],
            )

    def test_one_framing_field_among_others_frames_the_body(self) -> None:
        head = self.head(
            b"HTTP/1.1 200 OK\r\nA: b\r\ntransfer-encoding: Chunked\r\nC: d\r\n\r\n0\r\n\r\n"
        )
        self.assertTrue(head.chunked)
        self.assertIsNone(head.content_length)
        self.assertTrue(head.keep_alive)


class HttptoolsLinesTests(_Lines, unittest.TestCase):
    backend = "httptools"


class H11LinesTests(_Lines, unittest.TestCase):
    backend = "h11"
