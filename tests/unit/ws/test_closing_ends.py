"""How a session's end reads for its backend's health, relieved sessions included."""

from __future__ import annotations

from tests.support.relay import frame
from tests.unit.ws.test_relay import CLOSE, RelayTestCase


class SessionEndHealthTests(RelayTestCase):
    def test_sessions_that_end_with_a_closing_handshake_are_no_failures(self):
        harness = self.relay()
        sessions = [self.open_session(harness) for _ in range(5)]
        for client, backend in sessions:
            client.receive(frame(CLOSE, b"\x03\xe8", masked=True))
            backend.receive(frame(CLOSE, b"\x03\xe8"))
            backend.peer_closes()
            harness.clock.advance(0)
        self.assertTrue(harness.group.health.available(harness.group.backends[0]))

    def test_a_backend_that_drops_sessions_unasked_is_ejected(self):
        harness = self.relay()
        sessions = [self.open_session(harness) for _ in range(3)]
        for _, backend in sessions:
            backend.peer_closes()
            harness.clock.advance(0)
        self.assertFalse(harness.group.health.available(harness.group.backends[0]))


class RelieveTests(RelayTestCase):
    def test_relieved_sessions_leave_their_backend_in_service(self):
        harness = self.relay()
        sessions = [self.open_session(harness) for _ in range(4)]
        for session in list(harness.factory.sessions):
            session.relieve("rebalance")
        for client, backend in sessions:
            client.receive(frame(CLOSE, b"\x03\xe9", masked=True))
            backend.receive(frame(CLOSE, b"\x03\xe9"))
            backend.peer_closes()
            client.peer_closes()
            harness.clock.advance(0)
        self.assertTrue(harness.group.health.available(harness.group.backends[0]))
