"""The upgrade request's target, and reading a backend's answer to a handshake that is not ``101``.

Autobahn's client only says "upgrade failed"; a proxy must pass the backend's
answer on (a 401 with ``WWW-Authenticate``, a 302 with ``Location``, a 403 with
its page), so this module parses the status line and headers and collects the
body, whatever its framing, up to a size limit.  It is sans-IO: bytes in, a
result out.
"""

from __future__ import annotations

import re
from typing import Optional

import attrs

from clbproxy.http.server import origin_form

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

#: A chunk size (RFC 9112 7.1: 1*HEXDIG), at most 16 digits; ``int(x, 16)``
#: alone would also take ``-1``, ``0x1``, ``1_0`` and `` 1``.
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

#: The largest chunk size taken (as the listener's request decoder: 2^63-1).
MAX_CHUNK_SIZE = 2**63 - 1


class MalformedChunk(ValueError):
    """A chunk size line or chunk framing that breaks RFC 9112 7.1."""


def chunk_size(line: bytes) -> int:
    """The size in a chunk size line (without its CRLF): ``1*HEXDIG [ ";" chunk-ext ]``.

    Raises :class:`MalformedChunk` for anything else: a sign, a prefix, an
    underscore, whitespace before the size, more than 16 digits, a control
    character in the extensions.
    """
    size, _, extensions = line.partition(b";")
    if not _CHUNK_SIZE.fullmatch(size):
        raise MalformedChunk(f"bad chunk size {bytes(size[:20])!r}")
    if any(byte < 0x20 and byte != 0x09 or byte == 0x7F for byte in extensions):
        raise MalformedChunk("a control character in chunk extensions")
    value = int(size, 16)
    if value > MAX_CHUNK_SIZE:
        raise MalformedChunk("chunk size over 2^63-1")
    return value


@attrs.frozen
class ResponseHead:
    """An HTTP response's status line and headers, duplicates and order kept."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    #: The values by lower-case name, in order (what ``upgrade.header_fields`` reads
    #: from ``headers``), made in the same walk of the head.
    fields: dict[str, list[str]] = attrs.field(factory=dict, eq=False, repr=False)

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive)."""
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]


def parse_response_head(data: bytes) -> Optional[ResponseHead]:
    """Parse ``HTTP/1.x NNN reason`` and headers; None when it is not a valid response head."""
    lines = data.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        return None
    code = status_line[1]
    if len(code) != 3 or not code.isdigit():
        return None
    reason = status_line[2].decode("latin-1") if len(status_line) > 2 else ""
    headers = []
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        # A line starting with SP or HTAB (obs-fold) fails here too: its name is no token.
        if not sep or not _TOKEN.match(name):
            return None
        name = name.decode("ascii")
        value = value.strip().decode("latin-1")  # no whitespace left either side
        headers.append((name, value))
        fields.setdefault(name.lower(), []).append(value)
    return ResponseHead(int(code), reason, tuple(headers), fields)


#: The largest response head a backend may answer a handshake with.
MAX_RESPONSE_HEAD = 65536


class MalformedAnswer(ValueError):
    """A backend's answer to a handshake that is not an HTTP response head; says why."""


def read_response_head(data: bytes) -> Optional[tuple[ResponseHead, bytes]]:
    """The head of a backend's answer at the start of ``data`` and the bytes after it.

    None while the head is incomplete; :class:`MalformedAnswer` for a head over
    :data:`MAX_RESPONSE_HEAD` bytes or one that is not ``HTTP/1.x NNN`` and fields.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_RESPONSE_HEAD:
            raise MalformedAnswer("response headers larger than 64 KiB")
        return None
    head = parse_response_head(data[: end + 4])
    if head is None:
        raise MalformedAnswer("malformed HTTP response")
    return head, data[end + 4 :]


class RefusalReader:
    """Collects the body of a non-101 handshake answer, at most ``limit`` bytes of it.

    ``done`` becomes true when the body is complete (by Content-Length, by the
    last chunk, or by :meth:`finish` when the body runs until the connection
    closes).  Bytes past ``limit`` are dropped and ``truncated`` is set.  A
    chunked body with broken framing (:func:`chunk_size`, no CRLF after a
    chunk's data, a size line over 4 KiB) is also ``done``, with ``malformed``
    saying why: a backend protocol error, not an answer to pass on.
    """

    def __init__(self, head: ResponseHead, limit: int) -> None:
        self.head = head
        self.limit = limit
        self.truncated = False
        self.done = False
        self.until_close = False
        #: Why the chunked framing is broken, if it is.
        self.malformed: Optional[str] = None
        self._body = bytearray()
        self._raw = bytearray()
        self._remaining: Optional[int] = None
        self._chunked = False
        encodings = ",".join(head.values("transfer-encoding")).lower()
        lengths = head.values("content-length")
        if head.status in (204, 304) or 100 <= head.status < 200:
            self.done = True
        elif "chunked" in encodings:
            self._chunked = True
        elif lengths and lengths[0].strip().isdigit():
            self._remaining = int(lengths[0].strip())
            self.done = self._remaining == 0
        else:
            self.until_close = True

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def _keep(self, data: bytes) -> None:
        room = self.limit - len(self._body)
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        self._body += data

    def feed(self, data: bytes) -> None:
        """Take more bytes from the backend."""
        if self.done or not data:
            return
        if self._chunked:
            self._raw += data
            self._dechunk()
        elif self._remaining is not None:
            part = data[: self._remaining]
            self._remaining -= len(part)
            self._keep(part)
            self.done = self._remaining == 0
        else:
            self._keep(data)

    def finish(self) -> None:
        """The connection closed: a body that runs until close is complete."""
        self.done = True

    def _broken(self, reason: str) -> None:
        self.malformed = reason
        self.done = True

    def _dechunk(self) -> None:
        while not self.done:
            line_end = self._raw.find(b"\r\n")
            if line_end < 0 or line_end > 4096:
                if len(self._raw) > 4096:
                    self._broken("a chunk size line over 4 KiB")
                return
            try:
                size = chunk_size(bytes(self._raw[:line_end]))
            except MalformedChunk as e:
                self._broken(str(e))
                return
            if size == 0:
                self.done = True
                return
            if len(self._raw) < line_end + 2 + size + 2:
                if len(self._body) >= self.limit:
                    self.truncated = True
                    self.done = True
                return
            start = line_end + 2
            if self._raw[start + size : start + size + 2] != b"\r\n":
                self._broken("no CRLF after a chunk's data")
                return
            self._keep(bytes(self._raw[start : start + size]))
            del self._raw[: start + size + 2]


def request_target(uri: str) -> str:
    """Path and query of a request target, also when it is in absolute form.

    The same reading as the HTTP forwarder's (:func:`clbproxy.http.server.origin_form`);
    other forms are routed as they are.
    """
    target = origin_form(uri.encode("latin-1"))
    return target.decode("latin-1") if target is not None else (uri or "/")
