"""The fast path's frame scanner: what it passes on, what it reports, what it refuses."""

from __future__ import annotations

import os
import struct
import zlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.ws.frames import INFLATE_PER_TURN, Control, FrameScanner, Violation

MASK = b"\x11\x22\x33\x44"


def frame(opcode: int, payload: bytes, fin: bool = True, mask=MASK, rsv: int = 0) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, bit | n])
    elif n < 65536:
        head = bytes([b0, bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def forwarded(events) -> bytes:
    return b"".join(e for e in events if isinstance(e, bytes))


def feed_in_cuts(scanner: FrameScanner, data: bytes, cuts: list[int]) -> list:
    """Every event of ``scanner`` for ``data`` fed in chunks of the sizes ``cuts``, repeated."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        out += scanner.feed(data[pos : pos + step])
        pos += step
        i += 1
    return out


def violations(events) -> list[int]:
    return [e.code for e in events if isinstance(e, Violation)]


class PassingTests(unittest.TestCase):
    def test_client_text_frame_is_passed_on_unchanged_with_its_mask(self):
        data = frame(1, "héllo".encode())
        self.assertEqual(FrameScanner(masked=True).feed(data), [data])

    def test_server_binary_frame_is_passed_on_unchanged(self):
        data = frame(2, b"\x00\xff" * 100, mask=None)
        self.assertEqual(FrameScanner(masked=False).feed(data), [data])

    def test_fragmented_message_passes_and_counts_once(self):
        scanner = FrameScanner(masked=True)
        data = frame(1, b"ab", fin=False) + frame(0, b"cd", fin=False) + frame(0, b"ef")
        self.assertEqual(forwarded(scanner.feed(data)), data)
        self.assertEqual(scanner.messages, 1)

    def test_ping_between_fragments_is_reported_and_not_passed_on(self):
        first, last = frame(1, b"ab", fin=False), frame(0, b"cd")
        events = FrameScanner(masked=True).feed(first + frame(9, b"hi") + last)
        self.assertEqual(events, [first, Control(9, b"hi"), last])

    def test_close_is_reported_unmasked_and_ends_reading(self):
        scanner = FrameScanner(masked=True)
        events = scanner.feed(frame(8, b"\x03\xe8bye") + frame(1, b"late"))
        self.assertEqual(events, [Control(8, b"\x03\xe8bye")])
        self.assertEqual(scanner.feed(frame(1, b"later")), [])

    def test_long_frame_streams_and_says_it_is_inside_a_frame(self):
        scanner = FrameScanner(masked=False)
        data = frame(2, b"x" * 70000, mask=None)
        self.assertEqual(scanner.feed(data[:1000]), [data[:1000]])
        self.assertTrue(scanner.mid_frame)
        self.assertEqual(scanner.feed(data[1000:]), [data[1000:]])
        self.assertFalse(scanner.mid_frame)

    def test_split_header_is_held_until_complete(self):
        scanner = FrameScanner(masked=True)
        data = frame(1, b"hello")
        self.assertEqual(scanner.feed(data[:3]), [])
        self.assertEqual(scanner.feed(data[3:]), [data])


class ViolationTests(unittest.TestCase):
    def test_table(self):
        long_text = "€".encode() * 10
        cases = {
            "unmasked client frame": (True, frame(1, b"a", mask=None), [1002]),
            "masked server frame": (False, frame(1, b"a"), [1002]),
            "rsv bits": (True, frame(1, b"a", rsv=0x40), [1002]),
            "reserved data opcode": (True, frame(3, b"a"), [1002]),
            "reserved control opcode": (True, frame(11, b"a"), [1002]),
            "fragmented ping": (True, frame(9, b"a", fin=False), [1002]),
            "long ping": (True, frame(9, b"a" * 126), [1002]),
            "continuation first": (True, frame(0, b"a"), [1002]),
            "new message mid message": (True, frame(1, b"a", fin=False) + frame(2, b"b"), [1002]),
            "invalid utf-8": (True, frame(1, b"\xff"), [1007]),
            "utf-8 cut at message end": (True, frame(1, long_text[:-1]), [1007]),
            "one-byte close": (True, frame(8, b"\x03"), [1002]),
        }
        results = {
            name: violations(FrameScanner(masked=masked).feed(data))
            for name, (masked, data, _) in cases.items()
        }
        self.assertEqual(results, {name: codes for name, (_, _, codes) in cases.items()})

    def test_message_over_the_limit_is_1009(self):
        scanner = FrameScanner(masked=True, max_message=4)
        events = scanner.feed(frame(1, b"ab", fin=False) + frame(0, b"cde"))
        self.assertEqual(violations(events), [1009])
        self.assertEqual(forwarded(events), frame(1, b"ab", fin=False))

    def test_frames_before_a_bad_one_pass_and_nothing_after(self):
        good = frame(1, b"ok")
        events = FrameScanner(masked=True).feed(good + frame(1, b"\xc3\x28") + frame(1, b"x"))
        self.assertEqual(forwarded(events), good)

    def test_close_after_a_violation_is_still_found(self):
        scanner = FrameScanner(masked=True)
        events = scanner.feed(frame(1, b"\xff") + frame(1, b"skipped") + frame(8, b"\x03\xe8"))
        self.assertEqual(events[-1], Control(8, b"\x03\xe8"))

    def test_invalid_utf8_fails_before_the_frame_ends(self):
        scanner = FrameScanner(masked=True)
        data = frame(1, b"a" * 200 + b"\xff" + b"a" * 200)
        self.assertEqual(violations(scanner.feed(data[:220])), [1007])


#: (is_binary, payload): text messages are valid UTF-8, binary ones anything.
messages = st.lists(
    st.one_of(
        st.tuples(st.just(False), st.text(max_size=300).map(str.encode)),
        st.tuples(st.just(True), st.binary(max_size=300)),
    ),
    max_size=6,
)


class PropertyTests(unittest.TestCase):
    @given(messages, st.lists(st.integers(min_value=1, max_value=64), min_size=1), st.booleans())
    def test_valid_streams_pass_unchanged_however_they_are_cut(self, msgs, cuts, masked):
        data = b""
        for is_binary, payload in msgs:
            half = len(payload) // 2 if is_binary else 0
            if half:
                data += frame(2, payload[:half], fin=False, mask=MASK if masked else None)
                data += frame(9, b"p", mask=MASK if masked else None)
                data += frame(0, payload[half:], mask=MASK if masked else None)
            else:
                data += frame(2 if is_binary else 1, payload, mask=MASK if masked else None)
        scanner = FrameScanner(masked=masked)
        out = feed_in_cuts(scanner, data, cuts)
        self.assertEqual(violations(out), [])
        expected = data.replace(frame(9, b"p", mask=MASK if masked else None), b"")
        self.assertEqual(forwarded(out), expected)
        self.assertEqual(scanner.messages, len(msgs))

    @given(
        st.text(min_size=1, max_size=3000),
        st.lists(st.integers(min_value=1, max_value=5000), min_size=1),
    )
    def test_long_masked_text_is_unmasked_right_however_it_is_cut(self, text, cuts):
        payload = text.encode("utf-8")
        data = frame(1, payload) + frame(1, b"\xce\xbb" * 700)
        scanner = FrameScanner(masked=True)
        out = feed_in_cuts(scanner, data, cuts)
        self.assertEqual(violations(out), [])
        self.assertEqual(forwarded(out), data)
        self.assertEqual(scanner.messages, 2)

    def test_text_ending_inside_a_character_is_1007(self):
        events = FrameScanner(masked=True).feed(frame(1, b"ok \xce"))
        self.assertEqual(violations(events), [1007])

    @given(st.binary(max_size=200))
    def test_garbage_never_raises_and_passes_on_only_a_prefix_of_it(self, data):
        events = FrameScanner(masked=True).feed(data)
        self.assertTrue(data.startswith(forwarded(events)))


class HoldTests(unittest.TestCase):
    def test_small_frames_are_passed_on_only_when_complete(self):
        frame = bytes([0x82, 50]) + b"x" * 50
        scanner = FrameScanner(masked=False, hold=100)
        self.assertEqual(scanner.feed(frame[:20]), [])
        self.assertFalse(scanner.mid_frame)
        self.assertEqual(b"".join(scanner.feed(frame[20:])), frame)

    def test_frames_over_the_hold_size_are_streamed(self):
        frame = bytes([0x82, 126]) + (200).to_bytes(2, "big") + b"y" * 200
        scanner = FrameScanner(masked=False, hold=100)
        self.assertEqual(b"".join(scanner.feed(frame[:50])), frame[:50])
        self.assertTrue(scanner.mid_frame)

    def test_invalid_utf8_in_a_held_frame_fails_at_the_bad_byte(self):
        # Autobahn testsuite case 6.4.3: one frame sent in three chops; the second
        # chop holds a code point above U+10FFFF.
        parts = [bytes.fromhex(h) for h in ("cebae1bdb9cf83cebcceb5", "f4908080", "656469746564")]
        data = frame(1, b"".join(parts))
        scanner = FrameScanner(masked=True, hold=1000)
        first = 2 + 4 + len(parts[0])
        self.assertEqual(scanner.feed(data[:first]), [])
        events = scanner.feed(data[first : first + len(parts[1])])
        self.assertEqual(violations(events), [1007])
        self.assertEqual(forwarded(events), b"")

    def test_held_text_cut_at_every_byte_passes_whole_once_complete(self):
        data = frame(1, "snowman \u2603 and \U0001f600".encode())
        scanner = FrameScanner(masked=True, hold=1000)
        out = []
        for i in range(len(data)):
            out += scanner.feed(data[i : i + 1])
            if i < len(data) - 1:
                self.assertEqual(out, [])
        self.assertEqual(forwarded(out), data)
        self.assertEqual(scanner.messages, 1)

    def test_continuation_after_a_split_character_is_checked_when_whole(self):
        # The first fragment ends inside "\u2603": the held second fragment cannot be
        # checked on its own, so it is checked with the message once complete.
        snowman = "\u2603".encode()
        first = frame(1, b"a" + snowman[:1], fin=False)
        second = frame(0, snowman[1:] + b"b")
        scanner = FrameScanner(masked=True, hold=1000)
        out = scanner.feed(first + second[:7])
        out += scanner.feed(second[7:])
        self.assertEqual(violations(out), [])
        self.assertEqual(forwarded(out), first + second)

    @given(
        st.lists(st.text(max_size=80), min_size=1, max_size=4),
        st.lists(st.integers(min_value=1, max_value=9), min_size=1),
        st.booleans(),
    )
    def test_fragmented_text_passes_however_it_is_cut_and_held(self, texts, cuts, masked):
        mask = MASK if masked else None
        data = b""
        for text in texts:
            payload = text.encode()
            # Fragment boundaries anywhere, also inside a character.
            third = len(payload) // 3
            data += frame(1, payload[:third], fin=False, mask=mask)
            data += frame(0, payload[third : 2 * third], fin=False, mask=mask)
            data += frame(0, payload[2 * third :], mask=mask)
        scanner = FrameScanner(masked=masked, hold=1000)
        out = feed_in_cuts(scanner, data, cuts)
        self.assertEqual(violations(out), [])
        self.assertEqual(forwarded(out), data)
        self.assertEqual(scanner.messages, len(texts))


def compress(*messages: bytes, reset: bool = False) -> list[bytes]:
    """Each message deflated as a permessage-deflate sender does (RFC 7692 7.2.1):
    one compression context across messages unless ``reset``, the tail removed."""
    deflater = None
    out = []
    for message in messages:
        if deflater is None or reset:
            deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


RSV1 = 0x40


class DeflateTests(unittest.TestCase):
    """Compressed messages (permessage-deflate end to end) pass as they are, checked inflated."""

    def test_compressed_text_passes_unchanged_and_counts(self):
        scanner = FrameScanner(masked=True, deflate=True)
        (payload,) = compress("héllo wörld ".encode() * 50)
        data = frame(1, payload, rsv=RSV1)
        self.assertEqual(scanner.feed(data), [data])
        self.assertEqual(scanner.messages, 1)

    def test_context_is_kept_across_messages(self):
        """The second message refers back into the first: it only inflates with its window."""
        text = b"the same sentence, again and again. " * 20
        first, second = compress(text, text)
        self.assertLess(len(second), 20)
        data = frame(1, first, rsv=RSV1, mask=None) + frame(1, second, rsv=RSV1, mask=None)
        events = feed_in_cuts(FrameScanner(masked=False, deflate=True), data, [7])
        self.assertEqual(violations(events), [])
        self.assertEqual(forwarded(events), data)

    def test_a_sender_without_context_takeover_gets_a_fresh_window_each_message(self):
        scanner = FrameScanner(masked=True, deflate=True, deflate_reset=True)
        messages = compress(b"abc" * 100, b"abc" * 100, reset=True)
        for payload in messages:
            self.assertEqual(violations(scanner.feed(frame(2, payload, rsv=RSV1))), [])
        self.assertIsNone(scanner._inflater)  # no window held between messages

    def test_fragmented_compressed_message_cut_anywhere(self):
        (payload,) = compress(os.urandom(5000) + b"x" * 5000)
        third = len(payload) // 3
        data = (
            frame(2, payload[:third], fin=False, rsv=RSV1)
            + frame(0, payload[third : 2 * third], fin=False)
            + frame(0, payload[2 * third :])
        )
        for cut in (1, 3, 100, 4096):
            scanner = FrameScanner(masked=True, deflate=True, hold=64)
            events = feed_in_cuts(scanner, data, [cut])
            self.assertEqual((violations(events), forwarded(events)), ([], data))
            self.assertEqual(scanner.messages, 1)

    def test_uncompressed_messages_pass_beside_compressed_ones(self):
        (payload,) = compress(b"packed " * 10)
        data = frame(1, b"plain", mask=None) + frame(1, payload, rsv=RSV1, mask=None)
        events = FrameScanner(masked=False, deflate=True).feed(data)
        self.assertEqual(events, [data])

    def test_invalid_utf8_inside_compressed_text_is_1007(self):
        (payload,) = compress(b"fine so far \xff\xfe and then not")
        events = FrameScanner(masked=True, deflate=True).feed(frame(1, payload, rsv=RSV1))
        self.assertEqual(violations(events), [1007])

    def test_compressed_text_ending_inside_a_character_is_1007(self):
        (payload,) = compress("é".encode()[:1])
        events = FrameScanner(masked=True, deflate=True).feed(frame(1, payload, rsv=RSV1))
        self.assertEqual(violations(events), [1007])

    def test_the_limit_applies_to_the_inflated_size_a_step_at_a_time(self):
        """A 64 MiB message of zeros compresses to about 64 KiB: 1009, never inflated whole."""
        (payload,) = compress(bytes(64 << 20))
        scanner = FrameScanner(masked=False, deflate=True, max_message=1 << 20)
        events = scanner.feed(frame(2, payload, mask=None, rsv=RSV1))
        self.assertEqual(violations(events), [1009])
        self.assertEqual(forwarded(events), b"")

    def test_data_that_does_not_inflate_is_a_protocol_error(self):
        events = FrameScanner(masked=True, deflate=True).feed(frame(2, b"\xff" * 40, rsv=RSV1))
        self.assertEqual(violations(events), [1002])

    def test_rsv_rules_with_deflate(self):
        (payload,) = compress(b"abc")
        cases = [
            frame(1, payload, fin=False, rsv=RSV1) + frame(0, b"", rsv=RSV1),  # RSV1 continued
            frame(9, b"", rsv=RSV1),  # on a control frame
            frame(1, b"abc", rsv=0x20),  # RSV2
        ]
        for data in cases:
            events = FrameScanner(masked=True, deflate=True).feed(data)
            self.assertEqual(violations(events), [1002], data)

    def test_without_deflate_rsv1_is_still_refused(self):
        (payload,) = compress(b"abc")
        events = FrameScanner(masked=True).feed(frame(1, payload, rsv=RSV1))
        self.assertEqual(violations(events), [1002])


class InflateTurnTests(unittest.TestCase):
    """Inflating stops after INFLATE_PER_TURN bytes per feed and goes on at the next feed."""

    TEXT = "abçdéf ".encode() * (1 << 20)  # ~9 MiB of valid UTF-8, very compressible

    def feed_until_done(self, scanner: FrameScanner, data: bytes) -> tuple[list, int]:
        """All events for ``data``, fed once and then empty feeds while stalled; and the feeds."""
        events = scanner.feed(data)
        feeds = 1
        while scanner.stalled:
            self.assertLessEqual(scanner.inflated, INFLATE_PER_TURN + 64 * 1024)
            events += scanner.feed(b"")
            feeds += 1
        return events, feeds

    def test_a_bomb_is_inflated_a_megabyte_per_feed_and_passes_unchanged(self):
        (payload,) = compress(self.TEXT)
        self.assertLess(len(payload), 64 * 1024)
        data = frame(1, payload, rsv=RSV1)
        scanner = FrameScanner(masked=True, deflate=True)
        events, feeds = self.feed_until_done(scanner, data)
        self.assertEqual((violations(events), forwarded(events)), ([], data))
        self.assertGreaterEqual(feeds, len(self.TEXT) // INFLATE_PER_TURN)
        self.assertEqual(scanner.messages, 1)

    def test_a_held_bomb_from_a_server_passes_unchanged(self):
        (payload,) = compress(self.TEXT)
        data = frame(1, payload, mask=None, rsv=RSV1)
        scanner = FrameScanner(masked=False, deflate=True, hold=256 * 1024)
        events, feeds = self.feed_until_done(scanner, data)
        self.assertEqual((violations(events), forwarded(events)), ([], data))
        self.assertGreater(feeds, 1)

    def test_bytes_arriving_while_stalled_are_checked_after_the_rest_in_order(self):
        (first, second) = compress(self.TEXT, b"\xff invalid")
        data = frame(1, first, rsv=RSV1) + frame(1, second, rsv=RSV1)
        scanner = FrameScanner(masked=True, deflate=True)
        events = scanner.feed(data[:1000])
        events += scanner.feed(data[1000:])  # arrives while stalled
        more, _ = self.feed_until_done(scanner, b"")
        events += more
        self.assertEqual(violations(events), [1007])
        self.assertEqual(forwarded(events), frame(1, first, rsv=RSV1))

    def test_a_limit_still_ends_a_bomb_that_stalls_on_the_way(self):
        (payload,) = compress(self.TEXT)
        scanner = FrameScanner(masked=True, deflate=True, max_message=4 << 20)
        events, feeds = self.feed_until_done(scanner, frame(1, payload, rsv=RSV1))
        self.assertEqual(violations(events), [1009])
        self.assertGreater(feeds, 1)

    def test_small_compressed_messages_never_stall(self):
        (payload,) = compress(b"x" * 100_000)
        scanner = FrameScanner(masked=True, deflate=True)
        scanner.feed(frame(2, payload, rsv=RSV1) * 1)
        self.assertFalse(scanner.stalled)
        self.assertEqual(scanner.inflated, 100_000)


class DeflatePropertyTests(unittest.TestCase):
    @given(
        st.lists(st.tuples(st.booleans(), st.text(max_size=400)), min_size=1, max_size=12),
        st.lists(st.integers(min_value=1, max_value=300), min_size=1),
        st.booleans(),
        st.booleans(),
        st.integers(min_value=0, max_value=200),
    )
    def test_compressed_streams_pass_unchanged_however_they_are_cut(
        self, msgs, cuts, reset, masked, hold
    ):
        """Messages alike enough to refer back to each other (the kept window), some
        left uncompressed, fragmented at random points: all pass, none is refused."""
        mask = MASK if masked else None
        texts = [(compressed, (text * 3).encode()) for compressed, text in msgs]
        deflated = iter(compress(*[t for c, t in texts if c], reset=reset))
        data = b""
        for compressed, text in texts:
            payload = next(deflated) if compressed else text
            cut = len(payload) // 3
            if cut:
                data += frame(1, payload[:cut], fin=False, mask=mask, rsv=RSV1 if compressed else 0)
                data += frame(0, payload[cut:], mask=mask)
            else:
                data += frame(1, payload, mask=mask, rsv=RSV1 if compressed else 0)
        scanner = FrameScanner(masked=masked, hold=hold, deflate=True, deflate_reset=reset)
        out = feed_in_cuts(scanner, data, cuts)
        self.assertEqual(violations(out), [])
        self.assertEqual(forwarded(out), data)
        self.assertEqual(scanner.messages, len(msgs))
