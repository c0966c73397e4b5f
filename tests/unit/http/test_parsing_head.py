"""A request head read in one walk of its fields: the same head as the line-by-line replay.

A head that arrives whole is read by the fast path
(:meth:`~clbproxy.http.parsing.RequestParser._fast`); one that arrives byte by
byte by :class:`~clbproxy.http.parse_rules.ExactHead`.  Every attribute of the
:class:`~clbproxy.http.parsing.RequestHead` they give must be the same, on each
back end.
"""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.parsers import available, request_parser
from clbproxy.http.server import HTTPLimits
from tests.unit.http.test_parsing import Recorder

LIMITS = HTTPLimits(max_request_line=1024, max_header_size=4096, max_body_size=1000)

ATTRIBUTES = (
    "method",
    "target",
    "version",
    "headers",
    "host",
    "content_length",
    "chunked",
    "keep_alive",
    "upgrade",
    "expect_continue",
    "connection",
    "grouped",
)

HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"get /x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nconnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nExpect: other\r\nExpect: 100-continue\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET http://b.test:8/p HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n",
    b"GET http://b.test/p HTTP/1.0\r\nX: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Sp:  v \t\r\nTE: trailers\r\n\r\n",
    b"PURGE / HTTP/1.2\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\nCOOKIE: a=1\r\nX: 1\r\ncookie: b=2\r\n\r\n",
    b"GET http://b.test/p HTTP/1.1\r\nX: 1\r\nhost: a\r\nHOST-X: 2\r\n\r\n",
]


class _HeadTests:
    backend = ""

    def setUp(self):
        if self.backend not in available():
            raise unittest.SkipTest(f"the {self.backend} HTTP parser is not installed here")

    def head(self, data: bytes, whole: bool):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        for piece in [data] if whole else [data[i : i + 1] for i in range(len(data))]:
            parser.feed(piece)
        (head,) = [event[1] for event in recorder.events if event[0] == "head"]
        return {name: getattr(head, name) for name in ATTRIBUTES}

    def test_a_whole_head_and_one_fed_byte_by_byte_are_the_same(self):
        for data in HEADS:
            self.assertEqual(self.head(data, True), self.head(data, False), data)

    def test_connection_holds_the_connection_values_in_order(self):
        data = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a, b\r\nX: 1\r\nconnection: c\r\n\r\n"
        self.assertEqual(self.head(data, True)["connection"], [b"a, b", b"c"])

    def test_grouped_holds_the_fields_as_field_headers_groups_them(self):
        for data in HEADS:
            for whole in (True, False):
                head = self.head(data, whole)
                grouped = FieldHeaders.from_pairs(head["headers"]).grouped()
                self.assertEqual(list(head["grouped"].items()), list(grouped.items()), data)

    def test_an_absolute_target_puts_its_authority_in_the_grouped_host(self):
        head = self.head(b"GET http://b.test/p HTTP/1.1\r\nhost: a\r\n\r\n", True)
        self.assertEqual(head["grouped"], {b"Host": [b"b.test"]})

    def test_one_connection_value_decides_alike_each_time_it_comes(self):
        seen = [
            (
                self.head(b"GET / HTTP/%s\r\nHost: a\r\nConnection: %s\r\n\r\n" % v, True)[
                    "keep_alive"
                ]
            )
            for v in [
                (b"1.0", b"keep-alive"),
                (b"1.1", b"keep-alive"),
                (b"1.0", b"keep-alive"),
                (b"1.1", b"Close, x"),
                (b"1.1", b"Close, x"),
                (b"1.0", b"x"),
            ]
        ]
        self.assertEqual(seen, [True, True, True, False, False, False])

    def test_a_head_without_connection_has_none(self):
        self.assertFalse(self.head(HEADS[0], True)["connection"])


class HttptoolsHeadTests(_HeadTests, unittest.TestCase):
    backend = "httptools"


class H11HeadTests(_HeadTests, unittest.TestCase):
    backend = "h11"
