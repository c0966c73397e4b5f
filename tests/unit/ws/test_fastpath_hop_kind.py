"""Only a session with rate limits has hops that carry the limiter's calm record.

A :class:`~clbproxy.ws.fastpath.LimitedHop` is 64 bytes larger than a plain
:class:`~clbproxy.ws.fastpath.Hop`; a session without limits must not pay them.
"""

from __future__ import annotations

import gc
import sys

from twisted.trial import unittest

from clbproxy.ws.fastpath import Hop, LimitedHop, hop_kind
from tests.support.relay import RelayHarness, switching_protocols, upgrade_head

NO_LIMITS = (0.0, 0, 0, 0, "throttle")


class HopKindTests(unittest.TestCase):
    def test_no_limits_plain_hops(self):
        self.assertIs(hop_kind(NO_LIMITS, tunnel=False), Hop)

    def test_a_message_rate_limited_hops(self):
        self.assertIs(hop_kind((10.0, 0, 0, 0, "throttle"), tunnel=False), LimitedHop)

    def test_a_byte_rate_limited_hops_in_a_tunnel_too(self):
        self.assertIs(hop_kind((0.0, 0, 1000, 0, "close"), tunnel=True), LimitedHop)

    def test_a_tunnel_with_a_message_rate_only_is_not_limited(self):
        # A tunnel parses no frames: message rates do not apply there.
        self.assertIs(hop_kind((10.0, 0, 0, 0, "throttle"), tunnel=True), Hop)

    def test_a_plain_hop_is_smaller(self):
        plain, limited = Hop.__new__(Hop), LimitedHop.__new__(LimitedHop)
        self.assertLess(sys.getsizeof(plain), sys.getsizeof(limited))


class SessionHopsTests(unittest.TestCase):
    def open(self, **options):
        harness = RelayHarness(**options)
        self.addCleanup(harness.close)
        client = harness.client(upgrade_head())
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        client.take()
        (session,) = harness.factory.sessions
        return session

    def test_a_session_without_limits_has_plain_hops(self):
        session = self.open()
        self.assertEqual((type(session.front), type(session.backend)), (Hop, Hop))

    def test_a_session_with_limits_has_limited_hops_sharing_one_time(self):
        session = self.open(websocket_message_rate=100.0)
        self.assertEqual((type(session.front), type(session.backend)), (LimitedHop, LimitedHop))
        self.assertIs(session.backend.rate_session, session.front)


def holds_a_dict(hop) -> bool:
    """Whether ``hop`` has its attribute dict (looked for without making one)."""
    return any(type(referent) is dict for referent in gc.get_referents(hop))


class OpenSessionCase(unittest.TestCase):
    def open(self, **options):
        harness = RelayHarness(**options)
        self.addCleanup(harness.close)
        client = harness.client(upgrade_head())
        backend = harness.backends.accept()
        backend.receive(switching_protocols(backend.take()))
        client.take()
        (session,) = harness.factory.sessions
        return session, client, backend


class OpenHopSizeTests(OpenSessionCase):
    """What only a hop's end sets is not stored until then: an open hop holds no dict."""

    def test_an_open_sessions_hops_hold_no_dict_and_read_as_not_ended(self):
        for options in ({}, {"websocket_message_rate": 100.0}):
            session, client, backend = self.open(**options)
            for hop in (session.front, session.backend):
                self.assertFalse(holds_a_dict(hop))
                self.assertEqual(
                    (
                        hop.closedByMe,
                        hop.failedByMe,
                        hop.droppedByMe,
                        hop.wasClean,
                        hop.wasNotCleanReason,
                        hop.localCloseCode,
                        hop.remoteCloseCode,
                        hop.dropped,
                    ),
                    (False, False, False, False, None, None, None, None),
                )

    def test_a_hop_without_its_end_fields_in_slots_is_smaller(self):
        # The GC and object headers, then at most 16 slots and the dict's pointer
        # (with the end's fields in slots too it was 256 bytes).
        self.assertLessEqual(sys.getsizeof(Hop.__new__(Hop)), 16 + 16 + 8 * 17)


class SessionControlsTests(OpenSessionCase):
    """A session gets controls only when a rate or a lifetime applies to it."""

    def test_a_session_with_neither_has_none(self):
        session, _, _ = self.open()
        self.assertIsNone(session.controls)

    def test_a_lifetime_alone_gives_controls(self):
        session, _, _ = self.open(websocket_max_lifetime=60.0)
        self.assertIsNotNone(session.controls)

    def test_a_rate_alone_gives_controls(self):
        session, _, _ = self.open(websocket_message_rate=100.0)
        self.assertIsNotNone(session.controls)
