"""The sans-IO HTTP/1.1 parsers: every rule, for each back end, however the bytes are cut.

Each test class below runs once per back end (httptools and h11); every
message is fed whole, byte by byte and in random cuts, and must give the same
callbacks each way.
"""

from __future__ import annotations

import os
import platform
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.http.parsers import available, chosen, request_parser, response_parser
from clbproxy.http.parsing import IRequestParser, IResponseParser
from clbproxy.http.server import HTTPLimits

LIMITS = HTTPLimits(max_request_line=1024, max_header_size=4096, max_body_size=1000)


class Recorder:
    """A handler that records callbacks, consecutive body data merged."""

    def __init__(self) -> None:
        self.events: list = []
        self.parser = None
        self.resume_after = True

    def _data(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", data))

    def request_head(self, head) -> None:
        self.events.append(("head", head))

    def response_head(self, head) -> None:
        self.events.append(("head", head))

    def interim(self, status, headers) -> None:
        self.events.append(("interim", status, headers))

    def body_data(self, data: bytes) -> None:
        self._data(data)

    def message_complete(self, trailers) -> None:
        self.events.append(("complete", trailers))

    def parse_error(self, status: int, detail: str) -> None:
        self.events.append(("error", status, detail))


def pieces(data: bytes, how: str, seed: int = 0) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 5))) if len(data) > 1 else []
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def comparable(events: list) -> list:
    """Events with heads as tuples of their fields (heads have no equality of their own)."""
    found = []
    for event in events:
        if event[0] == "head":
            head = event[1]
            found.append(("head", tuple(getattr(head, name) for name in head.__slots__)))
        else:
            found.append(event)
    return found


class _BackEnd:
    backend = ""

    def setUp(self):
        if self.backend not in available():
            raise unittest.SkipTest(f"{self.backend} is not installed")


class RequestParserTests(_BackEnd):
    """The request side (mixed into one TestCase per back end)."""

    def parse(self, data: bytes, limits: HTTPLimits = LIMITS, resume: bool = True) -> list:
        """The callbacks for ``data`` (the same whole, byte by byte and in random cuts)."""
        results = []
        for how in ("whole", "bytes", "cuts"):
            recorder = Recorder()
            parser = request_parser(recorder, limits, backend=self.backend)
            recorder.parser = parser
            for piece in pieces(data, how):
                parser.feed(piece)
                while resume and recorder.events and recorder.events[-1][0] == "complete":
                    count = len(recorder.events)
                    parser.resume()
                    if len(recorder.events) == count:
                        break
            results.append(recorder.events)
        first = comparable(results[0])
        for other in results[1:]:
            self.assertEqual(comparable(other), first)
        return results[0]

    def head(self, data: bytes, limits: HTTPLimits = LIMITS):
        events = self.parse(data, limits)
        self.assertEqual(events[0][0], "head", events)
        return events[0][1]

    def refused(self, data: bytes, limits: HTTPLimits = LIMITS) -> tuple:
        events = self.parse(data, limits)
        self.assertEqual(events[-1][0], "error", events)
        return events[-1][1:]

    def test_the_parser_provides_the_interface_and_names_its_back_end(self):
        parser = request_parser(Recorder(), LIMITS, backend=self.backend)
        self.assertTrue(IRequestParser.providedBy(parser))
        self.assertEqual(parser.backend, self.backend)

    def test_a_get_gives_its_head_and_completes(self):
        events = self.parse(b"GET /a?b=1 HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n")
        head = events[0][1]
        self.assertEqual(
            (head.method, head.target, head.version, head.host),
            (b"GET", b"/a?b=1", b"1.1", b"a.test"),
        )
        self.assertEqual(head.headers, [(b"Host", b"a.test"), (b"Accept", b"*/*")])
        self.assertEqual((head.content_length, head.chunked), (None, False))
        self.assertEqual(events[1:], [("complete", [])])

    def test_fields_keep_their_names_order_and_repeats_and_lose_surrounding_whitespace(self):
        head = self.head(
            b"GET / HTTP/1.1\r\nhost: a\r\nX-A:  one \t\r\nx-a:two\r\nX-B:\r\nX-A: a  b\r\n\r\n"
        )
        self.assertEqual(
            head.headers,
            [(b"host", b"a"), (b"X-A", b"one"), (b"x-a", b"two"), (b"X-B", b""), (b"X-A", b"a  b")],
        )

    def test_a_control_byte_in_a_value_is_kept_as_today(self):
        head = self.head(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\x7f\xff\r\n\r\n")
        self.assertEqual(head.headers[1], (b"X", b"a\x01b\x7f\xff"))

    def test_a_content_length_body_is_delivered_and_counted(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel")
        self.assertEqual(parser.body_received, 3)
        parser.feed(b"loGET")
        self.assertEqual(recorder.events[0][1].content_length, 5)
        self.assertEqual(recorder.events[1:], [("data", b"hello"), ("complete", [])])
        self.assertEqual(parser.body_received, 5)

    def test_a_chunked_body_gives_its_data_and_trailers(self):
        events = self.parse(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2;e\r\nde\r\n0\r\nX-T: one\r\nX-U:  two \r\n\r\n"
        )
        self.assertTrue(events[0][1].chunked)
        self.assertEqual(
            events[1:], [("data", b"abcde"), ("complete", [(b"X-T", b"one"), (b"X-U", b"two")])]
        )

    def test_expect_continue_is_an_http_1_1_request_asking_for_it(self):
        ask = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
        self.assertTrue(self.head(ask).expect_continue)
        old = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
        self.assertFalse(self.head(old).expect_continue)
        self.assertFalse(self.head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect_continue)

    def test_keep_alive_follows_the_version_and_connection(self):
        cases = {
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n": True,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n": False,
            b"GET / HTTP/1.0\r\n\r\n": False,
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n": True,
        }
        found = {data: self.head(data).keep_alive for data in cases}
        self.assertEqual(found, cases)

    def test_an_upgrade_needs_the_upgrade_field_and_the_connection_token(self):
        cases = {
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n": True,
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n": False,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n": False,
        }
        found = {data: self.head(data).upgrade for data in cases}
        self.assertEqual(found, cases)

    def test_an_absolute_form_target_becomes_origin_form_with_its_host(self):
        head = self.head(b"GET http://b.test:8080/x?y HTTP/1.1\r\nhost: a.test\r\nX: 1\r\n\r\n")
        self.assertEqual((head.target, head.host), (b"/x?y", b"b.test:8080"))
        self.assertEqual(head.headers, [(b"host", b"b.test:8080"), (b"X", b"1")])
        head = self.head(b"GET http://b.test HTTP/1.0\r\n\r\n")
        self.assertEqual((head.target, head.headers), (b"/", [(b"Host", b"b.test")]))

    def test_any_token_method_and_a_later_minor_version_pass(self):
        for line, method, version in [
            (b"get / HTTP/1.1", b"get", b"1.1"),
            (b"PURGE / HTTP/1.1", b"PURGE", b"1.1"),
            (b"M-1!#$%&'*+.^_`|~ / HTTP/1.1", b"M-1!#$%&'*+.^_`|~", b"1.1"),
            (b"GET / HTTP/1.2", b"GET", b"1.1"),
            (b"GET / HTTP/1.9", b"GET", b"1.1"),
            (b"GET / HTTP/1.0", b"GET", b"1.0"),
        ]:
            head = self.head(line + b"\r\nHost: a\r\n\r\n")
            self.assertEqual((head.method, head.version), (method, version), line)

    def test_one_empty_line_before_a_request_is_ignored(self):
        self.assertEqual(self.head(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").method, b"GET")
        self.assertEqual(
            self.refused(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            (400, "the request is malformed"),
        )

    def test_every_refusal_has_todays_status_and_reason(self):
        get = b"GET / HTTP/1.1\r\nHost: a\r\n"
        post = b"POST / HTTP/1.1\r\nHost: a\r\n"
        chunked = post + b"Transfer-Encoding: chunked\r\n\r\n"
        last = chunked + b"1\r\na\r\n0\r\n"
        malformed = "the request is malformed"
        cases = [
            (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n", 414, "the request line is too long"),
            (b"GET /" + b"a" * 5000, 414, "the request line is too long"),
            (get + b"X: " + b"b" * 4100 + b"\r\n\r\n", 431, "the request headers are too large"),
            (get + b"X: " + b"b" * 5000, 431, "the request headers are too large"),
            (
                get + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 50) for i in range(80)) + b"\r\n",
                431,
                "the request headers are too large",
            ),
            (get + b"X:\r\n" * 500 + b"\r\n", 431, "more than 500 header fields"),
            (post + b"Content-Length: 1001\r\n\r\n", 413, "the request body is larger than 1000"),
            (get + b"X: a\r\n b\r\n\r\n", 400, "obsolete line folding in a header"),
            (get + b"X: a\r\n\tb\r\n\r\n", 400, "obsolete line folding in a header"),
            (get + b"X: a\rb\r\n\r\n", 400, "a bare CR or LF in the request head"),
            (get + b"X: a\nY: b\r\n\r\n", 400, "a bare CR or LF in the request head"),
            (b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400, "the request target has a byte"),
            (b"GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n", 400, "a bare CR or LF in the request head"),
            (get + b"X: a\x00b\r\n\r\n", 400, malformed),
            (get + b"X : a\r\n\r\n", 400, malformed),
            (get + b"X(A): a\r\n\r\n", 400, malformed),
            (get + b": a\r\n\r\n", 400, malformed),
            (get + b"X a\r\n\r\n", 400, malformed),
            (post + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 400, "only Transfer-Encoding"),
            (post + b"Transfer-Encoding: identity\r\n\r\n", 400, "only Transfer-Encoding"),
            (
                post + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
                malformed,
            ),
            (
                post + b"Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
                400,
                malformed,
            ),
            (post + b"Transfer-Encoding: chunked\r\n" * 2 + b"\r\n", 400, malformed),
            (post + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\na", 400, malformed),
            (post + b"Content-Length: 1, 1\r\n\r\na", 400, malformed),
            (post + b"Content-Length: +1\r\n\r\na", 400, malformed),
            (b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, "the request target has a byte"),
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "the request target has"),
            (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "a request target has no fragment"),
            (get + b"Host: a\r\n\r\n", 400, "more than one Host header"),
            (b"GET / HTTP/1.1\r\n\r\n", 400, "a Host header is required"),
            (b"GET / HTTP/1.1\r\nHost: a:1:1\r\n\r\n", 400, "the Host header is not a valid"),
            (b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "a request target with userinfo"),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "only HTTP/1.0 and HTTP/1.1"),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "only HTTP/1.0 and HTTP/1.1"),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501, "CONNECT is not supported"),
            (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400, malformed),
            (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, malformed),
            (b"GET /\r\n\r\n", 400, malformed),
            (b"G(ET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, malformed),
            (chunked + b"1" + b"0" * 16 + b"\r\n", 400, "the chunk size is larger than 2^63-1"),
            (chunked + b"zz\r\n", 400, "a malformed chunk size line"),
            (chunked + b"-1\r\n", 400, "a malformed chunk size line"),
            (chunked + b"0x1\r\n", 400, "a malformed chunk size line"),
            (chunked + b" 1\r\n", 400, "a malformed chunk size line"),
            (chunked + b"1;a\\b\r\n", 400, "a malformed chunk size line"),
            (chunked + b"1;a\x00b\r\n", 400, "a malformed chunk size line"),
            (chunked + b"1;" + b"e" * 1100, 400, "a malformed chunk size line"),
            (chunked + b"1\r\naXY", 400, malformed),
            (last + b"X: a\r\n b\r\n\r\n", 400, "obsolete line folding in a trailer"),
            (last + b"X a\r\n\r\n", 400, "a trailer line without a colon"),
            (last + b"X(A): a\r\n\r\n", 400, "a trailer field name that is not a token"),
            (last + b"X: a\x00\r\n\r\n", 400, "NUL, CR or LF in a trailer field value"),
            (last + b"X: a\nY: b\r\n\r\n", 400, "NUL, CR or LF in a trailer field value"),
            (last + b"X: " + b"t" * 5000 + b"\r\n\r\n", 400, malformed),
            (last + b"X: " + b"t" * 5000, 400, malformed),
        ]
        for data, status, detail in cases:
            found = self.refused(data)
            self.assertEqual(found[0], status, (data[:80], found))
            self.assertTrue(found[1].startswith(detail), (data[:80], found))

    def test_nothing_is_called_back_after_an_error(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        parser.feed(b"GET / HTTP/2.0\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        parser.resume()
        parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(recorder.events, [("error", 505, recorder.events[0][2])])

    def test_a_bad_request_line_is_refused_before_the_head_is_complete(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        parser.feed(b"GET / HTTP/3.0\r\nHost: a\r\n")
        self.assertEqual(recorder.events[0][:2], ("error", 505))

    def test_the_next_request_is_read_only_after_resume(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        parser.feed(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        self.assertEqual([event[0] for event in recorder.events], ["head", "complete"])
        parser.feed(b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(len(recorder.events), 2)
        parser.resume()
        self.assertEqual(recorder.events[2][1].target, b"/2")
        self.assertEqual(recorder.events[3:], [("data", b"ok"), ("complete", [])])
        parser.resume()
        self.assertEqual(recorder.events[5][1].target, b"/3")

    def test_a_paused_parser_calls_nobody_and_keeps_what_it_is_fed(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
        parser.pause()
        parser.feed(b"def")
        self.assertEqual(recorder.events[1:], [("data", b"abc")])
        parser.resume()
        self.assertEqual(recorder.events[1:], [("data", b"abcdef"), ("complete", [])])

    def test_a_handler_may_pause_in_a_callback(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)

        def request_head(head):
            recorder.events.append(("head", head))
            parser.pause()

        recorder.request_head = request_head
        parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(len(recorder.events), 1)
        parser.resume()
        self.assertEqual(recorder.events[1:], [("data", b"abc"), ("complete", [])])

    def test_detach_after_an_upgrade_hands_back_the_bytes_untouched(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        frames = b"\x81\x85\x00\x00\x00\x00hello GET / HTTP/1.1\r\n\r\n"
        parser.feed(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            + frames[:5]
        )
        parser.feed(frames[5:])
        self.assertTrue(recorder.events[0][1].upgrade)
        self.assertEqual(recorder.events[1:], [("complete", [])])
        self.assertEqual(parser.detach(), frames)
        parser.feed(b"more")
        parser.resume()
        self.assertEqual(len(recorder.events), 2)

    def test_a_refused_upgrade_can_read_on(self):
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        parser.feed(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        parser.resume()
        self.assertEqual(recorder.events[2][1].target, b"/next")

    @given(st.data())
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.differing_executors],  # one class per back end
    )
    def test_any_cut_gives_the_same_callbacks(self, data):
        message = data.draw(st.sampled_from(MESSAGES))
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(message) - 1)), max_size=8)))
        bounds = [0, *cuts, len(message)]
        recorder = Recorder()
        parser = request_parser(recorder, LIMITS, backend=self.backend)
        for a, b in zip(bounds, bounds[1:]):
            parser.feed(message[a:b])
        self.assertEqual(comparable(recorder.events), comparable(self.parse(message, resume=False)))


MESSAGES = [
    b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nT: v\r\n\r\n",
    b"GET http://a.test/x HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
]


class HttptoolsRequestTests(RequestParserTests, unittest.TestCase):
    backend = "httptools"


class H11RequestTests(RequestParserTests, unittest.TestCase):
    backend = "h11"


class ResponseParserTests(_BackEnd):
    """The response side (mixed into one TestCase per back end)."""

    def parse(self, data: bytes, method: bytes = b"GET", eof: bool = False, **kwargs) -> list:
        results = []
        for how in ("whole", "bytes", "cuts"):
            recorder = Recorder()
            parser = response_parser(recorder, method, backend=self.backend, **kwargs)
            for piece in pieces(data, how):
                parser.feed(piece)
            if eof:
                parser.eof()
            results.append(recorder.events)
        first = comparable(results[0])
        for other in results[1:]:
            self.assertEqual(comparable(other), first)
        return results[0]

    def error(self, data: bytes, **kwargs) -> tuple:
        events = self.parse(data, **kwargs)
        self.assertEqual(events[-1][0], "error", events)
        return events[-1][1:]

    def test_the_parser_provides_the_interface(self):
        parser = response_parser(Recorder(), backend=self.backend)
        self.assertTrue(IResponseParser.providedBy(parser))
        self.assertEqual(parser.backend, self.backend)

    def test_a_content_length_response(self):
        events = self.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX:  y \r\n\r\nabc")
        head = events[0][1]
        self.assertEqual((head.status, head.reason, head.version), (200, b"OK", b"1.1"))
        self.assertEqual(head.headers, [(b"Content-Length", b"3"), (b"X", b"y")])
        self.assertEqual((head.content_length, head.keep_alive), (3, True))
        self.assertEqual(events[1:], [("data", b"abc"), ("complete", [])])

    def test_a_chunked_response_with_trailers_malformed_ones_dropped(self):
        events = self.parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x=1\r\nabc\r\n0\r\nX-T: 1\r\nbad line\r\n\r\n"
        )
        self.assertTrue(events[0][1].chunked)
        self.assertEqual(events[1:], [("data", b"abc"), ("complete", [(b"X-T", b"1")])])

    def test_a_body_until_close(self):
        events = self.parse(b"HTTP/1.0 200 OK\r\n\r\nall of it", eof=True)
        head = events[0][1]
        self.assertEqual((head.until_close, head.keep_alive, head.version), (True, False, b"1.0"))
        self.assertEqual(events[1:], [("data", b"all of it"), ("complete", [])])

    def test_head_204_and_304_have_no_body(self):
        for data, method in [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"HEAD"),
            (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET"),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", b"GET"),
        ]:
            events = self.parse(data, method)
            self.assertEqual(events[1:], [("complete", [])], data)
            self.assertTrue(events[0][1].keep_alive)

    def test_interim_responses_come_before_the_final_one(self):
        events = self.parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(events[0], ("interim", 100, []))
        self.assertEqual(events[1], ("interim", 103, [(b"Link", b"</s>")]))
        self.assertEqual(events[2][1].status, 200)

    def test_a_101_is_final_and_detach_hands_back_what_follows(self):
        recorder = Recorder()
        parser = response_parser(recorder, backend=self.backend)
        parser.feed(
            b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81"
        )
        self.assertTrue(recorder.events[0][1].upgrade)
        self.assertEqual(recorder.events[1:], [("complete", [])])
        parser.feed(b"\x00")
        self.assertEqual(parser.detach(), b"\x81\x00")

    def test_the_next_response_waits_for_its_method(self):
        recorder = Recorder()
        parser = response_parser(recorder, backend=self.backend)
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n")
        parser.feed(b"Content-Length: 5\r\n\r\n")
        self.assertEqual(len(recorder.events), 3)
        parser.next_response(b"HEAD")
        self.assertEqual(recorder.events[3][1].content_length, None)
        self.assertEqual(recorder.events[4:], [("complete", [])])

    def test_a_malformed_response_is_a_502_with_a_reason(self):
        ok = b"HTTP/1.1 200 OK\r\n"
        chunked = ok + b"Transfer-Encoding: chunked\r\n\r\n"
        cases = [
            (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
            (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x status line"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x status line"),
            (b"HTTP/1.1 099 OK\r\n\r\n", "status 99 is not a valid status"),
            (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
            (ok + b"X: a\nY: b\r\n\r\n", "a bare CR or LF, a NUL or obs-fold"),
            (ok + b"X: a\r\n b\r\n\r\n", "a bare CR or LF, a NUL or obs-fold"),
            (ok + b"X : a\r\n\r\n", "a malformed response header field"),
            (ok + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n", "a repeated or invalid"),
            (ok + b"Content-Length: 1, 1\r\n\r\n", "a repeated or invalid"),
            (ok + b"Content-Length: -1\r\n\r\n", "a repeated or invalid"),
            (ok + b"Transfer-Encoding: gzip\r\n\r\n", "a Transfer-Encoding other than chunked"),
            (
                ok + b"Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
                "Content-Length with Transfer-Encoding",
            ),
            (chunked + b"1" * 17 + b"\r\n", "a malformed chunked response body: bad chunk"),
            (chunked + b"0x1\r\n", "a malformed chunked response body: bad chunk"),
            (chunked + b"1 \r\n", "a malformed chunked response body: bad chunk"),
            (chunked + b"8" + b"0" * 15 + b"\r\n", "a malformed chunked response body: chunk"),
            (chunked + b"1;\x01\r\n", "a malformed chunked response body: a control"),
            (chunked + b"1\r\naXY", "a malformed chunked response body: a chunk without"),
            (ok + b"X: " + b"a" * 70000 + b"\r\n\r\n", "the response head is larger than"),
        ]
        for data, detail in cases:
            status, found = self.error(data)
            self.assertEqual(status, 502)
            self.assertTrue(found.startswith(detail), (data[:60], found))

    def test_a_close_in_the_middle_of_a_body_is_an_error(self):
        for data in (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-",
        ):
            self.assertEqual(
                self.error(data, eof=True),
                (502, "the backend closed the connection in the middle of a response"),
            )

    def test_a_close_while_paused_counts_once_the_held_bytes_are_read(self):
        for data, end in [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", ("complete", [])),
            (b"HTTP/1.1 200 OK\r\n\r\n", ("complete", [])),
        ]:
            recorder = Recorder()
            parser = response_parser(recorder, backend=self.backend)
            parser.feed(data)
            parser.pause()
            parser.feed(b"abc")
            parser.eof()
            self.assertEqual(recorder.events[1:], [])
            parser.resume()
            self.assertEqual(recorder.events[1:], [("data", b"abc"), end])

    def test_a_close_after_a_complete_response_is_quiet(self):
        events = self.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxjunk", eof=True)
        self.assertEqual(events[1:], [("data", b"x"), ("complete", [])])


class HttptoolsResponseTests(ResponseParserTests, unittest.TestCase):
    backend = "httptools"


class H11ResponseTests(ResponseParserTests, unittest.TestCase):
    backend = "h11"


class ChoiceTests(unittest.TestCase):
    def test_httptools_is_chosen_on_cpython_and_h11_elsewhere(self):
        # The default choice, whatever CLBPROXY_HTTP_PARSER the run itself forces.
        environment = {k: v for k, v in os.environ.items() if k != "CLBPROXY_HTTP_PARSER"}
        self.patch(os, "environ", environment)
        cpython = platform.python_implementation() == "CPython"
        self.assertEqual(chosen(), "httptools" if cpython else "h11")

    def test_either_back_end_can_be_forced(self):
        for backend in available():
            self.assertEqual(chosen(backend), backend)

    def test_the_environment_forces_a_back_end(self):
        self.patch(__import__("os").environ, "get", lambda name, default=None: "h11")
        self.assertEqual(request_parser(Recorder(), LIMITS).backend, "h11")

    def test_an_unknown_back_end_is_named(self):
        with self.assertRaises(ValueError) as caught:
            chosen("picohttp")
        self.assertIn("unknown HTTP parser 'picohttp'", str(caught.exception))
