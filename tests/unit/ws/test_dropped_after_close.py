"""Data that arrives after a hop stopped taking it: delivered before the Close, or counted.

Every data frame a hop received before the proxy's Close to the other hop is
passed on before that Close; frames after it are not passed on, and the
session's log line counts them (complete messages and bytes, per direction).
"""

from __future__ import annotations

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clbproxy.ws.fastpath import Hop
from tests.support.relay import RelayHarness, frame, frames, switching_protocols, upgrade_head
from tests.unit.ws.test_fastpath import masked, plain, session_hops, unmask

TEXT, BINARY, CONT, CLOSE = 0x1, 0x2, 0x0, 0x8


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def long_frame(payload: bytes, fin: bool = True, opcode: int = BINARY) -> bytes:
    """An unmasked (backend) frame with a 126..65535-byte payload."""
    return bytes(((0x80 if fin else 0) | opcode, 126)) + len(payload).to_bytes(2, "big") + payload


class FastPathTests(unittest.TestCase):
    """The fast path's hops (:class:`clbproxy.ws.fastpath.Hop`)."""

    def test_a_session_that_drops_nothing_counts_nothing(self):
        _, front, backend = session_hops()
        front.dataReceived(masked(TEXT, b"hello"))
        backend.dataReceived(plain(TEXT, b"hi"))
        self.assertEqual((front.dropped_after_close, backend.dropped_after_close), ((0, 0), (0, 0)))

    def test_frames_after_the_proxys_close_are_not_passed_on_and_are_counted(self):
        _, front, backend = session_hops()
        front.dataReceived(masked(TEXT, b"before"))
        backend.sendCloseFrame(1001, b"bye")
        late = masked(TEXT, b"after one") + masked(BINARY, b"after two")
        front.dataReceived(late)
        sent = backend.transport.value()
        before = masked(TEXT, b"before")
        self.assertEqual(sent[: len(before)], before)
        self.assertEqual(unmask(sent[len(before) :]), (CLOSE, close_payload(1001, b"bye")))
        self.assertEqual(front.dropped_after_close, (2, len(late)))

    def test_frames_in_separate_reads_after_the_close_add_up(self):
        _, front, backend = session_hops()
        backend.sendCloseFrame(1001, b"bye")
        front.dataReceived(masked(TEXT, b"one"))
        front.dataReceived(masked(TEXT, b"two") + masked(TEXT, b"thr", fin=False))
        self.assertEqual(front.dropped_after_close, (2, 3 * 9))

    def test_a_frame_being_passed_on_is_completed_before_the_close_then_the_rest_is_dropped(self):
        session, front, backend = session_hops()
        first = long_frame(b"a" * 200, fin=False)
        last = long_frame(b"b" * 300, opcode=CONT)
        backend.dataReceived(first[:50])  # streamed: the frame is longer than ``hold``
        front.sendCloseFrame(1001, b"bye")
        backend.dataReceived(first[50:])
        backend.dataReceived(last)
        self.assertEqual(
            frames(front.transport.value()),
            [(BINARY, b"a" * 200), (CLOSE, close_payload(1001, b"bye"))],
        )
        # The message's last frame never left: the message is dropped, with that frame's bytes.
        self.assertEqual(backend.dropped_after_close, (1, len(last)))

    def test_a_message_completed_before_the_delayed_close_left_is_not_counted(self):
        session, front, backend = session_hops()
        message = long_frame(b"c" * 200)
        backend.dataReceived(message[:10])
        front.sendCloseFrame(1001, b"bye")
        backend.dataReceived(message[10:])
        self.assertEqual(
            frames(front.transport.value()),
            [(BINARY, b"c" * 200), (CLOSE, close_payload(1001, b"bye"))],
        )
        self.assertEqual(backend.dropped_after_close, (0, 0))

    def test_frames_after_the_peer_began_its_own_close_are_counted(self):
        _, front, backend = session_hops()
        backend.dataReceived(plain(CLOSE, close_payload(1000)))
        front.dataReceived(masked(TEXT, b"too late"))
        self.assertEqual(frames(backend.transport.value()), [(CLOSE, close_payload(1000))])
        self.assertEqual(front.dropped_after_close, (1, len(masked(TEXT, b"too late"))))

    def test_frames_after_the_other_hops_connection_is_gone_are_counted(self):
        _, front, backend = session_hops()
        backend.connectionLost(None)
        front.dataReceived(masked(TEXT, b"nobody there"))
        self.assertEqual(front.dropped_after_close, (1, len(masked(TEXT, b"nobody there"))))


class SessionLogTests(unittest.TestCase):
    """The session's log line, through the relay (fast path and Autobahn's per_hop path)."""

    DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def open_session(self, head: bytes = upgrade_head(), **options):
        harness = RelayHarness(**options)
        self.addCleanup(harness.close)
        client = harness.client(head)
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        self.assertTrue(client.take().startswith(b"HTTP/1.1 101 "))
        (session,) = harness.factory.sessions
        return harness, session, client, backend

    def end(self, harness, client, backend):
        client.receive(frame(CLOSE, close_payload(1000), masked=True))
        backend.receive(frame(CLOSE, close_payload(1000)))
        backend.peer_closes()
        harness.clock.advance(1)
        (line,) = [e for e in self.events if "closed after" in e.get("log_format", "")]
        return line

    def text(self, event) -> str:
        return formatEvent(event)

    def test_a_relieved_session_delivers_what_came_before_and_logs_what_came_after(self):
        harness, session, client, backend = self.open_session()
        self.assertIsInstance(session.front, Hop)
        backend.receive(frame(TEXT, b"push 1") + frame(TEXT, b"push 2"))
        session.relieve("rebalance")
        late = frame(TEXT, b"push 3") + frame(TEXT, b"push 4") + frame(TEXT, b"push 5")
        backend.receive(late)
        self.assertEqual(
            frames(client.take()),
            [(TEXT, b"push 1"), (TEXT, b"push 2"), (CLOSE, close_payload(1001, b"rebalance"))],
        )
        line = self.end(harness, client, backend)
        self.assertEqual((line["down_dropped"], line["down_dropped_bytes"]), (3, len(late)))
        self.assertEqual((line["up_dropped"], line["up_dropped_bytes"]), (0, 0))
        self.assertTrue(
            self.text(line).endswith(
                f"; dropped after close: backend->client 3 messages ({len(late)} bytes)"
                " request_id=-"
            ),
            self.text(line),
        )

    def test_both_directions_are_named_when_both_dropped(self):
        harness, session, client, backend = self.open_session()
        session.relieve("lifetime")
        backend.receive(frame(TEXT, b"late"))
        client.receive(frame(TEXT, b"late too", masked=True))
        line = self.end(harness, client, backend)
        self.assertIn(
            "; dropped after close: client->backend 1 message (14 bytes), "
            "backend->client 1 message (6 bytes)",
            self.text(line),
        )

    def test_a_session_that_dropped_nothing_says_nothing_of_it(self):
        harness, session, client, backend = self.open_session()
        backend.receive(frame(TEXT, b"push 1"))
        session.relieve("drain")
        line = self.end(harness, client, backend)
        self.assertNotIn("dropped", self.text(line))
        self.assertEqual((line["up_dropped"], line["down_dropped"]), (0, 0))

    def test_on_the_per_hop_path_messages_after_the_close_are_counted_with_their_payload(self):
        harness, session, client, backend = self.open_session(
            upgrade_head(extra=self.DEFLATE), websocket_deflate="per_hop"
        )
        self.assertNotIsInstance(session.front, Hop)  # on Autobahn
        client.receive(frame(TEXT, b"before", masked=True))
        session.relieve("rebalance")
        # Uncompressed messages (RSV1 clear) are allowed with deflate agreed.
        client.receive(frame(TEXT, b"after", masked=True) + frame(BINARY, b"again", masked=True))
        self.assertEqual(
            [(op, payload) for op, payload in frames(backend.take())],
            [
                (TEXT, b"before"),
                (CLOSE, close_payload(1001, b"proxy: session moved to another backend")),
            ],
        )
        line = self.end(harness, client, backend)
        self.assertEqual((line["up_dropped"], line["up_dropped_bytes"]), (2, 10))
        self.assertIn(
            "; dropped after close: client->backend 2 messages (10 bytes)", self.text(line)
        )
