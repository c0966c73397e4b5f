"""A sans-IO WebSocket frame scanner for the relay's validated fast path.

It reads one direction of one hop (RFC 6455 frames, no extensions) and says which
bytes may be passed on unchanged and which control frames the proxy must act on.
It never re-frames or re-masks: data frames leave exactly as they arrived (a
client's frames keep their mask, which RFC 6455 allows), so relaying a message
costs one check of its header and, for text, one UTF-8 validation.

Every frame is checked, as an endpoint would: the mask bit (set on frames from a
client, clear on frames from a server), RSV bits (none without an extension),
known opcodes, control frames (FIN set, payload at most 125 bytes), continuation
order, UTF-8 of text messages (incrementally, failing as soon as a byte is
invalid), close payloads (no 1-byte payload; code and reason are checked by the
caller's close handling) and the message size limit.

With ``deflate`` (permessage-deflate, RFC 7692, negotiated end to end by the two
peers) RSV1 marks a compressed message on its first frame and nowhere else.  A
compressed message is still passed on as it arrived, but its payload is
inflated on the side (zlib, in steps of at most 64 KiB, the output dropped at
once) so that text is UTF-8 checked and ``max_message`` applies to the
uncompressed size, as at the endpoint; data that does not inflate is a
protocol error.  The inflater keeps the LZ77 window across messages unless the
sender resets it each message (``deflate_reset``: its ``no_context_takeover``),
in which case it is dropped between messages.

Inflating is bounded per call: once one :meth:`FrameScanner.feed` has inflated
:data:`INFLATE_PER_TURN` bytes, the scan stops where the inflater stopped
(``stalled``), keeps the rest of the input, and goes on at the next ``feed`` (an
empty one will do), so a small compressed frame that stands for megabytes is
checked over several reactor turns instead of in one.  ``inflated`` tells the
caller how much the last ``feed`` inflated (for a rate limit).

:meth:`FrameScanner.feed` returns a list whose items are either ``bytes`` (to
forward as they are) or a :class:`Control` (ping, pong, close) or a
:class:`Violation` (the hop must be failed with that code).  Forwarded bytes never
contain a control frame, nor part of a frame header; they may end inside a data
frame's payload (a long frame is streamed as it arrives), which ``mid_frame``
tells.  After a violation the scanner passes nothing on any more and only reports
close frames, so the closing handshake can still complete.
"""

from __future__ import annotations

import zlib
from typing import Optional, Union

from autobahn.websocket.utf8validator import Utf8Validator
from autobahn.websocket.xormasker import create_xor_masker

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009

CLOSE = 8
PING = 9
PONG = 10


class Control:
    """A complete control frame: ``opcode`` (8 close, 9 ping, 10 pong) and its unmasked payload."""

    __slots__ = ("opcode", "payload")

    def __init__(self, opcode: int, payload: bytes) -> None:
        self.opcode = opcode
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Control)
            and other.opcode == self.opcode
            and other.payload == self.payload
        )

    def __repr__(self) -> str:
        return f"Control({self.opcode}, {self.payload!r})"


class Violation:
    """The peer broke the protocol or a limit: fail the hop with ``code``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Violation) and other.code == self.code

    def __repr__(self) -> str:
        return f"Violation({self.code}, {self.reason!r})"


Event = Union[bytes, Control, Violation]


#: UTF-8 validators not in use: a scanner holds one only while a text message is open,
#: so an idle session keeps none.
_VALIDATORS: list = []
_KEEP_VALIDATORS = 64


def _release_validator(validator) -> None:
    if len(_VALIDATORS) < _KEEP_VALIDATORS:
        _VALIDATORS.append(validator)


#: Up to this many bytes are unmasked with one integer XOR; longer chunks use NVX.
_SMALL = 1024

#: Most uncompressed bytes one inflate step makes (a small compressed frame may
#: stand for megabytes: they are checked and dropped a step at a time).
_INFLATE_STEP = 64 * 1024
#: Most uncompressed bytes one :meth:`FrameScanner.feed` makes before it stops (``stalled``).
INFLATE_PER_TURN = 1024 * 1024
#: What the sender removed from the end of each compressed message (RFC 7692 7.2.1).
_DEFLATE_TAIL = b"\x00\x00\xff\xff"


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR ``mask`` repeated, where ``mask`` is the key at the payload's offset."""
    n = len(payload)
    if not mask or not n:
        return payload
    if n > _SMALL:
        return create_xor_masker(mask, n).process(payload)
    stream = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little"
    )


class FrameScanner:
    """Checks the frames of one direction of a hop; see the module docstring.

    ``masked``: frames must carry a mask (they come from a client) or must not
    (they come from a server).  ``max_message``: largest message payload in
    bytes, 0 for no limit.  ``deflate``: permessage-deflate is in use (RSV1 marks
    compressed messages); ``deflate_reset``: the sender starts every compressed
    message with an empty window (its ``no_context_takeover``).
    """

    __slots__ = (
        "masked",
        "max_message",
        "messages",
        "mid_frame",
        "failed",
        "_buffer",
        "_remaining",
        "_fin",
        "_in_message",
        "_text",
        "_size",
        "_utf8",
        "_utf8_end",
        "_mask",
        "_mask_at",
        "_closed",
        "hold",
        "_early",
        "deflate",
        "deflate_reset",
        "_compressed",
        "_inflater",
        "inflated",
        "stalled",
        "_unconsumed",
    )

    def __init__(
        self,
        masked: bool,
        max_message: int = 0,
        hold: int = 0,
        deflate: bool = False,
        deflate_reset: bool = False,
    ) -> None:
        self.masked = masked
        self.max_message = max_message
        self.deflate = deflate
        self.deflate_reset = deflate_reset
        #: The current message is compressed (RSV1 on its first frame).
        self._compressed = False
        #: The sender's compression context, while one is kept (see the module doc).
        self._inflater = None
        #: Uncompressed bytes the last :meth:`feed` inflated.
        self.inflated = 0
        #: The last :meth:`feed` stopped after :data:`INFLATE_PER_TURN` bytes with
        #: input left: call it again (with more data or none) to go on.
        self.stalled = False
        #: Bytes of the last chunk given to :meth:`_inflate` that it left for later.
        self._unconsumed = 0
        #: Data frames up to this size are passed on only once complete, so a hop that
        #: dies mid-frame leaves nothing half-written and the other hop can get a Close;
        #: longer frames are streamed.
        self.hold = hold
        #: Complete data messages seen.
        self.messages = 0
        #: True when the forwarded bytes end inside a frame's payload.
        self.mid_frame = False
        #: True once a violation was reported.
        self.failed = False
        self._buffer = b""
        self._remaining = 0
        self._fin = False
        self._in_message = False
        self._text = False
        self._size = 0
        self._utf8 = None
        #: The text message so far ends on a whole code point.
        self._utf8_end = True
        #: The current frame's masking key (text frames from a client) and how far in we are.
        self._mask = b""
        self._mask_at = 0
        self._closed = False
        #: While a held text frame is incomplete: (validator, payload bytes checked so far),
        #: so invalid UTF-8 fails at the bad byte, not when the frame is whole.
        self._early: Optional[tuple[Utf8Validator, int]] = None

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes read from the hop; return what to do with them, in order."""
        if self._closed:
            return []
        if self.deflate:
            self.inflated = 0
            self.stalled = False
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        elif not self._remaining and not self.failed:
            whole = self._whole_frame(data)
            if whole is not None:
                return whole
        out: list[Event] = []
        n = len(data)
        pos = 0
        start = 0  # first byte not yet passed on
        frame_begin = 0  # where the current data frame's header is in this chunk
        while pos < n:
            remaining = self._remaining
            if remaining:
                end = pos + remaining if remaining < n - pos else n
                if (self._text or self._compressed) and not self.failed:
                    chunk = data[pos:end]
                    mask = self._mask
                    if mask:
                        at = self._mask_at & 3
                        chunk = _unmask(chunk, mask[at:] + mask[:at] if at else mask)
                        self._mask_at += end - pos
                    if self._compressed:
                        problem = self._inflate(chunk)
                        if problem is not None:
                            start = self._violation(out, data, start, frame_begin, *problem)
                        elif self.stalled:
                            # Go on from the first byte the inflater left.
                            left = self._unconsumed
                            end -= left
                            if mask:
                                self._mask_at -= left
                            self._remaining = remaining - (end - pos)
                            pos = end
                            break
                    else:
                        valid, self._utf8_end = self._utf8.validate(chunk)[:2]
                        if not valid:
                            start = self._violation(
                                out, data, start, frame_begin, INVALID_PAYLOAD, "invalid UTF-8"
                            )
                self._remaining = remaining - (end - pos)
                pos = end
                if self._remaining == 0 and not self.failed:
                    problem = self._frame_done()
                    if problem is not None:
                        start = self._violation(out, data, start, frame_begin, *problem)
                continue
            if n - pos < 2:
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            header = 2
            if length == 126:
                header = 4
            elif length == 127:
                header = 10
            mask_bit = b1 & 0x80
            if mask_bit:
                header += 4
            if n - pos < header:
                break
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length >> 63:
                    self._violation(out, data, start, pos, PROTOCOL_ERROR, "frame length >= 2^63")
                    self._closed = True
                    return out
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if not self.failed:
                problem = self._check_header(b0, opcode, fin, mask_bit, length)
                if problem is not None:
                    start = self._violation(out, data, start, pos, *problem)
                    # Skip the bad frame itself (as Autobahn does), then look for the Close.
                    pos += header
                    self._remaining = length
                    continue
            if opcode >= 8 and length <= 125:
                frame_end = pos + header + length
                if frame_end > n:
                    break
                if pos > start and not self.failed:
                    out.append(data[start:pos])
                if length:
                    mask = data[pos + header - 4 : pos + header] if mask_bit else b""
                    payload = _unmask(data[pos + header : frame_end], mask)
                else:
                    payload = b""
                pos = start = frame_end
                if opcode == CLOSE:
                    if len(payload) == 1 and not self.failed:
                        self._violation(out, data, pos, pos, PROTOCOL_ERROR, "1-byte close payload")
                    else:
                        out.append(Control(CLOSE, payload))
                    self._closed = True
                    if not self.failed:
                        self.mid_frame = False
                    return out
                if not self.failed:
                    out.append(Control(opcode, payload))
                continue
            if not self.failed and length <= self.hold and pos + header + length > n:
                # A compressed frame is checked as it is inflated, once it is whole.
                compressed = b0 & 0x40 if opcode else self._compressed
                if (
                    not compressed
                    and (opcode == 1 or (opcode == 0 and self._text and self._utf8_end))
                    and not self._check_held_text(data, pos + header, n, mask_bit)
                ):
                    start = self._violation(out, data, start, pos, INVALID_PAYLOAD, "invalid UTF-8")
                    pos += header
                    self._remaining = length
                    continue
                break
            if self._early is not None:
                _release_validator(self._early[0])
                self._early = None
            frame_begin = pos
            pos += header
            self._remaining = length
            if self.failed:
                # Skip the frame, so a Close after it is still found.
                self._text = False
                continue
            # A data frame: its header is passed on with its payload.
            if opcode:
                self._in_message = True
                self._text = opcode == 1
                self._size = 0
                self._compressed = compressed = bool(b0 & 0x40)
                if compressed and self._inflater is None:
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                if self._text:
                    self._utf8_end = True
                    utf8 = self._utf8
                    if utf8 is None:
                        utf8 = self._utf8 = _VALIDATORS.pop() if _VALIDATORS else Utf8Validator()
                    utf8.reset()
            self._fin = fin
            if not self._compressed:  # a compressed message counts as it inflates
                self._size += length
                if self.max_message and self._size > self.max_message:
                    start = self._violation(
                        out, data, start, pos - header, MESSAGE_TOO_BIG, "message too big"
                    )
                    continue
            inspected = self._text or self._compressed
            self._mask = data[pos - 4 : pos] if mask_bit and inspected and length else b""
            self._mask_at = 0
            if length == 0:
                problem = self._frame_done()
                if problem is not None:
                    start = self._violation(out, data, start, pos - header, *problem)
        if pos < n:
            self._buffer = data[pos:]
        if pos > start and not self.failed:
            out.append(data if start == 0 and pos == n else data[start:pos])
        if not self.failed:
            self.mid_frame = self._remaining > 0
        return out

    def _whole_frame(self, data: bytes) -> Optional[list[Event]]:
        """The events of ``data`` when it is exactly one small valid frame, else None.

        Most reads of a session of small messages are one whole frame each (a
        message, a ping, the Close): an unfragmented text or binary frame with
        no RSV bit, or a control frame, of at most 125 bytes, the mask bit as the
        hop needs it.  Such a frame is checked here in one step, with what the
        general scan would find (a text payload must be complete UTF-8, which
        Python's strict decoder checks as Autobahn's validator does); anything
        else, and any frame with a fault, is left to the general scan, which
        reports it as always.  Called only at a frame boundary (nothing kept, no
        payload pending) of a scanner that has not failed.
        """
        n = len(data)
        if n < 2:
            return None
        b0 = data[0]
        b1 = data[1]
        length = b1 & 0x7F
        masked = self.masked
        if length > 125 or n != length + (6 if masked else 2) or (b1 >> 7) != masked:
            return None
        if b0 == 0x82 or b0 == 0x81:
            if self._in_message or (self.max_message and length > self.max_message):
                return None
            if b0 == 0x81 and length:
                payload = _unmask(data[6:], data[2:6]) if masked else data[2:]
                if not payload.isascii():
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError:
                        return None
            self.messages += 1
            self._text = False
            self.mid_frame = False
            return [data]
        if b0 < 0x88 or b0 > 0x8A:
            return None
        if length:
            payload = _unmask(data[6:], data[2:6]) if masked else data[2:]
        else:
            payload = b""
        self.mid_frame = False
        if b0 == 0x88:
            if length == 1:
                return None
            self._closed = True
            return [Control(CLOSE, payload)]
        return [Control(b0 & 0x0F, payload)]

    def _check_held_text(self, data: bytes, begin: int, end: int, mask_bit: int) -> bool:
        """Check the part of a held (incomplete) text frame not checked yet; False if invalid.

        The frame's payload so far is ``data[begin:end]``.  It starts on a code
        point (a new message, or a continuation after a frame that ended on one),
        so its own validator can check it ahead of the message's; the bytes are
        checked once each, however finely the frame is cut.
        """
        early = self._early
        if early is None:
            validator = _VALIDATORS.pop() if _VALIDATORS else Utf8Validator()
            validator.reset()
            checked = 0
        else:
            validator, checked = early
        chunk = data[begin + checked : end]
        if not chunk:
            self._early = (validator, checked)
            return True
        if mask_bit:
            mask = data[begin - 4 : begin]
            at = checked & 3
            chunk = _unmask(chunk, mask[at:] + mask[:at] if at else mask)
        valid = validator.validate(chunk)[0]
        if not valid:
            self._early = None
            _release_validator(validator)
            return False
        self._early = (validator, checked + len(chunk))
        return True

    def _check_header(self, b0: int, opcode: int, fin: int, mask_bit: int, length: int):
        if b0 & 0x70:
            if not self.deflate:
                return PROTOCOL_ERROR, "RSV bits set without a negotiated extension"
            if b0 & 0x30:
                return PROTOCOL_ERROR, "RSV2 or RSV3 set (only permessage-deflate is in use)"
            if opcode == 0 or opcode >= 8:
                return PROTOCOL_ERROR, "RSV1 set on a continuation or control frame"
        if bool(mask_bit) != self.masked:
            if self.masked:
                return PROTOCOL_ERROR, "unmasked frame from a client"
            return PROTOCOL_ERROR, "masked frame from a server"
        if opcode >= 8:
            if opcode > PONG:
                return PROTOCOL_ERROR, f"reserved opcode {opcode}"
            if not fin:
                return PROTOCOL_ERROR, "fragmented control frame"
            if length > 125:
                return PROTOCOL_ERROR, "control frame payload over 125 bytes"
            return None
        if opcode == 0:
            if not self._in_message:
                return PROTOCOL_ERROR, "continuation frame outside a message"
        elif opcode > 2:
            return PROTOCOL_ERROR, f"reserved opcode {opcode}"
        elif self._in_message:
            return PROTOCOL_ERROR, "new message before the previous one ended"
        return None

    def _inflate(self, chunk: bytes, turn: int = INFLATE_PER_TURN):
        """Inflate the next compressed payload bytes and check what they make.

        None, or the (code, reason) problem: data that does not inflate, a
        message over ``max_message``, invalid UTF-8 in a text message.  Once this
        feed has inflated ``turn`` bytes it stops with ``stalled`` set and the
        number of ``chunk``'s bytes not inflated yet in ``_unconsumed``.
        """
        inflater = self._inflater
        if self.inflated > turn:
            self.stalled = True
            self._unconsumed = len(chunk)
            return None
        try:
            piece = inflater.decompress(chunk, _INFLATE_STEP)
            while True:
                if piece:
                    self.inflated += len(piece)
                    self._size += len(piece)
                    if self.max_message and self._size > self.max_message:
                        return MESSAGE_TOO_BIG, "message too big"
                    if self._text:
                        valid, self._utf8_end = self._utf8.validate(piece)[:2]
                        if not valid:
                            return INVALID_PAYLOAD, "invalid UTF-8"
                tail = inflater.unconsumed_tail
                if not tail:
                    return None
                if self.inflated > turn:
                    self.stalled = True
                    self._unconsumed = len(tail)
                    return None
                piece = inflater.decompress(tail, _INFLATE_STEP)
        except zlib.error:
            return PROTOCOL_ERROR, "invalid permessage-deflate data"

    def _frame_done(self):
        """The current data frame's payload is complete; None or a (code, reason) problem."""
        self._mask = b""
        if not self._fin:
            return None
        if self._compressed:
            # The tail only ends the message: never left for later.
            problem = self._inflate(_DEFLATE_TAIL, turn=1 << 62)
            self._compressed = False
            if self.deflate_reset:
                self._inflater = None
            if problem is not None:
                return problem
        self._in_message = False
        self.messages += 1
        utf8 = self._utf8
        if utf8 is not None:
            self._utf8 = None
            _release_validator(utf8)
        if self._text and not self._utf8_end:
            return INVALID_PAYLOAD, "text message ends inside a UTF-8 sequence"
        return None

    def _violation(
        self, out: list, data: bytes, start: int, frame_start: int, code: int, reason: str
    ) -> int:
        """Report a violation: pass on the complete frames before the bad one, nothing after.

        Returns the new "not yet passed on" position.
        """
        if frame_start > start:
            out.append(data[start:frame_start])
            self.mid_frame = False
        out.append(Violation(code, reason))
        self.failed = True
        self._text = False
        self._mask = b""
        return len(data)
