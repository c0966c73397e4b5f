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


class HttptoolsLinesTests(_Lines, unittest.TestCase):
    backend = "httptools"


class H11LinesTests(_Lines, unittest.TestCase):
    backend = "h11"
