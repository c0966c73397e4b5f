"""A backend response's head: the record the response parser makes, and how it reads one.

:class:`ResponseHead` is what :class:`clbproxy.http.parsing.ResponseParser`
hands its handler (:mod:`clbproxy.http.parsing` exports it too).  The parser
reads a status line and the names of a head's fields on every response; a
backend sends the same few lines and names each time, so what each one says
is worked out once and kept here (bounded, as they are the backends' to
choose): a lookup per line and per field instead of their checks.  A line
that is refused is never kept, so it is refused every time.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple, Union

from clbproxy.http.parse_rules import connection_tokens
from clbproxy.util.octets import CR, LF, NUL

__all__ = [
    "CONNECTION",
    "CONNECTION_VALUES",
    "CONTENT_LENGTH",
    "FRAMING_KINDS",
    "OTHER",
    "ResponseHead",
    "STATUS_LINES",
    "TRANSFER_ENCODING",
    "connection_says",
    "framing_kind",
    "status_line",
]


class ResponseHead(NamedTuple):
    """A final response's status line and fields, and its framing.

    ``content_length`` is None for a chunked body, a body until the backend
    closes, or no body; ``until_close`` says which.  ``keep_alive`` is False
    whenever the connection cannot carry another exchange.  ``headers`` are
    ``(name, value)`` pairs in order, values stripped and holding no CR, LF or
    NUL (the parser refuses those), so the client's response takes them as
    they are.  A named tuple, as it is made on every response: its ``__new__``
    runs half the bytecodes of an ``__init__`` setting nine slots (nothing
    changes a head once the parser made it).
    """

    status: int
    reason: bytes
    version: bytes
    headers: List[Tuple[bytes, bytes]]  # parse_rules.Field: spelled out for the docs
    content_length: Optional[int]
    chunked: bool
    until_close: bool
    keep_alive: bool
    upgrade: bool

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status} {self.reason!r}>"


#: Status lines seen to ``(status, reason, version)``: a backend sends a few,
#: each checked once (bounded, as the lines are the backends' to choose).
STATUS_LINES: Dict[bytes, Tuple[int, bytes, bytes]] = {}
MAX_STATUS_LINES = 1024


def status_line(line: bytes) -> Union[Tuple[int, bytes, bytes], str]:
    """``(status, reason, version)`` of a status line, or why it is refused."""
    if (
        line[:7] != b"HTTP/1."
        or not line[7:8].isdigit()
        or line[8:9] != b" "
        or len(line[9:12]) != 3
        or not line[9:12].isdigit()
        or line[12:13] not in (b"", b" ")
    ):
        return f"not an HTTP/1.x status line: {line[:40]!r}"
    status = int(line[9:12])
    if status < 100:
        return f"status {status} is not a valid status"
    reason = line[13:]
    if CR in reason or LF in reason or NUL in reason:
        return "a bare CR or LF, or a NUL, in the status line"
    known = (status, reason, b"1.0" if line[7:8] == b"0" else b"1.1")
    if len(STATUS_LINES) < MAX_STATUS_LINES:
        STATUS_LINES[line] = known
    return known


#: What a response field's name says of its framing (:data:`FRAMING_KINDS`).
OTHER, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION = range(4)
_FRAMING_NAMES = {
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION,
}

#: Field names as received to what they say of the framing: one lookup per
#: field (bounded, as the names are the backends' to choose).
FRAMING_KINDS: Dict[bytes, int] = {}
_MAX_FRAMING_KINDS = 10_000


def framing_kind(name: bytes) -> int:
    """What the field name ``name`` says of the framing (:data:`OTHER`: nothing; kept)."""
    kind = _FRAMING_NAMES.get(name.lower(), OTHER)
    if len(FRAMING_KINDS) < _MAX_FRAMING_KINDS:
        FRAMING_KINDS[name] = kind
    return kind


#: A lone ``Connection`` value to ``(close, keep-alive)`` among its tokens.
CONNECTION_VALUES: Dict[bytes, Tuple[bool, bool]] = {}
_MAX_CONNECTION_VALUES = 256


def connection_says(values: List[bytes]) -> Tuple[bool, bool]:
    """Whether ``Connection`` values name ``close``, and ``keep-alive`` (a lone value kept)."""
    tokens = connection_tokens(values)
    known = (b"close" in tokens, b"keep-alive" in tokens)
    if len(values) == 1 and len(CONNECTION_VALUES) < _MAX_CONNECTION_VALUES:
        CONNECTION_VALUES[values[0]] = known
    return known
