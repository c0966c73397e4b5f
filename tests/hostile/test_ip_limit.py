"""``max_connections_per_ip`` against idle connections (issue 23, F6).

One address that opens many connections and sends nothing must not hold the
process's connections: a connection past its address's limit is closed, without
an answer, as soon as its address is known (at accept; under the PROXY protocol,
right after the PROXY header), and it never counts against the descriptor budget.

The proxy runs with ``RLIMIT_NOFILE`` 64, a descriptor budget of 16 connections
(see :mod:`clbproxy.net.descriptors`), and a per-address limit of 2: one address
opening 10 times its limit (20 connections) would hold the whole budget if the
extras stayed open, and every other client would wait in the listen backlog
until ``header_timeout`` (60 s) freed them.  Other addresses are 127.0.0.2 (a
loopback address too) or, under the PROXY protocol, another header source.  The
bound the issue sets: another address is served within 1 s.
"""

from __future__ import annotations

import resource
import socket
import time

from twisted.trial import unittest

from clbproxy.listener.limits import PROXY_HEADER_TIMEOUT
from tests.hostile.catalog import LOG_ALARMS, proxy_fixture

DESCRIPTOR_LIMIT = 64
PER_IP = 2
FLOOD = 10 * PER_IP
#: The issue's bound for serving another address while one floods.
SERVED_WITHIN = 1.0
GET = b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


def proxy_v1(source: str) -> bytes:
    return f"PROXY TCP4 {source} 127.0.0.1 5555 80\r\n".encode()


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What ``sock`` received before the proxy closed it within ``seconds``, or None
    while it is still open."""
    deadline = time.monotonic() + seconds
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def read_response(sock: socket.socket) -> bytes:
    """The whole response of a ``Connection: close`` request."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class _IPLimitTestCase(unittest.SynchronousTestCase):
    bind = "tcp:0:interface=127.0.0.1"

    def setUp(self) -> None:
        self.fixture = proxy_fixture(
            {"bind": self.bind, "max_connections_per_ip": PER_IP},
            preexec_fn=_low_descriptor_limit,
        )
        self.addCleanup(self.fixture.stop)
        self.port = self.fixture.start()["proxy"]

    def connect(self, source: str = "127.0.0.1", data: bytes = b"") -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.port))
        if data:
            sock.sendall(data)
        return sock

    def assert_served_within(self, source: str, prefix: bytes, seconds: float) -> None:
        started = time.monotonic()
        sock = self.connect(source, prefix + GET)
        sock.settimeout(seconds)
        response = read_response(sock)
        elapsed = time.monotonic() - started
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:200])
        self.assertLess(elapsed, seconds)

    def assert_log_clean(self) -> str:
        log = self.fixture.read_log()
        for alarm in (*LOG_ALARMS, "EMFILE"):
            self.assertNotIn(alarm, log, f"the proxy logged {alarm!r}:\n{log[-3000:]}")
        return log


class PerAddressLimitTests(_IPLimitTestCase):
    def test_connections_past_the_limit_are_closed_at_accept_without_an_answer(self) -> None:
        flood = [self.connect() for _ in range(FLOOD)]
        answers = [closed_within(sock, SERVED_WITHIN) for sock in flood]
        self.assertEqual(answers.count(None), PER_IP, "connections left open")
        self.assertEqual(answers.count(b""), FLOOD - PER_IP, answers)
        self.assertTrue(self.fixture.alive())

    def test_another_address_is_served_within_a_second_while_one_holds_ten_times_its_limit(
        self,
    ) -> None:
        flood = [self.connect() for _ in range(FLOOD)]
        time.sleep(0.3)
        self.assert_served_within("127.0.0.2", b"", SERVED_WITHIN)
        self.assertEqual(sum(closed_within(sock, 0.01) is None for sock in flood), PER_IP)
        self.assert_log_clean()

    def test_a_request_past_the_limit_gets_no_answer(self) -> None:
        held = [self.connect() for _ in range(PER_IP)]
        refused = self.connect(data=GET)
        self.assertEqual(closed_within(refused, SERVED_WITHIN), b"")
        self.assertEqual([closed_within(sock, 0.01) for sock in held], [None] * PER_IP)

    def test_the_address_is_served_again_once_its_connections_end(self) -> None:
        held = [self.connect() for _ in range(PER_IP)]
        self.assertEqual(closed_within(self.connect(), SERVED_WITHIN), b"")
        for sock in held:
            sock.close()
        time.sleep(0.2)
        self.assert_served_within("127.0.0.1", b"", SERVED_WITHIN)

    def test_a_flood_of_closes_is_logged_in_one_line_not_one_per_connection(self) -> None:
        flood = [self.connect() for _ in range(FLOOD)]
        for sock in flood:
            closed_within(sock, SERVED_WITHIN)
        log = self.assert_log_clean()
        lines = [line for line in log.splitlines() if "max_connections_per_ip" in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("127.0.0.1", lines[0])


class ProxyProtocolPerAddressLimitTests(_IPLimitTestCase):
    """Behind an L4 balancer every connection comes from its address: the PROXY header's
    source is the one counted, and the extras close right after the header."""

    bind = "haproxy:tcp:0:interface=127.0.0.1"

    def test_a_header_naming_an_over_limit_address_closes_the_connection_right_after_it(
        self,
    ) -> None:
        held = [self.connect(data=proxy_v1("203.0.113.7")) for _ in range(PER_IP)]
        header_only = self.connect(data=proxy_v1("203.0.113.7"))
        with_request = self.connect(data=proxy_v1("203.0.113.7") + GET)
        self.assertEqual(closed_within(header_only, SERVED_WITHIN), b"")
        self.assertEqual(closed_within(with_request, SERVED_WITHIN), b"")
        self.assertEqual([closed_within(sock, 0.01) for sock in held], [None] * PER_IP)

    def test_another_source_is_served_within_a_second_while_one_holds_ten_times_its_limit(
        self,
    ) -> None:
        flood = [self.connect(data=proxy_v1("203.0.113.7")) for _ in range(FLOOD)]
        time.sleep(0.3)
        self.assert_served_within("127.0.0.1", proxy_v1("203.0.113.8"), SERVED_WITHIN)
        self.assertEqual(sum(closed_within(sock, 0.01) is None for sock in flood), PER_IP)
        self.assert_log_clean()

    def test_a_connection_without_a_complete_header_is_closed_after_the_header_timeout(
        self,
    ) -> None:
        started = time.monotonic()
        silent = self.connect()
        partial = self.connect(data=b"PROXY TCP4 203.0.113.7 ")
        margin = 3.0
        for sock in (silent, partial):
            remaining = PROXY_HEADER_TIMEOUT + margin - (time.monotonic() - started)
            self.assertEqual(closed_within(sock, remaining), b"")
        self.assertGreater(time.monotonic() - started, PROXY_HEADER_TIMEOUT - 0.5)
        self.assertIn("no PROXY header", self.assert_log_clean())
