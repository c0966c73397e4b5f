"""File-descriptor exhaustion: the proxy runs with a low RLIMIT_NOFILE and survives a flood.

On EMFILE, Twisted's TCP port releases a reserved descriptor, accepts the excess
connection and closes it at once (logged as "EMFILE recovery"), so the accept
loop neither spins nor dies; when descriptors are free again, new sessions are
served.  A client refused this way sees its connection closed without a response.
"""

from __future__ import annotations

import resource
import socket
import time

from twisted.trial import unittest

from tests.hostile.catalog import (
    TEXT,
    Closed,
    Messages,
    case,
    frame,
    proxy_fixture,
    run_case,
    upgrade_request,
    ws_case,
)

LIMIT = 64


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


ECHO = ws_case("echo", frame(TEXT, b"still here"), expect=Messages((b"still here",)))


class DescriptorExhaustionTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.fixture = proxy_fixture(preexec_fn=_low_descriptor_limit)
        self.addCleanup(self.fixture.stop)
        self.port = self.fixture.start()["proxy"]

    def flood(self, count: int) -> list[socket.socket]:
        held = []
        for _ in range(count):
            held.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
        for sock in held:
            self.addCleanup(sock.close)
        return held

    def test_excess_connections_are_closed_and_serving_resumes_when_descriptors_free_up(self):
        held = self.flood(2 * LIMIT)
        time.sleep(0.5)
        refused = case("while exhausted", upgrade_request(), expect=Closed(), timeout=5)
        run_case(self.port, refused)
        self.assertTrue(self.fixture.alive())
        for sock in held:
            sock.close()
        time.sleep(0.5)
        run_case(self.port, ECHO)
        self.assertTrue(self.fixture.alive())
        log = self.fixture.read_log()
        self.assertIn("EMFILE recovery", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)

    def test_sessions_open_before_the_flood_keep_working(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(upgrade_request())
            self.assertIn(b" 101 ", sock.recv(4096))
            self.flood(2 * LIMIT)
            time.sleep(0.3)
            sock.sendall(frame(TEXT, b"during"))
            reply = sock.recv(4096)
        self.assertEqual(reply, b"\x81\x06during")
        self.assertTrue(self.fixture.alive())
