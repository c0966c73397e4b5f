"""The parsers of :mod:`clbproxy.http.parsing` with ``h11`` splitting fields (for PyPy).

h11 is pure Python, which PyPy compiles; on CPython llhttp is faster
(:mod:`clbproxy.http.parse_httptools`).  Each field section is read by a
fresh ``h11.Connection`` behind a canonical request line (``GET / HTTP/1.0``,
so h11 asks for no Host: the real line and the Host rules are ours).  h11
merges repeated or listed ``Content-Length`` values and lower-cases
``Transfer-Encoding``; the listener refuses the first and forwards the second
as sent, so those two fields are taken from the raw lines, and a field h11
dropped sends the head to the shared line-by-line replay, as anything h11
refuses does.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import h11
from zope.interface import implementer

from clbproxy.http.parse_rules import SPECIAL, Field, unusual_bytes
from clbproxy.http.parsing import IRequestParser, IResponseParser, RequestParser, ResponseParser

_LINE = b"GET / HTTP/1.0\r\n"


def split(block: bytes) -> Optional[Tuple[List[Field], List[Field]]]:
    """``(fields, specials)`` of ``block`` as h11 reads them (module doc); None if refused."""
    if not block:
        return [], []
    if unusual_bytes(block):
        return None
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=len(block) + 64)
    connection.receive_data(_LINE + block + b"\r\n\r\n")
    try:
        event = connection.next_event()
    except h11.ProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    fields = event.headers.raw_items()
    if block.count(b"\r\n") + 1 != len(fields):
        return None  # h11 merged repeated Content-Length fields
    specials = []
    lines = None
    for index, (name, value) in enumerate(fields):
        special = SPECIAL.get(len(name))
        if special is None:
            continue
        lower = name.lower()
        if lower != special:
            continue
        if len(name) in (14, 17):
            if lines is None:
                lines = block.split(b"\r\n")
            value = lines[index].partition(b":")[2].strip(b" \t")
            fields[index] = (name, value)
        specials.append((lower, value))
    return fields, specials


def fields_of(block: bytes) -> Optional[List[Field]]:
    """The fields of :func:`split`, without the specials (a request parser's split)."""
    result = split(block)
    return None if result is None else result[0]


@implementer(IRequestParser)
class H11RequestParser(RequestParser):
    """Requests, fields split by h11."""

    backend = "h11"

    def __init__(self, handler, limits) -> None:
        super().__init__(handler, limits)
        self._split = fields_of


@implementer(IResponseParser)
class H11ResponseParser(ResponseParser):
    """Responses, fields split by h11."""

    backend = "h11"

    def __init__(self, handler, method: bytes = b"GET", **kwargs) -> None:
        super().__init__(handler, method, **kwargs)
        self._fields = split
