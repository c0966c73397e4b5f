"""Sans-IO guards of an HTTP/2 connection against floods, read before ``h2`` sees a byte.

``h2`` buffers a header block's HEADERS and CONTINUATION frames until
END_HEADERS (only their number is bounded), answers every PING and SETTINGS it
is sent, and lets a client reset as many streams as it opens.  Each of those is
a known attack on HTTP/2 servers: CONTINUATION floods (2024), PING and SETTINGS
floods (CVE-2019-9512, -9515), empty frames (CVE-2019-9518), Rapid Reset
(CVE-2023-44487) and MadeYouReset (CVE-2025-8671, where the client makes the
*server* reset streams).  :class:`FrameWatch` reads only the 9-byte frame
headers of the client's byte stream (payloads are skipped, not copied), bounds a
header block's bytes and counts control frames; :class:`WindowCounter` counts
events in a fixed window, as HAProxy's "glitch" counters do.
"""

from __future__ import annotations

from typing import Optional

#: The client connection preface (RFC 9113 3.4), which precedes its first frame.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: The length of the window the flood counters use, in seconds.
FLOOD_WINDOW = 10.0

_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0, 1, 2, 3, 4
_PING, _CONTINUATION = 6, 9
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4


class WindowCounter:
    """Events in the current window of ``period`` seconds; more than ``limit`` is a flood."""

    def __init__(self, limit: int, clock, period: float = FLOOD_WINDOW) -> None:
        self.limit = limit
        self._clock = clock
        self._period = period
        self._start = clock.seconds()
        self.count = 0

    def add(self, count: int = 1) -> bool:
        """Count ``count`` events now; True when the window holds more than ``limit``."""
        now = self._clock.seconds()
        if now - self._start >= self._period:
            self._start, self.count = now, 0
        self.count += count
        return self.count > self.limit


class Flood(Exception):
    """The client broke one of the connection's bounds; the message says which."""


class FrameWatch:
    """Follows the frame boundaries of a client's HTTP/2 byte stream.

    :meth:`feed` raises :class:`Flood` when a header block (HEADERS and its
    CONTINUATIONs) grows past ``max_header_block`` bytes, or when the control
    frames (SETTINGS and PING that are not ACKs, PRIORITY, DATA without payload
    or END_STREAM) or client RST_STREAM frames exceed their counters.  Anything
    else malformed is left to ``h2``.
    """

    def __init__(
        self, max_header_block: int, control: WindowCounter, resets: WindowCounter
    ) -> None:
        self.max_header_block = max_header_block
        self._control = control
        self._resets = resets
        self._preface = len(PREFACE)
        self._head = b""
        self._skip = 0
        self._block: Optional[int] = None

    def feed(self, data: bytes) -> None:
        """Account for ``data``, the next bytes from the client."""
        view = memoryview(data)
        position, end = 0, len(data)
        if self._preface:
            taken = min(self._preface, end)
            self._preface -= taken
            position = taken
        while position < end:
            if self._skip:
                taken = min(self._skip, end - position)
                self._skip -= taken
                position += taken
                continue
            wanted = 9 - len(self._head)
            self._head += bytes(view[position : position + wanted])
            position += wanted
            if len(self._head) < 9:
                return
            head, self._head = self._head, b""
            self._frame(int.from_bytes(head[:3], "big"), head[3], head[4])

    def _frame(self, length: int, kind: int, flags: int) -> None:
        self._skip = length
        if kind == _HEADERS or (kind == _CONTINUATION and self._block is not None):
            self._block = (self._block or 0) + length if kind == _CONTINUATION else length
            if self._block > self.max_header_block:
                raise Flood(f"a header block over {self.max_header_block} bytes")
            if flags & _END_HEADERS:
                self._block = None
            return
        if kind == _RST_STREAM:
            if self._resets.add():
                raise Flood(f"more than {self._resets.limit} stream resets in 10 s (Rapid Reset)")
            return
        control = (
            (kind in (_SETTINGS, _PING) and not flags & _ACK)
            or kind == _PRIORITY
            or (kind == _DATA and length == 0 and not flags & _END_STREAM)
        )
        if control and self._control.add():
            raise Flood(f"more than {self._control.limit} control frames in 10 s")
