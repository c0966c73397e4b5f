"""Sessions the proxy ends so their clients reconnect: the codes each hop gets, the record."""

from __future__ import annotations

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.upstream.balancer import Lease
from clbproxy.ws.closecodes import RECONNECT, CloseAction, CloseReason, Side, proxy_closes
from tests.support.relay import RelayHarness, frame, frames, switching_protocols, upgrade_head

TEXT, CLOSE = 0x1, 0x8


def close_payload(code: int, reason: bytes) -> bytes:
    return code.to_bytes(2, "big") + reason


class ProxyClosesTableTests(unittest.TestCase):
    def test_reconnect_reasons_give_1001_to_both_hops_each_saying_why(self):
        for reason, backend_text in (
            (CloseReason.LIFETIME, b"proxy: session lifetime reached"),
            (CloseReason.REBALANCE, b"proxy: session moved to another backend"),
            (CloseReason.DRAIN, b"proxy: backend drained"),
        ):
            self.assertEqual(
                proxy_closes(reason),
                (CloseAction(1001, reason.value.encode()), CloseAction(1001, backend_text)),
            )

    def test_the_reconnect_code_is_1001(self):
        self.assertEqual(RECONNECT, 1001)

    def test_a_client_over_its_rate_gets_1008_and_the_backend_1001(self):
        self.assertEqual(
            proxy_closes(CloseReason.RATE_LIMIT, Side.CLIENT, "websocket_message_rate"),
            (
                CloseAction(1008, b"rate limit: websocket_message_rate"),
                CloseAction(1001, b"proxy: client over websocket_message_rate"),
            ),
        )

    def test_a_backend_over_its_rate_gets_1008_and_the_client_1011(self):
        self.assertEqual(
            proxy_closes(CloseReason.RATE_LIMIT, Side.BACKEND, "websocket_byte_rate"),
            (
                CloseAction(1011, b"backend over websocket_byte_rate"),
                CloseAction(1008, b"rate limit: websocket_byte_rate"),
            ),
        )


class RelieveTests(unittest.TestCase):
    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.harness = RelayHarness()
        self.addCleanup(self.harness.close)

    def open_session(self):
        client = self.harness.client(upgrade_head())
        backend = self.harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        self.assertTrue(client.take().startswith(b"HTTP/1.1 101 "))
        (session,) = self.harness.factory.sessions
        return session, client, backend

    def end(self, client, backend):
        client.receive(frame(CLOSE, close_payload(1000, b""), masked=True))
        backend.receive(frame(CLOSE, close_payload(1000, b"")))
        backend.peer_closes()
        self.harness.clock.advance(1)

    def test_relieve_closes_the_client_with_1001_and_the_reason(self):
        session, client, backend = self.open_session()
        session.relieve("rebalance")
        self.assertEqual(frames(client.take()), [(CLOSE, close_payload(1001, b"rebalance"))])
        self.assertEqual(
            frames(backend.take()),
            [(CLOSE, close_payload(1001, b"proxy: session moved to another backend"))],
        )

    def test_data_sent_before_relieve_reaches_the_client_before_its_close(self):
        session, client, backend = self.open_session()
        backend.receive(frame(TEXT, b"last words"))
        session.relieve("lifetime")
        self.assertEqual(
            frames(client.take()),
            [(TEXT, b"last words"), (CLOSE, close_payload(1001, b"lifetime"))],
        )

    def test_the_access_record_names_the_reason(self):
        session, client, backend = self.open_session()
        session.relieve("drain")
        self.end(client, backend)
        (record,) = [e for e in self.events if e.get("type") == "websocket"]
        self.assertEqual(record["close_reason"], "drain")
        self.assertEqual(record["client_close_code"], 1000)

    def test_a_session_ended_by_its_peers_has_no_close_reason(self):
        _, client, backend = self.open_session()
        self.end(client, backend)
        (record,) = [e for e in self.events if e.get("type") == "websocket"]
        self.assertIsNone(record["close_reason"])

    def test_relieve_is_counted_by_reason(self):
        session, _, _ = self.open_session()
        stats = self.harness.factory.stats = _Stats()
        session.relieve("lifetime")
        session.relieve("lifetime")  # already ending: nothing more
        self.assertEqual(stats.counted, ["websocket_closes_lifetime"])

    def test_a_session_relieved_during_its_handshake_is_closed_once_open(self):
        client = self.harness.client(upgrade_head())
        backend = self.harness.backends.accept()
        (session,) = self.harness.factory.sessions
        session.relieve("drain")
        backend.receive(switching_protocols(backend.take()))
        data = client.take()
        self.assertTrue(data.startswith(b"HTTP/1.1 101 "))
        self.assertEqual(
            frames(data[data.index(b"\r\n\r\n") + 4 :]), [(CLOSE, close_payload(1001, b"drain"))]
        )

    def test_an_unknown_reason_is_a_bug(self):
        session, _, _ = self.open_session()
        self.assertRaises(ValueError, session.relieve, "bored")


class LeaseTests(unittest.TestCase):
    def test_a_plain_lease_can_be_relieved_and_nothing_happens(self):
        Lease(None, None).relieve("rebalance")


class _Stats:
    def __init__(self):
        self.counted = []

    def increment(self, name):
        self.counted.append(name)
