"""The close-code table: what each way a hop can end tells the other hop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.ws.closecodes import (
    MAX_REASON_BYTES,
    SENDABLE_CODES,
    CloseAction,
    HopEnd,
    HopEvent,
    Side,
    close_for_other_hop,
    received_close_problem,
    truncate_reason,
)

C, B = Side.CLIENT, Side.BACKEND

TABLE = [
    # (event, expected action on the other hop)
    (HopEvent(C, HopEnd.CLOSED, 1000, "bye"), CloseAction(1000, b"bye")),
    (HopEvent(B, HopEnd.CLOSED, 1000, ""), CloseAction(1000, b"")),
    (HopEvent(B, HopEnd.CLOSED, 1001, "restart"), CloseAction(1001, b"restart")),
    (HopEvent(B, HopEnd.CLOSED, 1008, "policy"), CloseAction(1008, b"policy")),
    (HopEvent(B, HopEnd.CLOSED, 1011, "oops"), CloseAction(1011, b"oops")),
    (HopEvent(B, HopEnd.CLOSED, 1012, ""), CloseAction(1012, b"")),
    (HopEvent(B, HopEnd.CLOSED, 1013, ""), CloseAction(1013, b"")),
    (HopEvent(C, HopEnd.CLOSED, 3000, "app"), CloseAction(3000, b"app")),
    (HopEvent(C, HopEnd.CLOSED, 4999, "app"), CloseAction(4999, b"app")),
    (HopEvent(C, HopEnd.CLOSED, None, ""), CloseAction(None)),
    (HopEvent(B, HopEnd.CLOSED, None, ""), CloseAction(None)),
    # Never on the wire, or rejected by the other hop's peer: as a protocol error.
    (HopEvent(B, HopEnd.CLOSED, 1014, ""), CloseAction(1011, b"backend error")),
    (HopEvent(B, HopEnd.CLOSED, 1006, ""), CloseAction(1011, b"backend error")),
    (HopEvent(C, HopEnd.CLOSED, 1015, ""), CloseAction(1001, b"client error")),
    (HopEvent(C, HopEnd.CLOSED, 1005, ""), CloseAction(1001, b"client error")),
    # The proxy failed one hop: the other learns why, with a code of its own.
    (
        HopEvent(C, HopEnd.FAILED, 1002, "unmasked frame"),
        CloseAction(1001, b"client error: unmasked frame"),
    ),
    (
        HopEvent(B, HopEnd.FAILED, 1007, "invalid UTF-8"),
        CloseAction(1011, b"backend error: invalid UTF-8"),
    ),
    (HopEvent(C, HopEnd.FAILED, 1009, ""), CloseAction(1001, b"client error")),
    # TCP gone without a closing handshake.
    (HopEvent(C, HopEnd.LOST), CloseAction(1001, b"client went away")),
    (HopEvent(B, HopEnd.LOST), CloseAction(1011, b"backend went away")),
]


class CloseTableTests(unittest.TestCase):
    def test_every_row_of_the_table(self):
        for event, expected in TABLE:
            self.assertEqual(close_for_other_hop(event), expected, event)

    def test_no_action_puts_a_reserved_code_on_the_wire(self):
        for code in [None, *range(0, 5100)]:
            for side in Side:
                for how in HopEnd:
                    action = close_for_other_hop(HopEvent(side, how, code, "x"))
                    self.assertNotIn(action.code, (1004, 1005, 1006, 1014, 1015))
                    self.assertTrue(
                        action.code is None
                        or action.code in (1000, 1001, 1002, 1003)
                        or 1007 <= action.code <= 1013
                        or 3000 <= action.code <= 4999,
                        (side, how, code, action),
                    )

    def test_long_reasons_fit_a_control_frame(self):
        action = close_for_other_hop(HopEvent(B, HopEnd.CLOSED, 4000, "é" * 200))
        self.assertLessEqual(len(action.reason), 123)
        action.reason.decode("utf-8")

    def test_truncation_never_splits_a_character(self):
        self.assertEqual(truncate_reason("aé", 2), b"a")
        self.assertEqual(truncate_reason("abc", 3), b"abc")

    def test_side_other(self):
        self.assertIs(C.other, B)
        self.assertIs(B.other, C)


RECEIVED = [
    # (code, reason bytes, problem)
    (1000, None, None),
    (None, None, None),
    (4999, "ça va".encode(), None),
    (1013, b"", None),
    (999, None, (1002, "invalid close code 999")),
    (1004, None, (1002, "invalid close code 1004")),
    (1005, None, (1002, "invalid close code 1005")),
    (1006, None, (1002, "invalid close code 1006")),
    (1014, None, (1002, "invalid close code 1014")),
    (1015, None, (1002, "invalid close code 1015")),
    (2999, None, (1002, "invalid close code 2999")),
    (5000, None, (1002, "invalid close code 5000")),
    (1000, b"\xff", (1007, "close reason is not valid UTF-8")),
    (1000, b"\xed\xa0\x80", (1007, "close reason is not valid UTF-8")),
    (1000, b"ok\xc3", (1007, "close reason is not valid UTF-8")),
    (999, b"\xff", (1002, "invalid close code 999")),
]


class ReceivedCloseTests(unittest.TestCase):
    def test_every_row_of_the_received_close_table(self):
        for code, reason, expected in RECEIVED:
            self.assertEqual(received_close_problem(code, reason), expected, (code, reason))


_events = st.builds(
    HopEvent,
    st.sampled_from(list(Side)),
    st.sampled_from(list(HopEnd)),
    st.none() | st.integers(min_value=0, max_value=65535),
    st.text(max_size=300),
)


class CloseCodeProperties(unittest.TestCase):
    @given(_events)
    def test_the_other_hop_always_gets_a_sendable_frame(self, event):
        action = close_for_other_hop(event)
        self.assertTrue(action.code is None or action.code in SENDABLE_CODES, action)
        self.assertLessEqual(len(action.reason), MAX_REASON_BYTES)
        action.reason.decode("utf-8")
        if action.code is None:
            self.assertEqual(action.reason, b"")

    @given(_events)
    def test_a_valid_close_is_relayed_unchanged_except_for_length(self, event):
        action = close_for_other_hop(event)
        if event.how is HopEnd.CLOSED and (event.code is None or event.code in SENDABLE_CODES):
            self.assertEqual(action.code, event.code)
            if event.code is not None:
                self.assertTrue(event.reason.encode("utf-8").startswith(action.reason))
        else:
            self.assertEqual(action.code, 1001 if event.side is Side.CLIENT else 1011)

    @given(st.text(max_size=200), st.integers(min_value=0, max_value=130))
    def test_truncated_reasons_are_utf8_prefixes(self, reason, limit):
        cut = truncate_reason(reason, limit)
        self.assertLessEqual(len(cut), limit)
        self.assertTrue(reason.encode("utf-8").startswith(cut))
        self.assertGreater(len(cut), limit - 4 if len(reason.encode("utf-8")) > limit else -1)

    @given(
        st.none() | st.integers(min_value=0, max_value=65535), st.none() | st.binary(max_size=123)
    )
    def test_a_received_close_is_valid_exactly_when_it_may_be_relayed(self, code, reason):
        problem = received_close_problem(code, reason)
        code_ok = code is None or code in SENDABLE_CODES
        try:
            (reason or b"").decode("utf-8")
            reason_ok = True
        except UnicodeDecodeError:
            reason_ok = False
        self.assertEqual(problem is None, code_ok and reason_ok)
        if problem is not None:
            self.assertEqual(problem[0], 1002 if not code_ok else 1007)
