"""WebSocket over HTTP/2 (RFC 8441): an extended CONNECT relayed and closed as an upgrade is."""

from __future__ import annotations

import re

from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import RuleConfig
from clbproxy.observability.accesslog import is_access_event
from tests.support.h2websocket import H2WebSocketHarness, connect_fields
from tests.support.relay import frame, frames

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def header(head: bytes, name: bytes):
    match = re.search(rb"(?im)^" + name + rb":\s*(.*?)\s*$", head)
    return match.group(1) if match else None


class H2WebSocketTestCase(unittest.TestCase):
    def harness(self, **options) -> H2WebSocketHarness:
        harness = H2WebSocketHarness(**options)
        self.addCleanup(harness.close)
        return harness


class SettingTests(H2WebSocketTestCase):
    def test_extended_connect_is_advertised_when_on(self) -> None:
        settings = self.harness().client.h2.remote_settings
        self.assertEqual(settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL), 1)

    def test_extended_connect_is_not_advertised_when_off(self) -> None:
        settings = self.harness(connect_protocol=False).client.h2.remote_settings
        self.assertEqual(settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL, 0), 0)

    def test_protocol_when_not_advertised_resets_the_stream(self) -> None:
        harness = self.harness(connect_protocol=False)
        stream_id = harness.open()
        self.assertEqual(harness.client.answer(stream_id).reset, ErrorCodes.PROTOCOL_ERROR)
        self.assertEqual(harness.listener.backend_attempts(), [])

    def test_connect_without_protocol_is_501(self) -> None:
        # Unchecked: h2 4.1's client refuses a CONNECT without :path (4.4 allows it).
        harness = self.harness(checked=False)
        h2 = harness.client.h2
        stream_id = h2.get_next_available_stream_id()
        h2.send_headers(
            stream_id, [(b":method", b"CONNECT"), (b":authority", b"a.example.com:443")]
        )
        harness.pump()
        self.assertEqual(harness.client.answer(stream_id).status, 501)

    def test_another_protocol_is_501(self) -> None:
        harness = self.harness()
        stream_id = harness.open(protocol=b"connect-udp")
        self.assertEqual(harness.client.answer(stream_id).status, 501)
        self.assertEqual(harness.listener.backend_attempts(), [])

    def test_protocol_on_a_get_resets_the_stream(self) -> None:
        harness = self.harness(checked=False)
        h2 = harness.client.h2
        stream_id = h2.get_next_available_stream_id()
        fields = [(b":method", b"GET"), *connect_fields()[1:]]
        h2.send_headers(stream_id, fields, end_stream=True)
        harness.pump()
        self.assertEqual(harness.client.answer(stream_id).reset, ErrorCodes.PROTOCOL_ERROR)


class HandshakeTests(H2WebSocketTestCase):
    def test_the_backend_gets_an_http11_upgrade_with_a_key_the_proxy_made(self) -> None:
        harness = self.harness()
        harness.open(headers=[(b"sec-websocket-protocol", b"chat, superchat"), (b"x-thing", b"1")])
        head = harness.backend().value()
        request_line, *lines = head.split(b"\r\n")
        self.assertEqual(request_line, b"GET /chat HTTP/1.1")
        self.assertRegex(header(head, b"sec-websocket-key"), rb"\A[A-Za-z0-9+/]{22}==\Z")
        self.assertEqual(
            (
                header(head, b"host"),
                header(head, b"upgrade"),
                header(head, b"connection"),
                header(head, b"sec-websocket-version"),
                header(head, b"sec-websocket-protocol"),
                header(head, b"x-thing"),
                header(head, b"x-forwarded-for"),
                header(head, b"x-forwarded-proto"),
            ),
            (
                b"a.example.com",
                b"websocket",
                b"Upgrade",
                b"13",
                b"chat, superchat",
                b"1",
                b"192.0.2.7",
                b"http",
            ),
        )
        self.assertNotIn(b"\r\n:", head)

    def test_each_session_gets_its_own_key(self) -> None:
        harness = self.harness()
        harness.open()
        first = header(harness.backend().value(), b"sec-websocket-key")
        harness.open()
        second = header(harness.backend().value(), b"sec-websocket-key")
        self.assertNotEqual(first, second)

    def test_the_backends_101_is_a_200_on_the_stream(self) -> None:
        harness = self.harness()
        stream_id = harness.open(headers=[(b"sec-websocket-protocol", b"chat")])
        backend = harness.backend()
        harness.accept(backend, b"Sec-WebSocket-Protocol: chat\r\nX-Backend: b1\r\n")
        answer = harness.client.answer(stream_id)
        self.assertEqual(
            (
                answer.status,
                answer.headers.get(b"sec-websocket-protocol"),
                answer.headers.get(b"x-backend"),
                answer.ended,
                answer.reset,
            ),
            (200, b"chat", b"b1", False, None),
        )
        for name in (b"sec-websocket-accept", b"upgrade", b"connection", b"content-length"):
            self.assertNotIn(name, answer.headers)

    def test_a_wrong_accept_is_502(self) -> None:
        harness = self.harness()
        stream_id = harness.open()
        backend = harness.backend()
        backend.take()
        backend.receive(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
        )
        harness.pump()
        answer = harness.client.answer(stream_id)
        self.assertEqual((answer.status, answer.ended), (502, True))

    def test_a_backend_refusal_is_passed_back_as_its_status(self) -> None:
        harness = self.harness()
        stream_id = harness.open()
        backend = harness.backend()
        backend.take()
        backend.receive(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nX-Why: no\r\n\r\nnope")
        harness.pump()
        answer = harness.client.answer(stream_id)
        self.assertEqual(
            (answer.status, answer.headers.get(b"x-why"), answer.body, answer.ended),
            (403, b"no", b"nope", True),
        )

    def test_no_rule_is_404(self) -> None:
        rule = RuleConfig(target_group="pool", host="a.example.com", path="/other")
        harness = self.harness(rules=(rule,))
        stream_id = harness.open()
        self.assertEqual(harness.client.answer(stream_id).status, 404)

    def test_an_origin_not_allowed_is_403(self) -> None:
        rule = RuleConfig(
            target_group="pool", host="a.example.com", allowed_origins=("https://a.example.com",)
        )
        harness = self.harness(rules=(rule,))
        stream_id = harness.open(headers=[(b"origin", b"https://evil.example")])
        self.assertEqual(harness.client.answer(stream_id).status, 403)
        self.assertEqual(harness.listener.backend_attempts(), [])

    def test_a_missing_version_is_400(self) -> None:
        harness = self.harness()
        h2 = harness.client.h2
        stream_id = h2.get_next_available_stream_id()
        h2.send_headers(stream_id, connect_fields())
        harness.pump()
        self.assertEqual(harness.client.answer(stream_id).status, 400)


class RelayTests(H2WebSocketTestCase):
    def test_messages_pass_both_ways(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, frame(TEXT, b"hello", masked=True))
        self.assertEqual(frames(backend.take()), [(TEXT, b"hello")])
        backend.receive(frame(BINARY, b"\x00\x01"))
        harness.pump()
        self.assertEqual(frames(harness.received(stream_id)), [(BINARY, b"\x00\x01")])

    def test_a_ping_from_the_client_is_answered_on_its_stream(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, frame(PING, b"p", masked=True))
        self.assertEqual(frames(harness.received(stream_id)), [(PONG, b"p")])
        self.assertEqual(backend.take(), b"")

    def test_an_unmasked_client_frame_is_closed_with_1002(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, frame(TEXT, b"bad"))
        sent = frames(harness.received(stream_id))
        self.assertEqual(sent[0][0], CLOSE)
        self.assertEqual(int.from_bytes(sent[0][1][:2], "big"), 1002)
        self.assertTrue(harness.client.answer(stream_id).ended)

    def test_the_close_handshake_ends_the_stream(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, frame(CLOSE, b"\x03\xe8bye", masked=True))
        self.assertEqual(frames(harness.received(stream_id)), [(CLOSE, b"\x03\xe8")])
        answer = harness.client.answer(stream_id)
        self.assertEqual((answer.ended, answer.reset), (True, ErrorCodes.NO_ERROR))
        self.assertEqual(frames(backend.take()), [(CLOSE, b"\x03\xe8bye")])

    def test_the_clients_end_stream_after_its_close_leaves_no_reset(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, frame(CLOSE, b"\x03\xe8", masked=True), end=True)
        answer = harness.client.answer(stream_id)
        self.assertEqual((answer.ended, answer.reset), (True, None))
        self.assertIn(stream_id, harness.client.answers)
        self.assertEqual(harness.server.streams, {})

    def test_a_backend_close_reaches_the_client(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        backend.receive(frame(CLOSE, b"\x0f\xa0later"))
        harness.pump()
        self.assertEqual(frames(harness.received(stream_id)), [(CLOSE, b"\x0f\xa0later")])

    def test_a_reset_from_the_client_closes_the_backend_hop(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        harness.pump()
        sent = frames(backend.take())
        self.assertEqual(sent, [(CLOSE, b"\x03\xe9client went away")])

    def test_a_client_end_stream_without_close_is_the_client_going_away(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, b"", end=True)
        self.assertEqual(frames(backend.take()), [(CLOSE, b"\x03\xe9client went away")])
        self.assertTrue(harness.client.answer(stream_id).ended)

    def test_a_connection_error_tells_the_backend_1011(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        # WINDOW_UPDATE of 0 on the connection: a connection error (RFC 9113 6.9).
        harness.client.send_raw(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
        self.assertIsNotNone(harness.client.goaway)
        harness.server.connectionLost(None)
        harness.pump()
        sent = frames(backend.take())
        self.assertEqual(sent[0][0], CLOSE)
        self.assertEqual(int.from_bytes(sent[0][1][:2], "big"), 1011)

    def test_the_access_log_names_the_session_http2(self) -> None:
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, frame(CLOSE, b"\x03\xe8", masked=True), end=True)
        backend.receive(frame(CLOSE, b"\x03\xe8"))
        backend.peer_closes()
        harness.pump()
        (record,) = [e for e in events if is_access_event(e)]
        self.assertEqual(
            (record["type"], record["protocol"], record["status"], record["client_close_code"]),
            ("websocket", "HTTP/2.0", 101, 1000),
        )

    def test_two_websockets_and_a_get_share_the_connection(self) -> None:
        harness = self.harness()
        first, backend1, _ = harness.open_session(b"/one")
        second, backend2, _ = harness.open_session(b"/two")
        get = harness.client.request(b"GET", b"/page")
        harness.pump()
        http_backend = harness.backend()
        self.assertTrue(http_backend.value().startswith(b"GET /page HTTP/1.1"))
        http_backend.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        harness.pump()
        harness.send(first, frame(TEXT, b"1", masked=True))
        harness.send(second, frame(TEXT, b"2", masked=True))
        self.assertEqual(frames(backend1.take()), [(TEXT, b"1")])
        self.assertEqual(frames(backend2.take()), [(TEXT, b"2")])
        answer = harness.client.answer(get)
        self.assertEqual((answer.status, answer.body, answer.ended), (200, b"ok", True))


class FlowControlTests(H2WebSocketTestCase):
    def test_client_data_is_acknowledged_only_once_the_backend_takes_it(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        h2 = harness.client.h2
        window = h2.local_flow_control_window(stream_id)
        backend.producer.pauseProducing()  # the backend's socket buffer is full
        payload = b"x" * 40000
        # One masked binary frame (zero key), over half the stream's window.
        message = b"\x82\xfe" + len(payload).to_bytes(2, "big") + b"\x00" * 4 + payload
        harness.send(stream_id, message)
        self.assertEqual(
            (backend.take(), h2.local_flow_control_window(stream_id)),
            (b"", window - len(message)),
        )
        backend.producer.resumeProducing()
        harness.pump()
        self.assertEqual(frames(backend.take()), [(BINARY, payload)])
        # Given back (h2 sends WINDOW_UPDATE once half a window is consumed).
        self.assertGreater(h2.local_flow_control_window(stream_id), window - len(message))

    def test_a_shut_client_window_pauses_the_backend(self) -> None:
        harness = self.harness(read=False)
        stream_id, backend, _ = harness.open_session()
        chunk = frame(BINARY, b"y" * 100)
        for _ in range(700):  # 70 KB: past the stream's 64 KiB window
            backend.receive(chunk)
        harness.pump()
        self.assertEqual(backend.producerState, "paused")
        h2 = harness.client.h2
        h2.acknowledge_received_data(65535, stream_id)
        harness.pump()
        self.assertEqual(backend.producerState, "producing")
        self.assertEqual(len(harness.received(stream_id)), 700 * len(chunk))


class SessionLifeTests(H2WebSocketTestCase):
    def sessions(self, harness) -> list:
        return list(harness.listener.service.relay.sessions)

    def test_a_drain_closes_the_stream_with_1001(self) -> None:
        harness = self.harness()
        stream_id, backend, _ = harness.open_session()
        (session,) = self.sessions(harness)
        session.shut_down()
        harness.pump()
        self.assertEqual(
            frames(harness.received(stream_id)), [(CLOSE, b"\x03\xe9proxy shutting down")]
        )
        self.assertEqual(frames(backend.take())[0][0], CLOSE)

    def test_a_handshake_under_way_at_a_drain_is_503(self) -> None:
        harness = self.harness()
        stream_id = harness.open()
        harness.backend()  # connected, the upgrade not answered yet
        (session,) = self.sessions(harness)
        session.shut_down()
        harness.pump()
        answer = harness.client.answer(stream_id)
        self.assertEqual((answer.status, answer.ended), (503, True))

    def test_an_idle_session_is_closed_on_its_stream(self) -> None:
        harness = self.harness(websocket_idle_timeout=30)
        stream_id, backend, _ = harness.open_session()
        harness.clock.advance(31)
        harness.pump()
        sent = frames(harness.received(stream_id))
        self.assertEqual([opcode for opcode, _ in sent], [CLOSE])
        self.assertEqual(frames(backend.take())[0][0], CLOSE)

    def test_the_proxy_pings_the_client_on_its_stream(self) -> None:
        harness = self.harness(websocket_ping_interval=20, websocket_ping_timeout=5)
        stream_id, backend, _ = harness.open_session()
        harness.clock.advance(21)
        harness.pump()
        ((opcode, payload),) = frames(harness.received(stream_id))
        self.assertEqual(opcode, PING)
        harness.send(stream_id, frame(PONG, payload, masked=True))
        ((_, backend_payload),) = frames(backend.take())  # the backend hop's own ping
        backend.receive(frame(PONG, backend_payload))
        harness.clock.advance(6)
        harness.pump()
        self.assertEqual([op for op, _ in frames(harness.received(stream_id))], [])
        self.assertFalse(harness.client.answer(stream_id).ended)

    def test_an_unanswered_ping_ends_the_session(self) -> None:
        harness = self.harness(websocket_ping_interval=20, websocket_ping_timeout=5)
        stream_id, backend, _ = harness.open_session()
        harness.clock.advance(21)
        harness.pump()
        harness.clock.advance(6)
        harness.pump()
        self.assertEqual(frames(backend.take())[-1][0], CLOSE)
        answer = harness.client.answer(stream_id)
        self.assertTrue(answer.ended or answer.reset is not None)

    def test_the_session_lifetime_closes_the_stream_with_1001(self) -> None:
        harness = self.harness(websocket_max_lifetime=30, websocket_lifetime_spread=0)
        stream_id, backend, _ = harness.open_session()
        harness.clock.advance(31)
        harness.pump()
        self.assertEqual(frames(harness.received(stream_id)), [(CLOSE, b"\x03\xe9lifetime")])

    def test_a_client_over_its_message_rate_gets_1008_on_its_stream(self) -> None:
        harness = self.harness(
            websocket_message_rate=1, websocket_message_burst=1, websocket_rate_action="close"
        )
        stream_id, backend, _ = harness.open_session()
        for _ in range(3):
            harness.send(stream_id, frame(TEXT, b"m", masked=True))
        sent = frames(harness.received(stream_id))
        self.assertEqual(sent[-1][0], CLOSE)
        self.assertEqual(int.from_bytes(sent[-1][1][:2], "big"), 1008)

    def test_a_tunnel_rule_splices_the_stream_to_the_backend(self) -> None:
        rule = RuleConfig(target_group="pool", host="a.example.com", relay="tunnel")
        harness = self.harness(rules=(rule,))
        stream_id, backend, _ = harness.open_session()
        harness.send(stream_id, b"not even a frame")
        self.assertEqual(backend.take(), b"not even a frame")
        backend.receive(b"raw bytes back")
        harness.pump()
        self.assertEqual(harness.received(stream_id), b"raw bytes back")

    def test_a_tunnel_ends_the_stream_when_the_backend_closes(self) -> None:
        rule = RuleConfig(target_group="pool", host="a.example.com", relay="tunnel")
        harness = self.harness(rules=(rule,))
        stream_id, backend, _ = harness.open_session()
        backend.peer_closes()
        harness.pump()
        self.assertTrue(harness.client.answer(stream_id).ended)


class EarlyDataTests(H2WebSocketTestCase):
    def test_frames_sent_before_the_answer_reach_the_backend_in_order(self) -> None:
        harness = self.harness(session_buffer=16)
        stream_id = harness.open()
        first = frame(TEXT, b"first message, long enough", masked=True)
        harness.send(stream_id, first)  # past session_buffer: the stream is not read
        harness.send(stream_id, frame(TEXT, b"second", masked=True))
        backend = harness.backend()
        harness.accept(backend)
        self.assertEqual(
            frames(backend.take()), [(TEXT, b"first message, long enough"), (TEXT, b"second")]
        )
