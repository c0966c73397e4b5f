"""The checks of an HTTP/2 request's header block, per stream (RFC 9113 8.2-8.3).

``h2`` can check these itself, but it makes every failure a connection error:
one malformed request would end every other request and download on the
connection.  Here a request that breaks HTTP/2's own rules is
:class:`Malformed` (the stream is reset with ``PROTOCOL_ERROR``, RFC 9113 8.1.1)
and one HTTP would refuse is :class:`~clbproxy.http.parse_rules.Refused` (the
HTTP/1.1 parsers' own) with the status an HTTP/1.1 client would get on this
listener (400, 413, 414, 431, 501), so the two versions are exactly as
strict.  :func:`read_request` is sans-IO.

An extended CONNECT (RFC 8441 4: ``:method CONNECT`` with ``:protocol``) is
read only when the connection advertised ``SETTINGS_ENABLE_CONNECT_PROTOCOL``
(``h2`` takes ``:protocol`` whether or not it was: this is the check); it needs
``:scheme``, ``:path`` and ``:authority``, and only ``websocket`` is served
(another protocol is 501).  A plain CONNECT is 501, as on HTTP/1.1.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

import attrs

from clbproxy.http.parse_rules import URI_CHARACTERS, Refused
from clbproxy.http.server import HTTPLimits, valid_authority

#: Header names: lower-case tokens (RFC 9113 8.2.1 forbids upper case).
_NAME = re.compile(rb"\A[!#$%&'*+.^_`|~0-9a-z-]+\Z")
#: Field values must not hold NUL, CR or LF, nor start or end with white space.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_METHOD = re.compile(rb"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")

#: Connection-specific fields HTTP/2 forbids (RFC 9113 8.2.2); ``te`` is checked apart.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})

#: HPACK's per-field overhead in a header list's size (RFC 7541 4.1, RFC 9113 6.5.2).
FIELD_OVERHEAD = 32


class Malformed(Exception):
    """The request breaks HTTP/2's message rules: its stream is reset (``PROTOCOL_ERROR``)."""


@attrs.frozen
class RequestHead:
    """A checked request: its pseudo-headers and its regular fields, in order.

    ``fields`` has the ``host`` the request is routed by (``:authority``,
    RFC 9113 8.3.1) and its cookies joined into one (RFC 9113 8.2.3), as an
    HTTP/1.1 backend expects them.
    """

    method: bytes
    scheme: bytes
    path: bytes
    fields: Sequence[tuple[bytes, bytes]]
    content_length: Optional[int]
    #: ``:authority`` (or the Host field): the host the request names.
    authority: bytes
    #: ``:protocol`` of an extended CONNECT (RFC 8441), None for any other request.
    protocol: Optional[bytes] = None


def header_list_size(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """A header list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it."""
    return sum(len(name) + len(value) + FIELD_OVERHEAD for name, value in headers)


def read_request(
    headers: Sequence[tuple[bytes, bytes]],
    limits: HTTPLimits,
    end_stream: bool,
    connect_protocol: bool = False,
) -> RequestHead:
    """Check a request's decoded header block; raises :class:`Malformed` or ``Refused``.

    ``connect_protocol``: the connection advertised ``SETTINGS_ENABLE_CONNECT_PROTOCOL``.
    """
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    for name, value in headers:
        if name.startswith(b":"):
            if fields or cookies:
                raise Malformed("a pseudo-header after a regular field")
            if name == b":protocol" and not connect_protocol:
                raise Malformed(":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441)")
            if name not in _PSEUDO and name != b":protocol":
                raise Malformed(f"unknown pseudo-header {name.decode('latin-1')!r}")
            if name in pseudo:
                raise Malformed(f"repeated pseudo-header {name.decode('latin-1')}")
            pseudo[name] = value
            continue
        if not _NAME.match(name):
            raise Malformed("a field name that is not a lower-case token")
        if _BAD_VALUE.search(value):
            raise Malformed(f"field {name.decode('latin-1')} has a forbidden byte or white space")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name.decode('latin-1')} (RFC 9113 8.2.2)")
        if name == b"te" and value.lower() != b"trailers":
            raise Malformed("te other than trailers (RFC 9113 8.2.2)")
        if name == b"cookie":
            cookies.append(value)
        else:
            fields.append((name, value))
    method = pseudo.get(b":method")
    if method is None or not _METHOD.match(method):
        raise Malformed("no valid :method")
    protocol = pseudo.get(b":protocol")
    if protocol is not None:
        _check_extended_connect(method, pseudo, protocol, end_stream)
    elif method == b"CONNECT":
        raise Refused(501, "CONNECT is not supported: this is a reverse proxy, not a tunnel")
    scheme, path = pseudo.get(b":scheme"), pseudo.get(b":path")
    if not scheme or not path:
        raise Malformed("a request needs :scheme and :path (RFC 9113 8.3.1)")
    if header_list_size(headers) > limits.max_header_size:
        raise Refused(431, "the request headers are too large")
    if len(path) > limits.max_request_line:
        raise Refused(414, "the request target is too long")
    if not URI_CHARACTERS.match(path):
        raise Refused(400, "the request target has a byte not allowed in a URI")
    if b"#" in path:
        raise Refused(400, "a request target has no fragment ('#')")
    if not path.startswith(b"/") and not (path == b"*" and method == b"OPTIONS"):
        raise Refused(400, "the request target is not origin-form (RFC 9113 8.3.1)")
    authority = pseudo.get(b":authority")
    hosts = [value for name, value in fields if name == b"host"]
    if authority is None:
        if len(hosts) != 1:
            raise Refused(400, "a request needs :authority or one Host (RFC 9113 8.3.1)")
        authority = hosts[0]
    elif any(host != authority for host in hosts):
        raise Malformed("Host differs from :authority (RFC 9113 8.3.1)")
    if b"@" in authority or not valid_authority(authority):
        raise Refused(400, ":authority is not a valid host[:port] (RFC 9110 7.2)")
    length = _content_length([value for name, value in fields if name == b"content-length"])
    if length is not None and end_stream and length != 0:
        raise Malformed("content-length without the body it announces (RFC 9113 8.1.1)")
    if length is not None and limits.max_body_size and length > limits.max_body_size:
        raise Refused(413, f"the request body is larger than {limits.max_body_size} bytes")
    out = [(b"host", authority)]
    out.extend((name, value) for name, value in fields if name != b"host")
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    return RequestHead(method, scheme, path, tuple(out), length, authority, protocol)


def _check_extended_connect(
    method: bytes, pseudo: dict[bytes, bytes], protocol: bytes, end_stream: bool
) -> None:
    """RFC 8441 4: ``:protocol`` only on a CONNECT with every pseudo-header; only websocket."""
    if method != b"CONNECT":
        raise Malformed(":protocol on a request that is not CONNECT (RFC 8441 4)")
    if b":authority" not in pseudo:
        raise Malformed("an extended CONNECT needs :authority (RFC 8441 4)")
    if protocol != b"websocket":
        shown = protocol.decode("latin-1")
        raise Refused(501, f"extended CONNECT for {shown!r}: only websocket is served")
    if end_stream:
        raise Refused(400, "an extended CONNECT whose stream is already ended carries nothing")


def _content_length(values: Sequence[bytes]) -> Optional[int]:
    if not values:
        return None
    if any(not value.isdigit() for value in values) or len(set(values)) > 1:
        raise Malformed("an invalid or repeated content-length")
    return int(values[0])


def read_trailers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A request's trailer fields, checked as fields; raises :class:`Malformed`."""
    for name, value in headers:
        if name.startswith(b":"):
            raise Malformed("a pseudo-header in trailers (RFC 9113 8.1)")
        if not _NAME.match(name) or _BAD_VALUE.search(value):
            raise Malformed("a malformed trailer field")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name.decode('latin-1')} in trailers")
    return list(headers)
