"""The listener's rules for a request head and a chunked body, as sans-IO code.

A listener has always read requests as twisted.web's line parser did, plus
its own checks (the rules are listed in ``docs/http-proxying.rst``); which
status (and reason) a hostile request gets depends on the order in which
those run: a line is checked for its size, obs-fold and stray CR/LF when its
CRLF arrives, but a header field is parsed only when the *next* line arrives
(twisted.web waits for continuation lines), and the Host rules
(:func:`clbproxy.http.server.request_host`) run once the section is complete.
:class:`ExactHead` replays exactly that order, line by line, so the parsers of
:mod:`clbproxy.http.parsing` give every refused request the status and reason
the listener always gave.  It is the slow path: the parsers use it when a head
arrives in pieces or when the fast path or the back end finds anything
unusual; an ordinary head never reaches it.

:class:`ChunkedBody` is twisted.web's chunked decoder with the listener's
stricter chunk sizes (at most :data:`MAX_CHUNK_SIZE`) and trailer rules
(:mod:`clbproxy.http.trailers`) for requests, or the size rules of
:func:`clbproxy.ws.handshake.chunk_size` for responses.  Both parsers use it:
llhttp and h11 each accept chunk lines the listener refuses (spaces, 64-bit
sizes above 2^63-1) and refuse some it accepts (extensions that are not
tokens), and neither can stop at a message's end to wait for the next request.
"""

from __future__ import annotations

import re
from typing import Callable, List, Optional, Tuple

from twisted.web._abnf import _istoken

from clbproxy.http.server import BadHost, HTTPLimits, request_host
from clbproxy.http.trailers import TrailerError, parse_trailer_lines
from clbproxy.util.octets import CR, LF, NUL

Field = Tuple[bytes, bytes]

#: twisted.web's ``maxHeaders``: the 501st field of a request is refused (431).
MAX_FIELDS = 500

#: The longest chunk size line (size and extensions), as twisted.web's decoder.
MAX_CHUNK_LINE = 1024

#: Bytes allowed in chunk extensions (twisted.web's ``_chunkExtChars``): HTAB,
#: visible ASCII but ``\\`` and DEL, and obs-text.
_CHUNK_EXT = bytes([9, *range(0x20, 0x5C), *range(0x5D, 0x7F), *range(0x80, 0x100)])

#: A response chunk size (RFC 9112 7.1: 1*HEXDIG), at most 16 digits.
_RESPONSE_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

_HEX = b"0123456789abcdefABCDEF"

#: What a request target may be made of (RFC 3986's characters, visible ASCII):
#: HAProxy's default; twisted.web's client refuses anything else towards a backend.
URI_CHARACTERS = re.compile(rb"\A[\x21-\x7e]+\Z")

#: An ``HTTP-version`` as RFC 9112 spells it (case-sensitive ``HTTP``, one digit each).
_HTTP_VERSION = re.compile(rb"\AHTTP/([0-9])\.([0-9])\Z")

#: The largest chunk size accepted: sizes must fit the 64-bit counters of backends.
MAX_CHUNK_SIZE = 2**63 - 1


def request_line_problem(method: bytes, version: bytes) -> Optional[tuple[int, str]]:
    """``(status, reason)`` for a request line this listener refuses, or ``None``.

    A major version other than 1 (``HTTP/2.0`` without an upgrade, the h2
    preface) is 505; CONNECT is 501: a reverse proxy opens no tunnels.
    """
    served = _HTTP_VERSION.match(version)
    if served is not None and served.group(1) != b"1":
        return 505, "only HTTP/1.0 and HTTP/1.1 are served here"
    if method == b"CONNECT":
        return 501, "CONNECT is not supported: this is a reverse proxy, not a tunnel"
    return None


def served_request_line(line: bytes, version: bytes) -> bytes:
    """``line``, with a later HTTP/1.x minor version read as 1.1 (RFC 9110 section 2.5)."""
    served = _HTTP_VERSION.match(version)
    if served is not None and served.group(1) == b"1" and served.group(2) not in b"01":
        return line[: -len(version)] + b"HTTP/1.1"
    return line


class Refused(Exception):
    """A message this listener refuses: ``status`` and the one-line ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


MALFORMED = "the request is malformed"


def _malformed() -> Refused:
    return Refused(400, MALFORMED)


def max_line(limits: HTTPLimits) -> int:
    """twisted.web's ``MAX_LENGTH`` as the listener sets it: the longest line read."""
    return max(limits.max_request_line, limits.max_header_size) + 1


def unusual_bytes(block: bytes) -> bool:
    """True when a field block holds a NUL, a CR or LF outside a CRLF, or obs-fold.

    llhttp refuses all of these itself; h11 would take bare LF and obs-fold.
    """
    lines = block.count(b"\r\n")
    if block.count(b"\r") != lines or block.count(b"\n") != lines or NUL in block:
        return True
    return b"\n " in block or b"\n\t" in block or block[:1] in (b" ", b"\t")


#: Methods that need no token check.
_COMMON_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})


def request_line(line: bytes) -> Optional[Tuple[bytes, bytes, bytes]]:
    """``(method, target, served version)`` of an ordinary request line, else None.

    None sends the head to :class:`ExactHead` for the listener's verdict.
    """
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if version == b"HTTP/1.1":
        served = b"1.1"
    elif version == b"HTTP/1.0":
        served = b"1.0"
    else:
        return None
    if not URI_CHARACTERS.match(target) or b"#" in target:
        return None
    if method not in _COMMON_METHODS and (method == b"CONNECT" or not _istoken(method)):
        return None
    return method, target, served


#: The fields that frame or route a request (or a response), by the length of their name.
SPECIAL = {
    4: b"host",
    6: b"expect",
    7: b"upgrade",
    10: b"connection",
    14: b"content-length",
    17: b"transfer-encoding",
}


class Framing:
    """What the special fields of a head say."""

    __slots__ = ("content_length", "chunked", "hosts", "connection", "upgrade", "expect")

    def __init__(self) -> None:
        self.content_length: Optional[int] = None
        self.chunked = False
        self.hosts: List[bytes] = []
        self.connection: List[bytes] = []
        self.upgrade = False
        self.expect: Optional[bytes] = None


def connection_tokens(values: List[bytes]) -> List[bytes]:
    """The lower-case tokens of ``Connection`` header values."""
    return [token.strip(b" \t").lower() for value in values for token in value.split(b",")]


class ExactHead:
    """The listener reading one request head, line by line, in its order of checks.

    ``feed`` is given the whole buffer each time (it only grows until the
    head is complete) and goes on from where it stopped.  It returns None while
    the head is incomplete, ``(method, target, version, fields, framing,
    consumed)`` once it is in, or raises :class:`Refused`.
    """

    def __init__(self, limits: HTTPLimits) -> None:
        self.limits = limits
        self.max_line = max_line(limits)
        self.pos = 0
        self.scanned = 0  # where the search for the current line's CRLF goes on
        self.first = 1
        self.size = 0
        self.count = 0
        self.pending: Optional[bytes] = None
        self.line: Tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self.fields: List[Field] = []
        self.framing = Framing()

    def feed(self, buffer: bytes):
        while True:
            eol = buffer.find(b"\r\n", max(self.pos, self.scanned - 1))
            if eol == -1:
                self.scanned = len(buffer)
                if len(buffer) - self.pos >= self.max_line + 2:
                    raise self._too_long()
                return None
            line = buffer[self.pos : eol]
            if len(line) > self.max_line:
                raise self._too_long()
            self.pos = eol + 2
            if self._line(line):
                return self._complete()

    def _too_long(self) -> Refused:
        if self.first:
            return Refused(414, "the request line is too long")
        return Refused(431, "the request headers are too large")

    def _line(self, line: bytes) -> bool:
        limits = self.limits
        if self.first:
            if len(line) > limits.max_request_line:
                raise Refused(414, "the request line is too long")
            parts = line.split(b" ")
            if len(parts) == 3:
                if not URI_CHARACTERS.match(parts[1]):
                    raise Refused(400, "the request target has a byte not allowed in a URI")
                if b"#" in parts[1]:
                    raise Refused(400, "a request target has no fragment ('#', RFC 9112 3.2)")
                problem = request_line_problem(parts[0], parts[2])
                if problem is not None:
                    raise Refused(*problem)
                line = served_request_line(line, parts[2])
        elif line:
            if line[:1] in (b" ", b"\t"):
                raise Refused(400, "obsolete line folding in a header is not accepted")
            if self.size + len(line) > limits.max_header_size:
                raise Refused(431, "the request headers are too large")
        if CR in line or LF in line:
            raise Refused(400, "a bare CR or LF in the request head")
        self.size += len(line)
        if self.first:
            if not line and self.first == 1:
                self.first = 2  # one empty line before a request is ignored
                return False
            self.first = 0
            parts = line.split(b" ")
            if len(parts) != 3 or not _istoken(parts[0]) or not parts[1]:
                raise _malformed()
            if parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
                raise _malformed()
            self.line = (parts[0], parts[1], parts[2][5:])
            return False
        if not line:
            if self.pending:
                self._field(self.pending)
            return True
        if self.pending:
            self._field(self.pending)
        self.pending = line
        return False

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        lower = name.lower()
        if lower == b"transfer-encoding" and value.strip(b" \t").lower() != b"chunked":
            raise Refused(400, "only Transfer-Encoding: chunked is accepted")
        if self.count >= MAX_FIELDS:
            raise Refused(431, f"more than {MAX_FIELDS} header fields")
        if not colon or not _istoken(name):
            raise _malformed()
        value = value.strip(b" \t")
        if len(value.translate(None, b"\x00\r\n")) != len(value):
            raise _malformed()
        framing = self.framing
        if lower == b"content-length":
            if not value.isdigit() or framing.chunked or framing.content_length is not None:
                raise _malformed()
            framing.content_length = int(value)
        elif lower == b"transfer-encoding":
            if framing.chunked or framing.content_length is not None:
                raise _malformed()
            framing.chunked = True
        elif lower == b"host":
            framing.hosts.append(value)
        elif lower == b"connection":
            framing.connection.append(value)
        elif lower == b"upgrade":
            framing.upgrade = True
        elif lower == b"expect" and framing.expect is None:
            framing.expect = value
        self.fields.append((name, value))
        self.count += 1
        limit = self.limits.max_body_size
        if lower == b"content-length" and limit and framing.content_length > limit:
            raise Refused(413, f"the request body is larger than {limit} bytes")

    def _complete(self):
        method, target, version = self.line
        return method, target, version, self.fields, self.framing, self.pos


def host_rules(
    version: bytes, target: bytes, fields: List[Field], hosts: List[bytes]
) -> Tuple[bytes, Optional[bytes], List[Field]]:
    """``(target, host, fields)`` once the Host rules hold, else :class:`Refused`.

    The rules are :func:`~clbproxy.http.server.request_host`'s.
    An absolute-form target becomes origin-form and its authority the ``Host``
    field's value (where the field was, or added last), as the listener always did.
    """
    if len(hosts) == 1 and target[:1] == b"/" and hosts[0] in GOOD_HOSTS:
        return target, hosts[0], fields
    try:
        origin, host = request_host(b"HTTP/" + version, target, hosts)
    except BadHost as e:
        raise Refused(400, str(e)) from None
    if origin != target:
        rewritten = [
            (name, host) if name.lower() == b"host" else (name, value) for name, value in fields
        ]
        if not hosts:
            rewritten.append((b"Host", host))
        return origin, host, rewritten
    if host is not None:
        if len(GOOD_HOSTS) >= 1024:
            GOOD_HOSTS.clear()
        GOOD_HOSTS[host] = True
    return origin, host, fields


#: Host values lately found valid: a connection's requests name the same few.
GOOD_HOSTS: dict[bytes, bool] = {}


def split_fields(block: bytes) -> Optional[List[Field]]:
    """The fields of a clean field block (CRLF-separated lines), or None if one is malformed.

    The same rules as a request's fields: a token name, a colon, OWS stripped,
    no NUL in a value (the caller has refused CR, LF and obs-fold: :func:`unusual_bytes`).
    """
    fields: List[Field] = []
    if not block:
        return fields
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not _istoken(name):
            return None
        value = value.strip(b" \t")
        if NUL in value:
            return None
        fields.append((name, value))
    return fields


class ChunkedBody:
    """A chunked body: data to ``on_data``, then ``on_end(trailers)``.

    ``request=True`` applies the listener's rules (twisted.web's decoder, with
    sizes up to 2^63-1, trailers held to :func:`~clbproxy.http.trailers.parse_trailer_lines` and to
    ``max_trailer`` bytes, every error :class:`Refused` 400);
    ``request=False`` applies a client's rules for a backend's response (sizes
    of at most 16 hex digits, no control character in extensions, malformed
    trailer lines dropped, errors :class:`Refused` 502).
    """

    __slots__ = (
        "on_data",
        "on_end",
        "request",
        "max_trailer",
        "state",
        "length",
        "trailer_size",
        "lines",
        "dropped",
        "scanned",
    )

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        on_end: Callable[[List[Field]], None],
        max_trailer: int,
        request: bool = True,
    ) -> None:
        self.on_data = on_data
        self.on_end = on_end
        self.request = request
        self.max_trailer = max_trailer
        self.state = 0  # 0: size line, 1: data, 2: CRLF after data, 3: trailer, 4: done
        self.length = 0
        self.trailer_size = 0
        self.lines: List[bytes] = []
        self.dropped = 0
        #: How much of an incomplete line (at the start of the next buffer) was searched.
        self.scanned = 0

    def _error(self, detail: str) -> Refused:
        if self.request:
            return Refused(400, detail)
        return Refused(502, "a malformed chunked response body: " + detail)

    def feed(self, buffer: bytes, paused: Callable[[], bool]) -> int:
        """Consume what it can of ``buffer`` (until ``paused()``); how many bytes it took."""
        pos = 0
        end = len(buffer)
        while pos < end and self.state != 4 and not paused():
            state = self.state
            if state == 1:
                take = min(self.length, end - pos)
                data = buffer[pos : pos + take] if (pos or take != end) else buffer
                pos += take
                self.length -= take
                if not self.length:
                    self.state = 2
                self.on_data(data)
            elif state == 0:
                eol = buffer.find(b"\r\n", pos + self.scanned - 1 if self.scanned else pos)
                if eol - pos >= MAX_CHUNK_LINE or (eol == -1 and end - pos > MAX_CHUNK_LINE):
                    raise self._error("a malformed chunk size line")
                if eol == -1:
                    self.scanned = end - pos
                    break
                self.scanned = 0
                self.length = self._size(buffer[pos:eol])
                pos = eol + 2
                self.state = 1 if self.length else 3
            elif state == 2:
                if end - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise self._error(MALFORMED if self.request else "a chunk without CRLF")
                pos += 2
                self.state = 0
            else:
                eol = buffer.find(b"\r\n", pos + self.scanned - 1 if self.scanned else pos)
                if eol == -1:
                    self.scanned = rest = end - pos
                    least = self.trailer_size + rest + (1 if buffer.endswith(b"\r") else 2)
                    if least > self.max_trailer:
                        raise self._error(MALFORMED if self.request else "trailers too large")
                    break
                self.scanned = 0
                if eol > pos:
                    self.lines.append(buffer[pos:eol])
                    self.trailer_size += eol - pos + 2
                    pos = eol + 2
                    if self.trailer_size > self.max_trailer:
                        raise self._error(MALFORMED if self.request else "trailers too large")
                    continue
                pos += 2
                self.state = 4
                self.on_end(self._trailers())
                break
        return pos

    def _size(self, line: bytes) -> int:
        size, _, extensions = line.partition(b";")
        if self.request:
            if not size or size.strip(_HEX) or extensions.translate(None, _CHUNK_EXT):
                raise self._error("a malformed chunk size line")
            value = int(size, 16)
            if value > MAX_CHUNK_SIZE:
                raise self._error("the chunk size is larger than 2^63-1")
            return value
        if not _RESPONSE_CHUNK_SIZE.fullmatch(size):
            raise self._error(f"bad chunk size {bytes(size[:20])!r}")
        if any(byte < 0x20 and byte != 0x09 or byte == 0x7F for byte in extensions):
            raise self._error("a control character in chunk extensions")
        value = int(size, 16)
        if value > MAX_CHUNK_SIZE:
            raise self._error("chunk size over 2^63-1")
        return value

    def _trailers(self) -> List[Field]:
        if not self.lines:
            return []
        if self.request:
            try:
                return parse_trailer_lines(self.lines)
            except TrailerError as e:
                raise Refused(400, str(e)) from None
        fields: List[Field] = []
        for line in self.lines:
            try:
                fields.extend(parse_trailer_lines([line]))
            except TrailerError:
                self.dropped += 1
        return fields
