"""llhttp checks a field block and C calls cut it: the fields are llhttp's own, every time."""

from __future__ import annotations

import random

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser
from twisted.trial import unittest

from clbproxy.http import parse_httptools
from clbproxy.http.parsers import response_parser
from tests.unit.http.test_parsing import Recorder

_NAMES = [b"Host", b"content-length", b"Transfer-Encoding", b"X-A", b"", b"Bad Name", b"A\x00"]
_SEPARATORS = [b":", b": ", b" :", b":\t", b"", b"::"]
_VALUES = [b"v", b" v ", b"", b"a:b", b"\x80\xff", b"\x01", b"\t x \t", b"  ", b"3", b"chunked"]
_BREAKS = [b"\r\n"] * 12 + [b"\n", b"\r", b"\r\n ", b"\r\n\t"]


def blocks(count: int, seed: int = 7) -> list:
    """Field blocks, most of them well formed, some with every kind of fault."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        lines = [
            rng.choice(_NAMES) + rng.choice(_SEPARATORS) + rng.choice(_VALUES)
            for _ in range(rng.randint(1, 5))
        ]
        block = lines[0]
        for line in lines[1:]:
            block += rng.choice(_BREAKS) + line
        made.append(block)
    return made


class _Callbacks:
    """llhttp's fields through its own per-field callback (what the splitter used to do)."""

    def __init__(self) -> None:
        self.fields: list = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value.rstrip(b" \t")))


def llhttp_fields(block: bytes):
    sink = _Callbacks()
    parser = HttpRequestParser(sink)
    parser.set_dangerous_leniencies(lenient_keep_alive=True, lenient_data_after_close=True)
    try:
        parser.feed_data(b"GET / HTTP/1.1\r\n" + block + b"\r\n\r\n")
    except HttpParserUpgrade:
        pass
    except HttpParserError:
        return None
    return sink.fields


def response_events(block: bytes, backend: str) -> list:
    recorder = Recorder()
    response_parser(recorder, b"GET", backend=backend).feed(
        b"HTTP/1.1 200 OK\r\n" + block + b"\r\nContent-Length: 0\r\n\r\n"
    )
    return [
        (kind, vars_of(head[0])) if kind == "head" else (kind, *head)
        for kind, *head in recorder.events
    ]


def vars_of(head) -> tuple:
    return tuple(head)


class SplitTests(unittest.TestCase):
    def test_a_request_block_is_split_as_llhttp_calls_its_fields_back(self) -> None:
        splitter = parse_httptools._Splitter(HttpRequestParser, b"GET / HTTP/1.1\r\n")
        for block in blocks(3000):
            self.assertEqual(splitter.fields(block), llhttp_fields(block), block)

    def test_a_response_block_is_split_as_the_h11_back_end_splits_it(self) -> None:
        # (llhttp reads a response's fields behind a 204 line, h11 behind a request line.)
        for block in blocks(1500, seed=11):
            httptools = response_events(block, "httptools")
            self.assertEqual(httptools, response_events(block, "h11"), block)

    def test_a_head_with_a_body_leaves_the_next_block_split_whole(self) -> None:
        splitter = parse_httptools._Splitter(HttpRequestParser, b"GET / HTTP/1.1\r\n")
        self.assertEqual(splitter.fields(b"Content-Length: 5"), [(b"Content-Length", b"5")])
        self.assertEqual(splitter.fields(b"A: b\r\nC: d"), [(b"A", b"b"), (b"C", b"d")])

    def test_a_response_splitter_keeps_its_parser_whatever_the_framing(self) -> None:
        splitter = parse_httptools._Splitter(HttpResponseParser, b"HTTP/1.1 204 No Content\r\n")
        parser = splitter.parser
        for block in (b"Content-Length: 5", b"Transfer-Encoding: chunked", b"Connection: close"):
            self.assertEqual(splitter.fields(block), [tuple(block.split(b": "))])
        self.assertIs(splitter.parser, parser)

    def test_an_empty_block_has_no_fields(self) -> None:
        splitter = parse_httptools._Splitter(HttpResponseParser, b"HTTP/1.1 204 No Content\r\n")
        self.assertEqual(splitter.fields(b""), [])
