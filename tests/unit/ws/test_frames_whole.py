"""A read that is exactly one small frame is checked in one step, with the general scan's result."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.ws.frames import Control, FrameScanner, Violation

MASK = b"\x11\x22\x33\x44"


def frame(b0: int, payload: bytes, mask: bool) -> bytes:
    if not mask:
        return bytes((b0, len(payload))) + payload
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((b0, 0x80 | len(payload))) + MASK + masked


def in_two_reads(scanner: FrameScanner, data: bytes) -> list:
    """``data`` fed as its first byte, then the rest: the general scan, never the one-step check."""
    return scanner.feed(data[:1]) + scanner.feed(data[1:])


def outcome(scanner: FrameScanner, events: list) -> tuple:
    """What a caller sees: the events, then how the scanner takes a following binary frame."""
    after = scanner.feed(frame(0x82, b"next", scanner.masked))
    return events, after, scanner.messages, scanner.mid_frame, scanner.failed


PAYLOADS = st.one_of(
    st.binary(max_size=125),
    st.text(max_size=40).map(lambda t: t.encode("utf-8")[:125]),
    st.sampled_from(
        [
            b"\xed\xa0\x80",  # a surrogate
            b"\xc0\xaf",  # overlong
            b"\xf4\x90\x80\x80",  # over U+10FFFF
            b"\xe2\x82",  # ends inside a code point
            b"\xef\xbf\xbe",  # a noncharacter: valid
            b"\x03\xe8",
            b"\x03\xe8bye",
            b"\x03",
        ]
    ),
)


class WholeFrameTests(unittest.TestCase):
    @given(
        b0=st.one_of(st.sampled_from([0x81, 0x82, 0x88, 0x89, 0x8A]), st.integers(0, 255)),
        payload=PAYLOADS,
        masked=st.booleans(),
        mask_bit=st.booleans(),
        max_message=st.sampled_from([0, 3, 125]),
        deflate=st.booleans(),
    )
    def test_a_whole_frame_gets_what_the_general_scan_gives(
        self, b0, payload, masked, mask_bit, max_message, deflate
    ):
        data = frame(b0, payload, mask_bit)
        whole = FrameScanner(masked=masked, max_message=max_message, deflate=deflate)
        general = FrameScanner(masked=masked, max_message=max_message, deflate=deflate)
        self.assertEqual(
            outcome(whole, whole.feed(data)), outcome(general, in_two_reads(general, data))
        )

    @given(payload=PAYLOADS, masked=st.booleans())
    def test_a_whole_frame_inside_a_fragmented_message_gets_what_the_general_scan_gives(
        self, payload, masked
    ):
        opening = frame(0x02, b"part", masked)  # a binary message's first frame, not final
        for b0 in (0x80, 0x81, 0x82, 0x88, 0x89, 0x8A):
            data = frame(b0, payload, masked)
            whole = FrameScanner(masked=masked)
            general = FrameScanner(masked=masked)
            whole.feed(opening)
            general.feed(opening)
            self.assertEqual(
                outcome(whole, whole.feed(data)), outcome(general, in_two_reads(general, data))
            )

    def test_a_client_text_frame_is_passed_on_as_it_came(self):
        data = frame(0x81, "héllo".encode(), True)
        scanner = FrameScanner(masked=True)
        self.assertEqual(scanner.feed(data), [data])
        self.assertEqual(scanner.messages, 1)

    def test_invalid_utf8_in_a_whole_text_frame_fails_with_1007(self):
        scanner = FrameScanner(masked=False)
        self.assertEqual(scanner.feed(frame(0x81, b"ok\xed\xa0\x80", False)), [Violation(1007, "")])

    def test_a_whole_close_frame_is_reported_and_ends_the_scan(self):
        scanner = FrameScanner(masked=True)
        self.assertEqual(scanner.feed(frame(0x88, b"\x03\xe8", True)), [Control(8, b"\x03\xe8")])
        self.assertEqual(scanner.feed(frame(0x82, b"late", True)), [])

    def test_a_one_byte_close_payload_fails_with_1002(self):
        scanner = FrameScanner(masked=False)
        self.assertEqual(scanner.feed(frame(0x88, b"\x03", False)), [Violation(1002, "")])
