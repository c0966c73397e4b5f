"""Trailer fields of chunked messages, carried through the proxy in both directions.

twisted.web's chunked decoder collects the raw trailer lines of a message
(``_ChunkedTransferDecoder._trailerHeaders``, bounded in size) but hands them
to nobody.  This module holds what the proxy adds:

- :func:`parse_trailer_lines`: the raw lines as ``(name, value)`` pairs, held to
  the rules of a header line (a token name, a colon, no NUL/CR/LF, no obs-fold);
- :func:`forwardable`: the fields that may cross the proxy.  A trailer field is
  never merged into the header section by us, but a recipient may merge it
  (RFC 9110 6.5.2), so a field whose meaning needs to be known before the
  content (RFC 9110 6.5.1: framing, routing, authentication, request modifiers,
  response control, content format) or that the proxy itself vouches for
  (``X-Forwarded-*``, ``X-Real-IP``, ``Via``) is dropped: :data:`FORBIDDEN`;
- :func:`trailer_section`: the last chunk and trailer section that end a
  chunked body (the listener's responses; the backend client,
  :mod:`clbproxy.http.upstream_client`, frames its own).
"""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

from twisted.web._abnf import _istoken

from clbproxy.http.forwarded import FORWARDING_HEADERS

Field = Tuple[bytes, bytes]

#: Trailer fields never forwarded (lower-case names), in either direction.
FORBIDDEN = frozenset(
    {
        # message framing and connection control
        "content-length",
        "transfer-encoding",
        "trailer",
        "te",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        # routing, and what the proxy vouches for
        "host",
        "max-forwards",
        "via",
        "forwarded",
        *FORWARDING_HEADERS,
        # request modifiers: controls and conditionals
        "expect",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "cache-control",
        "pragma",
        # authentication and state
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "authentication-info",
        "proxy-authentication-info",
        "cookie",
        "set-cookie",
        # response control and content format
        "age",
        "expires",
        "date",
        "location",
        "retry-after",
        "vary",
        "content-type",
        "content-encoding",
        "content-range",
        "content-language",
        "content-location",
    }
)


class TrailerError(ValueError):
    """A trailer line that is not a well-formed field line; the message says which rule."""


def parse_trailer_lines(lines: Iterable[bytes]) -> List[Field]:
    """The ``(name, value)`` pairs of raw trailer lines (no CRLF), or :class:`TrailerError`.

    The same rules as the request's header lines: obs-fold (a line starting
    with a space or tab), a name that is not a token (which includes space
    before the colon), no colon, NUL, CR or LF in a value are all refused.
    """
    fields: List[Field] = []
    for raw in lines:
        line = bytes(raw)
        if line[:1] in (b" ", b"\t"):
            raise TrailerError("obsolete line folding in a trailer field is not accepted")
        name, colon, value = line.partition(b":")
        if not colon:
            raise TrailerError("a trailer line without a colon")
        if not name or not _istoken(name):
            raise TrailerError("a trailer field name that is not a token")
        value = value.strip(b" \t")
        if len(value.translate(None, b"\x00\r\n")) != len(value):
            raise TrailerError("NUL, CR or LF in a trailer field value")
        fields.append((name, value))
    return fields


def forwardable(fields: Iterable[Field], drop: Iterable[str] = ()) -> List[Field]:
    """The fields that may be forwarded: not :data:`FORBIDDEN`, not in ``drop`` (lower-case)."""
    extra = frozenset(drop)
    return [
        (name, value)
        for name, value in fields
        if (lower := name.decode("latin-1").lower()) not in FORBIDDEN and lower not in extra
    ]


def trailer_section(fields: Sequence[Field]) -> bytes:
    """The last chunk and trailer section that end a chunked body carrying ``fields``."""
    return b"0\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"


def accepts_trailers(te_values: Iterable[bytes]) -> bool:
    """True when ``TE`` header values name ``trailers``."""
    return any(
        token.split(b";", 1)[0].strip().lower() == b"trailers"
        for value in te_values
        for token in value.split(b",")
    )
