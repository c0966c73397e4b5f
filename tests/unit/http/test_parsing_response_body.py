"""A Content-Length body read with its head is delivered at once, as one read in pieces would be."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.parsers import response_parser
from tests.unit.http.test_parsing import Recorder


class _Body:
    backend = ""

    def parser(self, recorder: Recorder):
        parser = response_parser(recorder, b"GET", backend=self.backend)
        recorder.parser = parser
        return parser

    def test_a_body_read_with_its_head_ends_the_response_and_what_follows_waits(self) -> None:
        recorder = Recorder()
        parser = self.parser(recorder)
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 204 No")
        self.assertEqual(
            [event[0] for event in recorder.events], ["head", "data", "complete"], recorder.events
        )
        self.assertEqual(recorder.events[1], ("data", b"abc"))
        self.assertEqual(parser.body_received, 3)
        self.assertEqual(parser.buffered, b"HTTP/1.1 204 No")

    def test_a_handler_that_detaches_during_the_body_hears_no_end(self) -> None:
        recorder = Recorder()
        parser = self.parser(recorder)
        recorder.body_data = lambda data: (recorder.events.append(("data", data)), parser.detach())
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        parser.eof()
        self.assertEqual([event[0] for event in recorder.events], ["head", "data"])

    def test_the_next_response_is_read_once_asked_for(self) -> None:
        recorder = Recorder()
        parser = self.parser(recorder)
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nyz")
        self.assertEqual(len(recorder.events), 3)
        parser.next_response(b"GET")
        self.assertEqual(recorder.events[3:5], [recorder.events[3], ("data", b"yz")])
        self.assertEqual(recorder.events[5], ("complete", []))

    def read_at_head(self, data: bytes, method: bytes = b"GET") -> bool:
        """The parser's ``response_read`` while the handler is in ``response_head``."""
        recorder = Recorder()
        parser = response_parser(recorder, method, backend=self.backend)
        seen = []
        recorder.response_head = lambda head: seen.append(parser.response_read)
        parser.feed(data)
        return seen[0]

    def test_a_response_is_read_when_its_whole_body_came_with_its_head(self) -> None:
        self.assertTrue(self.read_at_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        self.assertTrue(self.read_at_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        self.assertTrue(self.read_at_head(b"HTTP/1.1 204 No Content\r\n\r\n"))
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        self.assertTrue(self.read_at_head(head, method=b"HEAD"))

    def test_a_response_with_more_to_come_is_not_read(self) -> None:
        self.assertFalse(self.read_at_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"))
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        self.assertFalse(self.read_at_head(chunked))
        self.assertFalse(self.read_at_head(b"HTTP/1.1 200 OK\r\n\r\nuntil close"))


class HttptoolsBodyTests(_Body, unittest.TestCase):
    backend = "httptools"


class H11BodyTests(_Body, unittest.TestCase):
    backend = "h11"
