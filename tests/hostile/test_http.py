"""The hostile HTTP table (http_cases.py) and slow or flooding clients, over real sockets.

Every table case is one test of the generic catalogue runner (``catalog.py``): a
fresh connection to a proxy and backend in a child process, the exact status, the
connection closed, the proxy's one-line reason in its log, the backend's log
untouched (or, for ``ACCEPTED``, the request in it), and no traceback.  Slow
clients (headers trickled, a stalled body) meet a listener with one-second
timeouts; a pipelining flood meets one with the default timeouts.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial import unittest
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from clbproxy.config import FixedResponseConfig, RuleConfig
from tests.hostile import catalog
from tests.hostile.catalog import CatalogTestCase, Closed, Pause, Status, Trickle, proxy_fixture
from tests.hostile.http_cases import (
    ACCEPTED,
    CASES,
    DEFAULT_HOST,
    DENIED,
    DENIED_HOST,
    FORWARDED_HOST,
    HOST_CASES,
    LIMITS,
    PATH_CASES,
)
from tests.support.network import Listening, raw_request

#: What the backend's own twisted.web ``Site`` logs for each request it serves.
BACKEND_LOG = re.compile(r'"127\.0\.0\.1" - - \[[^]]*\] "([^"]*)"')


def rejected(entry) -> catalog.Case:
    """A table case the proxy refuses: that status, a close, the reason logged."""
    return catalog.case(
        entry.name,
        entry.request,
        expect=Status(entry.status, closes=True),
        log=f"Rejected a request from 127.0.0.1 with {entry.status}: {entry.detail}",
    )


def answered(entry) -> catalog.Case:
    """A table case answered without a rejection line (a rule's answer, a path refused)."""
    return catalog.case(entry.name, entry.request, expect=Status(entry.status, closes=True))


def forwarded(entry) -> catalog.Case:
    return catalog.case(entry.name, entry.request, expect=Status(entry.status, closes=True))


class _BackendCheck:
    """Refused requests leave the backend's log untouched; accepted ones go through it."""

    accepted: frozenset = frozenset()

    def check_log(self, entry: catalog.Case, text: str) -> None:
        served = BACKEND_LOG.findall(text)
        if entry.name in self.accepted:
            self.assertEqual(len(served), 1, f"the backend served {served}")
        else:
            self.assertEqual(served, [], "a refused request reached the backend")


class HostileRequestCatalogue(_BackendCheck, CatalogTestCase):
    """Refused requests never reach the backend; unusual valid ones do."""

    fixture = proxy_fixture(listener=dict(LIMITS))
    cases = (
        [rejected(entry) for entry in CASES]
        + [forwarded(entry) for entry in ACCEPTED]
        + [
            # twisted.web answers the asterisk form itself (RFC 9110 9.3.7), unrouted.
            catalog.case(
                "asterisk-form OPTIONS is answered by the proxy",
                b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                expect=Status(200, (("Content-Length", "0"),), closes=True),
            ),
            catalog.case(
                "asterisk-form GET",
                b"GET * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                expect=Status(405, (("Allow", "OPTIONS"),), closes=True),
            ),
        ]
    )
    accepted = frozenset(entry.name for entry in ACCEPTED)


class PathBypassCatalogue(_BackendCheck, CatalogTestCase):
    """A rule answering 403 for ``/admin`` cannot be bypassed by encoded or dotted paths."""

    fixture = proxy_fixture(
        listener=dict(
            LIMITS,
            rules=[
                {"path": DENIED, "fixed_response": {"status": 403, "body": "denied"}},
                {"path": "/"},
            ],
        )
    )
    cases = [answered(entry) for entry in PATH_CASES]


class HostHeaderCatalogue(_BackendCheck, CatalogTestCase):
    """One host per request: an absolute-form target's authority, else the only Host header.

    Requests for FORWARDED_HOST would reach the backend, which must see none of
    these; DENIED_HOST answers 403 and the default domain DEFAULT_HOST 410.
    """

    fixture = proxy_fixture(
        listener=dict(
            LIMITS,
            default_domain=DEFAULT_HOST,
            rules=[
                {"host": FORWARDED_HOST},
                {"host": DENIED_HOST, "fixed_response": {"status": 403, "body": "denied"}},
                {"host": DEFAULT_HOST, "fixed_response": {"status": 410, "body": "default"}},
            ],
        )
    )
    cases = [answered(entry) for entry in HOST_CASES]


_SLOW_GET = b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: " + b"s" * 60 + b"\r\n\r\n"
_STALLED = b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc"

SLOW = [
    # One byte every 0.2 s never leaves the connection idle for long, yet the
    # header read ends after header_timeout: the timeout is absolute.
    catalog.case(
        "headers trickled a byte every 0.2 s",
        Trickle(_SLOW_GET, every=0.2),
        expect=Status(408, closes=True),
        log="request headers not received within 1 s: 408",
    ),
    catalog.case(
        "request line trickled a byte every 0.2 s",
        Trickle(b"GET /" + b"p" * 40 + b" HTTP/1.1\r\n", every=0.2),
        expect=Status(408, closes=True),
        log="request headers not received within 1 s: 408",
    ),
    # Past the headers, client_timeout is the idle timeout of the body read: the
    # backend already has the request, so no answer can be sent; the connection
    # is closed and the exchange logged as a client that went away.
    catalog.case(
        "body stalled past client_timeout",
        _STALLED,
        Pause(1.5),
        expect=Closed(),
        log="Timing out client",
    ),
    catalog.case(
        "chunked body stalled past client_timeout",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        expect=Closed(),
        log="Timing out client",
    ),
]


class SlowClientCatalogue(CatalogTestCase):
    """header_timeout and client_timeout of one second against slow clients."""

    fixture = proxy_fixture(listener=dict(header_timeout=1, client_timeout=1))
    cases = SLOW


#: Pipelined requests in the flood, each with a long target so that the answers
#: (which echo it) outgrow the socket buffers while the client does not read.
FLOOD = 3000
_TARGET = b"/" + b"f" * 4000


def _flood_request(index: int) -> bytes:
    return b"GET %s/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % (_TARGET, index)


class PipeliningFloodTests(unittest.SynchronousTestCase):
    """Thousands of pipelined requests written without reading the answers."""

    fixture = proxy_fixture()

    def served_count(self, log: list) -> int:
        log.append(self.fixture.new_log())
        return len(BACKEND_LOG.findall("".join(log)))

    def test_answers_come_in_order_reading_is_bounded_and_others_are_served(self):
        port = self.fixture.start()["proxy"]
        flood = [_flood_request(index) for index in range(FLOOD)]
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.addCleanup(sock.close)
        written = [0]

        def write() -> None:
            try:
                for request in flood:
                    sock.sendall(request)
                    written[0] += 1
            except OSError:
                pass

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        log: list = []
        served, still, deadline = -1, 0, time.monotonic() + 30
        while still < 2 and time.monotonic() < deadline:  # until forwarding stops for 1 s
            time.sleep(0.5)
            now = self.served_count(log)
            still = still + 1 if now == served else 0
            served = now
        self.assertLess(served, FLOOD, "the proxy read every request of a client not reading")
        self.assertLess(written[0], FLOOD, "the whole flood fitted in the buffers")

        other = socket.create_connection(("127.0.0.1", port), timeout=10)
        with other:
            other.sendall(b"GET /other HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            answer = catalog.Reader(other, time.monotonic() + 10).until_eof()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200])
        self.assertTrue(answer.endswith(b"plain /other"), answer[-200:])
        self.assertEqual(self.served_count(log), served + 1, "the flood went on while stalled")

        reader = catalog.Reader(sock, time.monotonic() + 120)
        for index in range(FLOOD):
            status, headers = reader.head()
            body = reader.take(int(catalog.header_value(headers, "content-length")))
            self.assertEqual((status, body), (200, b"plain %s/%d" % (_TARGET, index)))
        writer.join(10)
        self.assertEqual(written[0], FLOOD)
        self.assertEqual(self.served_count(log), FLOOD + 1)
        self.assertTrue(self.fixture.alive())
        for alarm in catalog.LOG_ALARMS:
            self.assertNotIn(alarm, "".join(log))


class _Backend(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests = []

    def render(self, request):
        self.requests.append((request.method, request.uri))
        return b"backend"


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0].split(b" ")
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


class ForwardedRequestTests(TestCase):
    """What a valid request and a refused one look like in full, in process."""

    timeout = 30

    async def setUp(self) -> None:
        self.backend = _Backend()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.backend)
        )
        self.addCleanup(port.stopListening)
        self.net = Listening(self)
        rules = (
            RuleConfig(path=DENIED, fixed_response=FixedResponseConfig(403, "denied")),
            RuleConfig(target_group="pool", path="/"),
        )
        self.port = await self.net.proxy([port.getHost().port], rules=rules, **LIMITS)

    async def test_a_valid_request_passes(self) -> None:
        response = await raw_request(
            self.port, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual((status_of(response), response.endswith(b"backend")), (200, True))

    async def test_rejection_page_is_json_when_asked(self) -> None:
        response = await raw_request(
            self.port, b"GET / HTTP/1.1\r\nAccept: application/json\r\nX A: b\r\n\r\n"
        )
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Type: application/json", head)
        request_id = re.search(rb"\r\nX-Request-Id: ([0-9a-f]{32})\r\n", head).group(1).decode()
        self.assertEqual(
            json.loads(body),
            {
                "status": 400,
                "error": "Bad Request",
                "detail": "the request is malformed",
                "request_id": request_id,
            },
        )

    async def test_the_target_reaches_the_backend_as_sent(self) -> None:
        response = await raw_request(
            self.port,
            b"GET /x/%2e%2e/app%2Fy?q=%2F HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        self.assertEqual(status_of(response), 200)
        self.assertEqual(self.backend.requests, [(b"GET", b"/x/%2e%2e/app%2Fy?q=%2F")])

    async def test_a_lower_case_method_reaches_the_backend_unchanged(self) -> None:
        response = await raw_request(
            self.port, b"get /m HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        )
        self.assertEqual(status_of(response), 200)
        self.assertEqual(self.backend.requests, [(b"get", b"/m")])

    async def test_the_host_problem_is_named_in_the_error_page(self) -> None:
        response = await raw_request(
            self.port, b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"
        )
        self.assertEqual(status_of(response), 400)
        self.assertIn(b"more than one Host header (RFC 9112 3.2)", response)
