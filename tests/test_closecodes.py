"""The close-code table: what each way a hop can end tells the other hop."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.closecodes import (
    CloseAction,
    HopEnd,
    HopEvent,
    Side,
    close_for_other_hop,
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
