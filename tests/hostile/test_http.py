"""Runs every case of the hostile HTTP table (http_cases.py) over real sockets on 127.0.0.1."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from clbproxy.config import FixedResponseConfig, RuleConfig
from tests.hostile.http_cases import (
    CASES,
    DEFAULT_HOST,
    DENIED,
    DENIED_HOST,
    FORWARDED_HOST,
    HOST_CASES,
    LIMITS,
    PATH_CASES,
    Case,
)
from tests.integration.support import Listening, raw_request


class _Client(Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = bytearray()
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.done.callback(None)


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


class HostileInputTests(TestCase):
    """Each case gets its expected status and a closed connection; the backend sees nothing."""

    timeout = 30

    async def setUp(self) -> None:
        self.backend = _Backend()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.backend)
        )
        self.addCleanup(port.stopListening)
        self.net = Listening(self)
        self.port = await self.net.proxy([port.getHost().port], **LIMITS)

    async def run_case(self, case: Case) -> tuple[str, int, bool]:
        """``(name, status answered, closed after one response)``; a hang counts as not closed."""
        client = _Client(case.request)
        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client
        )
        timer = reactor.callLater(3, protocol.transport.abortConnection)
        await client.done
        closed = timer.active()
        if closed:
            timer.cancel()
        response = bytes(client.received)
        return case.name, status_of(response), closed and response.count(b"HTTP/1.1 ") == 1

    async def test_every_case_is_answered_with_its_status(self) -> None:
        results = [await self.run_case(case) for case in CASES]
        self.assertEqual(results, [(case.name, case.status, True) for case in CASES])
        self.assertEqual(self.backend.requests, [])

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
        self.assertEqual(
            body, b'{"status": 400, "error": "Bad Request", "detail": "the request is malformed"}\n'
        )


class PathBypassTests(HostileInputTests):
    """A rule answering 403 for ``/admin`` cannot be bypassed by encoded or dotted paths."""

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

    async def test_every_case_is_answered_with_its_status(self) -> None:
        results = [await self.run_case(case) for case in PATH_CASES]
        self.assertEqual(results, [(case.name, case.status, True) for case in PATH_CASES])
        self.assertEqual(self.backend.requests, [])

    async def test_the_target_reaches_the_backend_as_sent(self) -> None:
        response = await raw_request(
            self.port,
            b"GET /x/%2e%2e/app%2Fy?q=%2F HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        self.assertEqual(status_of(response), 200)
        self.assertEqual(self.backend.requests, [(b"GET", b"/x/%2e%2e/app%2Fy?q=%2F")])


class HostHeaderTests(HostileInputTests):
    """One host per request: an absolute-form target's authority, else the only Host header."""

    async def setUp(self) -> None:
        self.backend = _Backend()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.backend)
        )
        self.addCleanup(port.stopListening)
        self.net = Listening(self)
        rules = (
            RuleConfig(target_group="pool", host=FORWARDED_HOST),
            RuleConfig(host=DENIED_HOST, fixed_response=FixedResponseConfig(403, "denied")),
            RuleConfig(host=DEFAULT_HOST, fixed_response=FixedResponseConfig(410, "default")),
        )
        self.port = await self.net.proxy(
            [port.getHost().port], rules=rules, default_domain=DEFAULT_HOST, **LIMITS
        )

    async def run_case(self, case: Case) -> tuple[str, int, bool]:
        """As the base class's, counting HTTP/1.0 responses (to HTTP/1.0 requests) too."""
        client = _Client(case.request)
        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client
        )
        timer = reactor.callLater(3, protocol.transport.abortConnection)
        await client.done
        closed = timer.active()
        if closed:
            timer.cancel()
        response = bytes(client.received)
        one = response.count(b"HTTP/1.1 ") + response.count(b"HTTP/1.0 ") == 1
        return case.name, status_of(response), closed and one

    async def test_every_case_is_answered_with_its_status(self) -> None:
        results = [await self.run_case(case) for case in HOST_CASES]
        self.maxDiff = None
        self.assertEqual(results, [(case.name, case.status, True) for case in HOST_CASES])
        self.assertEqual(self.backend.requests, [])

    async def test_the_host_problem_is_named_in_the_error_page(self) -> None:
        response = await raw_request(
            self.port, b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"
        )
        self.assertIn(b"more than one Host header (RFC 9112 3.2)", response)
