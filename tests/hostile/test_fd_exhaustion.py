"""File-descriptor exhaustion: the proxy runs with a low RLIMIT_NOFILE and survives a flood.

With ``RLIMIT_NOFILE`` 64 the descriptor budget is 16 connections ((64 - 32
reserved) / 2, see :mod:`clbproxy.net.descriptors`).  A flood of idle connections is
accepted up to the budget, then accepting pauses: the next clients wait in the
kernel's listen backlog, unanswered but not closed, and are served as soon as
connections end, without reconnecting.  The process never gets as far as an
EMFILE (Twisted's recovery, which closes the excess connection, stays the last
resort), and sessions already open keep working throughout.
"""

from __future__ import annotations

import resource
import socket
import time

from twisted.trial import unittest

from tests.hostile.catalog import LOG_ALARMS, TEXT, frame, proxy_fixture
from tests.support.handshakes import upgrade_request

LIMIT = 64
#: More than the budget, and few enough that the rest fits the listen backlog (50).
FLOOD = 40
BUDGET_LINE = "descriptor budget of 16 connections reached (RLIMIT_NOFILE 64): accepting paused"


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def _read_head(sock: socket.socket) -> bytes:
    """The response head (up to the blank line), read with the socket's timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data


def _echo(sock: socket.socket, text: bytes) -> bytes:
    sock.sendall(frame(TEXT, text))
    return sock.recv(4096)


class DescriptorExhaustionTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.fixture = proxy_fixture(preexec_fn=_low_descriptor_limit)
        self.addCleanup(self.fixture.stop)
        self.port = self.fixture.start()["proxy"]

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(sock.close)
        return sock

    def flood(self, count: int = FLOOD) -> list[socket.socket]:
        held = [self.connect() for _ in range(count)]
        time.sleep(0.3)
        return held

    def assert_log_clean(self) -> str:
        log = self.fixture.read_log()
        for alarm in (*LOG_ALARMS, "EMFILE"):
            self.assertNotIn(alarm, log, f"the proxy logged {alarm!r}:\n{log[-3000:]}")
        return log

    def test_past_the_budget_a_client_waits_unanswered_and_is_served_when_the_flood_ends(self):
        held = self.flood()
        waiting = self.connect()
        waiting.sendall(upgrade_request())
        waiting.settimeout(1.0)
        # Neither an answer nor a close: the connection waits in the listen backlog.
        with self.assertRaises(socket.timeout):
            waiting.recv(4096)
        self.assertTrue(self.fixture.alive())
        self.assertIn(BUDGET_LINE, self.fixture.read_log())
        for sock in held:
            sock.close()
        waiting.settimeout(5)
        self.assertIn(b" 101 ", _read_head(waiting))
        self.assertEqual(_echo(waiting, b"served late"), b"\x81\x0bserved late")
        self.assertTrue(self.fixture.alive())
        self.assert_log_clean()

    def test_sessions_open_before_the_flood_keep_working(self):
        session = self.connect()
        session.sendall(upgrade_request())
        self.assertIn(b" 101 ", _read_head(session))
        held = self.flood()
        self.assertEqual(_echo(session, b"during"), b"\x81\x06during")
        self.assertIn(BUDGET_LINE, self.fixture.read_log())
        for sock in held:
            sock.close()
        self.assertEqual(_echo(session, b"after"), b"\x81\x05after")
        self.assertTrue(self.fixture.alive())
        self.assert_log_clean()
