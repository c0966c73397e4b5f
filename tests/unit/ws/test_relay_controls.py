"""Rate limits and lifetimes on a relayed session, in bytes: what each side gets, and when."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import RuleConfig
from clbproxy.ws.fastpath import Hop
from tests.support.relay import RelayHarness, frame, frames, switching_protocols, upgrade_head

TEXT, CLOSE = 0x1, 0x8


def close_payload(code: int, reason: bytes) -> bytes:
    return code.to_bytes(2, "big") + reason


class ControlsTestCase(unittest.TestCase):
    def relay(self, rule=None, **options) -> RelayHarness:
        if rule is not None:
            options["rule"] = rule
        harness = RelayHarness(**options)
        self.addCleanup(harness.close)
        return harness

    def open_session(self, harness):
        client = harness.client(upgrade_head())
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        self.assertTrue(client.take().startswith(b"HTTP/1.1 101 "))
        (session,) = harness.factory.sessions
        return session, client, backend


class ThrottleTests(ControlsTestCase):
    def test_a_client_over_its_message_rate_is_not_read_until_tokens_return(self):
        harness = self.relay(websocket_message_rate=10.0, websocket_message_burst=5)
        session, client, backend = self.open_session(harness)
        self.assertIsInstance(session.front, Hop)  # on the fast path
        client.receive(b"".join(frame(TEXT, b"m%d" % i, masked=True) for i in range(15)))
        # Every message read is relayed; the client is not read for the second owed.
        self.assertEqual(len(frames(backend.take())), 15)
        self.assertEqual(client.producerState, "paused")
        harness.clock.advance(1.0)
        self.assertEqual(client.producerState, "producing")

    def test_a_backend_over_its_byte_rate_is_throttled_and_the_client_is_not(self):
        harness = self.relay(websocket_byte_rate=100, websocket_byte_burst=100)
        _, client, backend = self.open_session(harness)
        backend.receive(frame(TEXT, b"x" * 120))
        self.assertEqual(frames(client.take()), [(TEXT, b"x" * 120)])
        self.assertEqual((backend.producerState, client.producerState), ("paused", "producing"))
        harness.clock.advance(0.22)
        self.assertEqual(backend.producerState, "producing")

    def test_a_session_within_its_rates_is_never_paused(self):
        harness = self.relay(websocket_message_rate=100.0, websocket_byte_rate=10_000)
        _, client, backend = self.open_session(harness)
        for _ in range(50):
            client.receive(frame(TEXT, b"hello", masked=True))
            harness.clock.advance(0.05)
        self.assertEqual(len(frames(backend.take())), 50)
        self.assertEqual(client.producerState, "producing")

    def test_a_rule_turns_the_listeners_limit_off(self):
        rule = RuleConfig(target_group="pool", host="public.test", websocket_message_rate=0.0)
        harness = self.relay(rule, websocket_message_rate=1.0)
        _, client, backend = self.open_session(harness)
        client.receive(b"".join(frame(TEXT, b"m", masked=True) for _ in range(20)))
        self.assertEqual(client.producerState, "producing")


class CloseActionTests(ControlsTestCase):
    def test_a_client_over_its_rate_gets_1008_and_the_backend_1001(self):
        harness = self.relay(
            websocket_message_rate=10.0, websocket_message_burst=2, websocket_rate_action="close"
        )
        _, client, backend = self.open_session(harness)
        client.receive(b"".join(frame(TEXT, b"m", masked=True) for _ in range(3)))
        self.assertEqual(
            frames(client.take()),
            [(CLOSE, close_payload(1008, b"rate limit: websocket_message_rate"))],
        )
        self.assertEqual(
            frames(backend.take())[-1],
            (CLOSE, close_payload(1001, b"proxy: client over websocket_message_rate")),
        )

    def test_a_backend_over_its_rate_gets_1008_and_the_client_1011(self):
        rule = RuleConfig(
            target_group="pool",
            host="public.test",
            websocket_byte_rate=10,
            websocket_rate_action="close",
        )
        harness = self.relay(rule)
        _, client, backend = self.open_session(harness)
        backend.receive(frame(TEXT, b"y" * 30))
        self.assertEqual(
            frames(client.take()),
            [(TEXT, b"y" * 30), (CLOSE, close_payload(1011, b"backend over websocket_byte_rate"))],
        )
        self.assertEqual(
            frames(backend.take()),
            [(CLOSE, close_payload(1008, b"rate limit: websocket_byte_rate"))],
        )


class TunnelTests(ControlsTestCase):
    def test_a_tunnels_bytes_are_throttled(self):
        rule = RuleConfig(
            target_group="pool", host="public.test", relay="tunnel", websocket_byte_rate=100
        )
        harness = self.relay(rule)
        _, client, backend = self.open_session(harness)
        client.receive(b"z" * 250)
        self.assertEqual(backend.take(), b"z" * 250)
        self.assertEqual(client.producerState, "paused")
        harness.clock.advance(1.5)
        self.assertEqual(client.producerState, "producing")

    def test_a_tunnel_past_its_lifetime_has_both_connections_closed(self):
        rule = RuleConfig(target_group="pool", host="public.test", relay="tunnel")
        harness = self.relay(rule, websocket_max_lifetime=600.0, websocket_idle_timeout=3600.0)
        _, client, backend = self.open_session(harness)
        backend.receive(b"last bytes")
        harness.clock.advance(600)
        self.assertEqual(client.take(), b"last bytes")
        harness.clock.advance(0)
        self.assertEqual((client.lost, backend.lost), (True, True))


class PerHopTests(ControlsTestCase):
    """Sessions that stay on Autobahn (permessage-deflate on the client's hop only)."""

    DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"

    def test_a_client_on_autobahn_is_throttled_and_every_message_arrives(self):
        harness = self.relay(
            websocket_deflate="per_hop", websocket_message_rate=10.0, websocket_message_burst=2
        )
        client = harness.client(upgrade_head(extra=self.DEFLATE))
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        answer = client.take()
        self.assertIn(b"permessage-deflate", answer.lower())
        (session,) = harness.factory.sessions
        self.assertNotIsInstance(session.front, Hop)  # on Autobahn
        # Uncompressed messages (RSV1 clear) are allowed with deflate agreed.
        client.receive(b"".join(frame(TEXT, b"m%d" % i, masked=True) for i in range(6)))
        self.assertEqual(
            [payload for _, payload in frames(backend.take())], [b"m%d" % i for i in range(6)]
        )
        self.assertEqual(client.producerState, "paused")
        harness.clock.advance(0.4)
        self.assertEqual(client.producerState, "producing")


class LifetimeTests(ControlsTestCase):
    def test_a_session_past_its_lifetime_is_closed_with_1001_lifetime(self):
        harness = self.relay(
            websocket_max_lifetime=600.0,
            websocket_lifetime_spread=0.0,
            websocket_idle_timeout=3600.0,
        )
        _, client, backend = self.open_session(harness)
        harness.clock.advance(599)
        self.assertEqual(client.take(), b"")
        harness.clock.advance(1)
        self.assertEqual(frames(client.take()), [(CLOSE, close_payload(1001, b"lifetime"))])
        self.assertEqual(
            frames(backend.take()),
            [(CLOSE, close_payload(1001, b"proxy: session lifetime reached"))],
        )

    def test_a_session_that_ends_first_leaves_no_lifetime_behind(self):
        harness = self.relay(websocket_max_lifetime=60.0)
        _, client, backend = self.open_session(harness)
        client.receive(frame(CLOSE, close_payload(1000, b""), masked=True))
        backend.receive(frame(CLOSE, close_payload(1000, b"")))
        backend.peer_closes()
        harness.clock.advance(1)
        self.assertEqual(len(harness.factory.lifetimes), 0)
