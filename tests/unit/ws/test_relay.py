"""The relay at its seams: the client's request head in, the bytes each side gets out.

Only bytes cross these tests' boundary (the client's upgrade and frames, the
backend's answer and frames), so they describe the relay's behaviour whatever
engine carries the session between the two sockets.
"""

from __future__ import annotations

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import BackendConfig
from tests.support.relay import (
    RelayHarness,
    frame,
    frames,
    switching_protocols,
    upgrade_head,
)

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
A = BackendConfig("10.0.0.1", 8001)
B = BackendConfig("10.0.0.2", 8002)


class RelayTestCase(unittest.TestCase):
    def relay(self, **options) -> RelayHarness:
        harness = RelayHarness(**options)
        self.addCleanup(harness.close)
        return harness

    def open_session(self, harness: RelayHarness, head: bytes = upgrade_head()):
        """A client and a backend connection with the session open between them."""
        client = harness.client(head)
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        self.assertTrue(client.take().startswith(b"HTTP/1.1 101 "))
        return client, backend


class HandshakeStageTests(RelayTestCase):
    def test_the_backend_gets_the_clients_request_with_forwarding_headers(self):
        harness = self.relay()
        harness.client(upgrade_head(b"/chat?room=1", extra=b"X-Team: blue\r\n"))
        request = harness.backends.accept().value()
        head = request.lower().split(b"\r\n")
        self.assertEqual(head[0], b"get /chat?room=1 http/1.1")
        self.assertIn(b"host: public.test:80", head)
        self.assertIn(b"x-team: blue", head)
        self.assertIn(b"x-forwarded-for: 192.0.2.7", head)
        self.assertIn(b"x-forwarded-proto: http", head)
        self.assertIn(b"x-forwarded-port: 8080", head)
        # The backend's hop has its own key.
        self.assertNotIn(b"sec-websocket-key: dghlihnhbxbszsbub25jzq==", head)

    def test_the_client_is_answered_only_once_the_backend_accepts(self):
        harness = self.relay()
        client = harness.client(upgrade_head())
        backend = harness.backends.accept()
        self.assertEqual(client.value(), b"")
        backend.receive(switching_protocols(backend.take(), b"X-Served-By: a\r\n"))
        answer = client.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer)
        self.assertIn(b"X-Served-By: a\r\n", answer)

    def test_a_backends_refusal_reaches_the_client_with_its_headers_and_body(self):
        harness = self.relay()
        client = harness.client(upgrade_head())
        backend = harness.backends.accept()
        backend.receive(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nX-Why: token\r\n\r\nnope")
        answer = client.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer)
        self.assertIn(b"X-Why: token\r\n", answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nnope"), answer)

    def test_an_unreachable_backend_is_retried_on_another_then_502(self):
        harness = self.relay(backends=(A, B))
        client = harness.client(upgrade_head())
        harness.backends.refuse()
        self.assertEqual(client.value(), b"")
        harness.backends.refuse()
        self.assertEqual(sorted(harness.backends.attempts), [A.address, B.address])
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "), client.value())

    def test_a_group_with_no_backend_in_service_answers_503(self):
        harness = self.relay()
        harness.group.set_state(A.address, "maint")
        client = harness.client(upgrade_head())
        self.assertEqual(harness.backends.attempts, [])
        self.assertTrue(client.value().startswith(b"HTTP/1.1 503 "), client.value())

    def test_a_backend_that_does_not_answer_in_time_gives_504(self):
        harness = self.relay(group_options={"response_timeout": 5.0})
        client = harness.client(upgrade_head())
        harness.backends.accept()
        harness.clock.advance(4)
        self.assertEqual(client.value(), b"")
        for _ in range(10):
            harness.clock.advance(1)
        self.assertTrue(client.value().startswith(b"HTTP/1.1 504 "), client.value())

    def test_a_disallowed_origin_is_refused_before_any_backend_is_chosen(self):
        harness = self.relay(allowed_origins=("https://app.test",))
        client = harness.client(upgrade_head(extra=b"Origin: https://evil.test\r\n"))
        self.assertEqual(harness.backends.attempts, [])
        self.assertTrue(client.value().startswith(b"HTTP/1.1 403 "), client.value())


class OpenSessionTests(RelayTestCase):
    def test_messages_pass_both_ways(self):
        harness = self.relay()
        client, backend = self.open_session(harness)
        client.receive(frame(TEXT, b"hello", masked=True))
        self.assertEqual(frames(backend.take()), [(TEXT, b"hello")])
        backend.receive(frame(TEXT, b"welcome"))
        self.assertEqual(frames(client.take()), [(TEXT, b"welcome")])

    def test_a_ping_is_answered_on_its_own_hop(self):
        harness = self.relay()
        client, backend = self.open_session(harness)
        client.receive(frame(PING, b"p1", masked=True))
        self.assertEqual(frames(client.take()), [(PONG, b"p1")])
        self.assertEqual(backend.take(), b"")

    def test_an_idle_session_is_closed_with_1001_on_both_hops(self):
        harness = self.relay(websocket_idle_timeout=30.0, websocket_ping_interval=0)
        client, backend = self.open_session(harness)
        harness.clock.advance(31)
        self.assertEqual(frames(client.take()), [(CLOSE, b"\x03\xe9idle timeout")])
        self.assertEqual(frames(backend.take()), [(CLOSE, b"\x03\xe9idle timeout")])


class ClosingTests(RelayTestCase):
    def test_the_clients_close_code_reaches_the_backend(self):
        harness = self.relay()
        client, backend = self.open_session(harness)
        client.receive(frame(CLOSE, b"\x0f\xa0bye", masked=True))
        self.assertEqual(frames(backend.take()), [(CLOSE, b"\x0f\xa0bye")])

    def test_a_session_that_ends_writes_one_access_record(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        harness = self.relay()
        client, backend = self.open_session(harness)
        client.receive(frame(TEXT, b"one", masked=True))
        client.receive(frame(CLOSE, b"\x03\xe8", masked=True))
        backend.receive(frame(CLOSE, b"\x03\xe8"))
        backend.peer_closes()
        harness.clock.advance(0)
        self.assertTrue(client.lost)
        records = [e for e in events if e.get("type") == "websocket"]
        self.assertEqual(len(records), 1)
        record = records[0]
        self.assertEqual(
            (record["status"], record["client"], record["backend"], record["messages_in"]),
            (101, "192.0.2.7", A.address, 1),
        )
        self.assertEqual(harness.factory.sessions, set())
