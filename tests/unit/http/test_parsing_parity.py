"""Both parser back ends, on a listener connection: the same requests framed the same way.

For every input, a :class:`~clbproxy.listener.connection.ListenerConnection`
parsing with ``httptools`` and one parsing with ``h11`` (each over a
``StringTransport``) must give the same outcome
(:mod:`tests.support.http_parsing`): the same requests (method, target,
fields, body, trailers) and then the same refusal status and reason, or none.
Inputs: the hostile HTTP catalogue, the listener fuzz harness's seed corpus,
and requests generated from pieces that break each rule, each fed whole, byte
by byte and in 7-byte pieces (generated ones in cuts hypothesis chooses).
What each refusal must be is pinned elsewhere: per rule in
``tests/unit/http/test_parsing.py``, per hostile case on a running proxy in
``tests/hostile/test_http.py``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.http.parsers import available
from clbproxy.http.server import HTTPLimits
from tests.hostile.http_cases import ACCEPTED, CASES, HOST_CASES, LIMITS, PATH_CASES
from tests.support.handshakes import upgrade_request
from tests.support.http_parsing import connection_outcome, cuts

#: Where the two back ends deliberately answer otherwise: case name -> why.
#: (None so far.)
DIFFERENCES: dict[str, str] = {}

CATALOGUE_LIMITS = HTTPLimits(**LIMITS)

#: Statuses a listener connection answers itself (the others come from routing,
#: access lists or the backend, after the request was framed).
REFUSALS = {400, 413, 414, 431, 501, 505}

#: The fuzz harness's seed inputs (tests/unit/http/test_server_fuzz_corpus.py) that are not
#: in the catalogue, and pipelines.
CORPUS = {
    "fixed": b"GET /fixed HTTP/1.1\r\nHost: a\r\n\r\n",
    "forwarded": b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "upgrade": upgrade_request(host="a"),
    "upgrade with origin": upgrade_request(host="origin.test", extra=b"Origin: https://b\r\n"),
    "upgrade version 8": upgrade_request(version="8"),
    "empty": b"",
    "tls hello": b"\x16\x03\x01\x00\x05hello",
    "upgrade with a broken chunked body": upgrade_request(
        host="a", extra=b"Transfer-Encoding: chunked\r\n"
    )
    + b"3\r\nabcX\r\n0\r\n\r\n",
    "pipelined gets": b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    "pipelined bodies then an error": (
        b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\nT: 1\r\n\r\n"
        b"GET /3 HTTP/2.0\r\n\r\n"
    ),
    "close then more": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /",
    "http/1.0 then more": b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    "leading empty line": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "two leading empty lines": b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "empty line between pipelined requests": (
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    ),
}


def _inputs() -> dict[str, bytes]:
    found = {case.name: case.request for case in CASES + ACCEPTED + HOST_CASES + PATH_CASES}
    found.update(CORPUS)
    return found


def _inputs() -> dict[str, bytes]:
    found = {case.name: case.request for case in CASES + ACCEPTED + HOST_CASES + PATH_CASES}
    found.update(CORPUS)
    return found


class ParserParityTests(unittest.TestCase):
    def setUp(self):
        missing = {"httptools", "h11"} - set(available())
        if missing:
            raise unittest.SkipTest(f"{', '.join(sorted(missing))} is not installed")

    def outcomes(self, chunks, limits: HTTPLimits) -> tuple[list, list]:
        return (
            connection_outcome(chunks, limits, "httptools"),
            connection_outcome(chunks, limits, "h11"),
        )

    def differences(self, inputs: dict[str, bytes], limits: HTTPLimits) -> dict:
        found = {}
        for name, data in inputs.items():
            for how in ("whole", "bytes", "sevens"):
                llhttp, h11 = self.outcomes(cuts(data, how), limits)
                if llhttp != h11:
                    found[name] = (how, llhttp, h11)
                    break
        return found

    def test_the_catalogue_and_the_fuzz_corpus_are_framed_alike_by_both_parsers(self):
        found = self.differences(_inputs(), CATALOGUE_LIMITS)
        self.assertEqual(
            {name: found[name] for name in found if name not in DIFFERENCES},
            {},
        )

    def test_the_table_of_differences_names_real_cases(self):
        self.assertEqual(set(DIFFERENCES) - set(_inputs()), set())

    def test_the_catalogue_refusals_are_the_connections_own(self):
        # The outcome is what the connection did, not an empty record on both sides.
        found, expected = {}, {}
        for case in CASES:
            if case.status not in REFUSALS:
                continue
            outcome = connection_outcome([case.request], CATALOGUE_LIMITS, "httptools")
            last = outcome[-1] if outcome else None
            found[case.name] = last[:2] if last else None
            expected[case.name] = ("refused", case.status)
            if last and not last[2].startswith(case.detail):
                found[case.name] = last
        self.assertEqual(found, expected)

    @given(st.data())
    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.differing_executors, HealthCheck.too_slow],
    )
    def test_generated_requests_are_framed_alike_by_both_parsers(self, data):
        message = data.draw(connections())
        points = data.draw(st.sets(st.integers(1, max(1, len(message) - 1)), max_size=6))
        bounds = [0, *sorted(points), len(message)]
        chunks = [message[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] or [b""]
        limits = data.draw(st.sampled_from([CATALOGUE_LIMITS, SMALL_LIMITS]))
        llhttp, h11 = self.outcomes(chunks, limits)
        self.assertEqual(h11, llhttp, message)
        self.assertEqual(self.outcomes([message], limits), (llhttp, llhttp), message)


#: Limits small enough for generated requests to cross each of them.
SMALL_LIMITS = HTTPLimits(max_request_line=40, max_header_size=120, max_body_size=8)

METHODS = [b"GET", b"POST", b"get", b"PURGE", b"G(ET", b"CONNECT", b"", b"GET\x00", b"M-1~"]
TARGETS = [
    b"/",
    b"/a?b=1",
    b"http://b.test/x",
    b"HTTPS://B.test:8443",
    b"http://u@b.test/",
    b"http://b:1:1/",
    b"ftp://b.test/x",
    b"*",
    b"/a#b",
    b"/caf\xc3\xa9",
    b"/a\x7f",
    b"a.test:443",
    b"",
    b"/a b",
    b"/" + b"x" * 50,
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.10", b""]
FIELDS = [
    b"Host: a.test",
    b"Host: a.test",
    b"Host: b.test:80",
    b"host:[::1]",
    b"Host: a:1:1",
    b"Host: ",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"content-length:  3 ",
    b"Content-Length: 3, 3",
    b"Content-Length: +3",
    b"Content-Length: 20",
    b"Transfer-Encoding: chunked",
    b"transfer-encoding: Chunked\t",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding : chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"X-A: one",
    b"X-A:",
    b"x-a:\ttwo  ",
    b"X-B: a\x01b\x7f\xff",
    b"X-C: a\x00b",
    b"X-D: a\rb",
    b"X-E: a\nX-F: b",
    b" folded",
    b"\tfolded",
    b"X G: a",
    b"X(G): a",
    b": a",
    b"NoColon",
    b"X-Long: " + b"l" * 100,
    b"",
]
BODIES = [
    b"",
    b"abc",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"3;e e\r\nabc\r\n0\r\n\r\n",
    b"3;a\\b\r\nabc\r\n0\r\n\r\n",
    b"zz\r\nabc\r\n0\r\n\r\n",
    b"3 \r\nabc\r\n0\r\n\r\n",
    b"10000000000000000\r\n",
    b"3\r\nabcX\r\n0\r\n\r\n",
    b"9\r\n123456789\r\n0\r\n\r\n",
    b"0\r\nX: a\r\n b\r\n\r\n",
    b"0\r\nX a\r\n\r\n",
    b"0\r\nHost: a\r\n\r\n",
    b"0\r\n" + b"T: " + b"t" * 200 + b"\r\n\r\n",
    b"0\r\n\r\n",
]


@st.composite
def requests(draw) -> bytes:
    line = b" ".join(
        [
            draw(st.sampled_from(METHODS)),
            draw(st.sampled_from(TARGETS)),
            draw(st.sampled_from(VERSIONS)),
        ]
    )
    if draw(st.booleans()):
        line = line.replace(b" ", b"", 1) if draw(st.booleans()) else line + b" x"
    fields = draw(st.lists(st.sampled_from(FIELDS), max_size=6))
    lines = [line, *fields]
    lead = b"\r\n" if draw(st.integers(0, 9)) == 0 else b""
    return lead + b"\r\n".join(lines) + b"\r\n\r\n" + draw(st.sampled_from(BODIES))


@st.composite
def connections(draw) -> bytes:
    """One or two requests, as one client connection sends them."""
    return b"".join(draw(st.lists(requests(), min_size=1, max_size=2)))
