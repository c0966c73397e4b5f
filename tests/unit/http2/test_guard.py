"""The frame-level guards read before h2: header block bytes and flood counters."""

from __future__ import annotations

from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.http2.guard import PREFACE, Flood, FrameWatch, WindowCounter


def watch(max_header_block: int = 100, control: int = 3, resets: int = 3):
    """A watch that has read the client's preface."""
    clock = Clock()
    guard = FrameWatch(
        max_header_block, WindowCounter(control, clock), WindowCounter(resets, clock)
    )
    guard.feed(PREFACE)
    return guard, clock


class FrameWatchTests(unittest.TestCase):
    def test_ordinary_traffic_passes_even_one_byte_at_a_time(self) -> None:
        frames = PREFACE + b"".join(
            frame.serialize()
            for frame in (
                SettingsFrame(0),
                HeadersFrame(1, data=b"x" * 90, flags=["END_HEADERS"]),
                DataFrame(1, data=b"y" * 1000, flags=["END_STREAM"]),
                WindowUpdateFrame(0, window_increment=10),
                SettingsFrame(0, flags=["ACK"]),
            )
        )
        clock = Clock()
        guard = FrameWatch(100, WindowCounter(3, clock), WindowCounter(3, clock))
        for index in range(len(frames)):
            guard.feed(frames[index : index + 1])

    def test_a_header_block_over_the_bound_is_a_flood(self) -> None:
        guard, _ = watch(max_header_block=100)
        guard.feed(HeadersFrame(1, data=b"x" * 60).serialize())
        with self.assertRaises(Flood) as raised:
            guard.feed(ContinuationFrame(1, data=b"x" * 41).serialize())
        self.assertEqual(str(raised.exception), "a header block over 100 bytes")

    def test_end_headers_starts_the_count_again(self) -> None:
        guard, _ = watch(max_header_block=100)
        for stream_id in (1, 3, 5):
            guard.feed(HeadersFrame(stream_id, data=b"x" * 60).serialize())
            guard.feed(
                ContinuationFrame(stream_id, data=b"x" * 40, flags=["END_HEADERS"]).serialize()
            )

    def test_control_frames_over_the_limit_are_a_flood(self) -> None:
        floods = {}
        for name, frame in {
            "ping": PingFrame(0, opaque_data=b"12345678"),
            "settings": SettingsFrame(0),
            "empty data": DataFrame(1, data=b""),
        }.items():
            guard, _ = watch(control=3)
            try:
                for _ in range(4):
                    guard.feed(frame.serialize())
            except Flood as e:
                floods[name] = str(e)
        self.assertEqual(
            floods,
            {
                name: "more than 3 control frames in 10 s"
                for name in ("ping", "settings", "empty data")
            },
        )

    def test_acks_are_not_counted(self) -> None:
        guard, _ = watch(control=3)
        for _ in range(10):
            guard.feed(PingFrame(0, opaque_data=b"12345678", flags=["ACK"]).serialize())
            guard.feed(SettingsFrame(0, flags=["ACK"]).serialize())

    def test_client_resets_over_the_limit_are_rapid_reset(self) -> None:
        guard, _ = watch(resets=3)
        with self.assertRaises(Flood) as raised:
            for stream_id in range(1, 10, 2):
                guard.feed(RstStreamFrame(stream_id, error_code=8).serialize())
        self.assertEqual(str(raised.exception), "more than 3 stream resets in 10 s (Rapid Reset)")

    def test_the_count_starts_again_each_window(self) -> None:
        guard, clock = watch(control=3)
        for _ in range(5):
            for _ in range(3):
                guard.feed(PingFrame(0, opaque_data=b"12345678").serialize())
            clock.advance(10)
