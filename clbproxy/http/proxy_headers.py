"""The headers of a forwarded HTTP exchange, both ways, and the trailers that pass.

:func:`backend_request_fields` builds the fields a backend receives for a
client's request (hop-by-hop headers dropped, forwarding headers added, the
rule's header changes applied, ``TE``/``Trailer`` passed on when trailers can
flow) and :func:`request_head` the bytes of the head, as plain ``(name,
values)`` data, no twisted ``Headers`` on the way; :func:`copy_response_headers`
puts a backend's status and end-to-end headers (a
:class:`~clbproxy.http.response_head.ResponseHead`) on the client's response.  Both
follow the same hop-by-hop and trailer rules, which is why they live together,
apart from the exchange that calls them (:mod:`clbproxy.http.forwarder`).  The
WebSocket handshake stage adds the same ``Via`` (:data:`VIA`).
"""

from __future__ import annotations

import functools
import operator
from itertools import compress
from typing import Dict, Iterable, List, Optional, Sequence, Union

from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import Request

from clbproxy.config import RuleConfig
from clbproxy.http.field_headers import FieldHeaders, field_key
from clbproxy.http.forwarded import (
    FORWARDING_HEADERS,
    TrustedProxies,
    client_header_passes,
    forwarded_headers,
    hop_by_hop_names,
    untrusted_headers,
)
from clbproxy.http.parsing import ResponseHead
from clbproxy.http.tracecontext import NO_TRACE, TRACEPARENT, TRACESTATE, TraceContext
from clbproxy.http.trailers import FORBIDDEN, accepts_trailers
from clbproxy.net.certificates import client_certificate_headers
from clbproxy.routing.actions import header_changes
from clbproxy.util.octets import CR, LF

#: Client request headers never copied to the backend request: the framing is
#: rebuilt by :func:`request_head` for the streamed body (its length, or chunked), and
#: ``100-continue`` is the proxy's own to answer (see
#: :class:`clbproxy.listener.connection.ListenerConnection`).
_REQUEST_ONLY_HEADERS = frozenset({"content-length", "expect"})

#: Client request headers that never reach a backend, whatever the request.
_ALWAYS_SKIPPED = hop_by_hop_names(()) | FORWARDING_HEADERS | _REQUEST_ONLY_HEADERS

#: The ``Via`` header value of a listener with ``via = true``.
VIA = b"1.1 clbproxy"

#: Response statuses that never carry a body.
_BODYLESS_STATUSES = frozenset({204, 304})

#: Client protocols whose responses can end with trailers: HTTP/1.1 (chunked) and
#: HTTP/2 (a last HEADERS frame, whatever the length).
_TRAILER_PROTOCOLS = (b"HTTP/1.1", b"HTTP/2.0")


#: A pair's first item, for ``map``: read in C, not a bytecode a field.
_first = operator.itemgetter(0)


def _texts(values: Optional[Sequence[bytes]]) -> List[str]:
    return [value.decode("latin-1") for value in values or ()]


#: A response's hop-by-hop names when it has no ``Connection`` header, as text and as bytes.
_DEFAULT_HOP = hop_by_hop_names(())
_DEFAULT_HOP_BYTES = frozenset(name.encode("latin-1") for name in _DEFAULT_HOP)

#: Response header names never copied whatever the ``Connection`` header names: the
#: default hop-by-hop names, ``Trailers``, ``Proxy`` (``Proxy-*`` too) and
#: ``Content-Length`` (set from the response's framing).  One set lookup per header.
_NEVER_COPIED = _DEFAULT_HOP_BYTES | {b"content-length", b"trailers", b"proxy"}


@functools.lru_cache(maxsize=256)
def _response_hop(
    connection: tuple[bytes, ...],
) -> tuple[frozenset[str], Optional[frozenset[bytes]]]:
    """The hop-by-hop names of a response with these ``Connection`` values, text and bytes.

    The bytes are None when the values name no more than the default names.
    Cached: a backend sends the same one or two values (``keep-alive``) every time.
    """
    hop = hop_by_hop_names([value.decode("latin-1") for value in connection])
    dropped = frozenset(token.encode("latin-1") for token in hop)
    return hop, None if len(dropped) == len(_DEFAULT_HOP_BYTES) else dropped


def response_hop_by_hop(head: ResponseHead) -> frozenset[str]:
    """The hop-by-hop header names of a backend response, with those its ``Connection`` names."""
    return hop_by_hop_names(
        [value.decode("latin-1") for name, value in head.headers if name.lower() == b"connection"]
    )


def _trailer_names(values: Optional[Sequence[bytes]], drop: Iterable[str]) -> Optional[bytes]:
    """A ``Trailer`` header value without the names that are never forwarded, else None."""
    skip = FORBIDDEN | frozenset(drop)
    names = [
        token.strip()
        for value in values or ()
        for token in value.split(b",")
        if token.strip() and token.strip().decode("latin-1").lower() not in skip
    ]
    return b", ".join(names) if names else None


def proxy_named(id_header: Optional[str], trace: TraceContext = NO_TRACE) -> frozenset[str]:
    """Lower-case names of the client headers the proxy replaces with its own.

    The request-ID header (``id_header``, None when IDs are off) and, when the
    proxy made a new trace context, ``traceparent`` and ``tracestate``.
    """
    return _proxy_named(id_header, trace.replaced is not None)


@functools.lru_cache(maxsize=64)
def _proxy_named(id_header: Optional[str], replaced: bool) -> frozenset[str]:
    # One set per listener's header name, not one per request (asked twice per upgrade).
    names = {id_header.lower()} if id_header else set()
    if replaced:
        names |= {TRACEPARENT, TRACESTATE}
    return frozenset(names)


def request_trailer_drop(
    request: Request, rule: Optional[RuleConfig] = None, own: frozenset[str] = frozenset()
) -> frozenset[str]:
    """Lower-case names never forwarded among ``request``'s trailers, besides ``FORBIDDEN``.

    The headers the proxy drops or sets for the backend (hop-by-hop, those the
    client's ``Connection`` names, the rule's removed and set headers) must not
    come back as trailers; nor must those the proxy sets itself (``own``, see
    :func:`proxy_named`).
    """
    drop, _ = header_changes(rule, [])
    connection = _texts(request.requestHeaders.getRawHeaders(b"connection"))
    return frozenset(hop_by_hop_names(connection) | FORWARDING_HEADERS | drop | own)


def canonical_name(name: Union[str, bytes]) -> bytes:
    """``name`` in the capitalization backends have always received it in (``X-Real-Ip``).

    The spelling of twisted.web's ``Headers`` (the backend client used to
    send every request header through one): each ``-``-separated word
    capitalized, a few conventional exceptions (``TE``, ``ETag``, ``DNT``...).
    """
    known = _CANONICAL.get(name)
    if known is not None:
        return known
    raw = name.encode("latin-1") if isinstance(name, str) else name
    spelled = b"-".join([word.capitalize() for word in raw.split(b"-")])
    spelled = _CASE_EXCEPTIONS.get(spelled, spelled)
    if len(_CANONICAL) < _MAX_CANONICAL:  # names are the client's: bound the cache
        _CANONICAL[name] = spelled
    return spelled


_CASE_EXCEPTIONS = {
    b"Content-Md5": b"Content-MD5",
    b"Dnt": b"DNT",
    b"Etag": b"ETag",
    b"P3p": b"P3P",
    b"Te": b"TE",
    b"Www-Authenticate": b"WWW-Authenticate",
    b"X-Xss-Protection": b"X-XSS-Protection",
}
_CANONICAL: Dict[Union[str, bytes], bytes] = {}
_MAX_CANONICAL = 10_000

_X_FORWARDED_FOR = canonical_name("X-Forwarded-For")
_X_FORWARDED_PROTO = canonical_name("X-Forwarded-Proto")
_X_FORWARDED_HOST = canonical_name("X-Forwarded-Host")
_X_FORWARDED_PORT = canonical_name("X-Forwarded-Port")
_X_REAL_IP = canonical_name("X-Real-IP")


def _one_line(value: bytes) -> bytes:
    """A field value with any line break replaced by a space (never a header injection)."""
    if CR in value or LF in value:
        return b" ".join(value.splitlines())
    return value


#: A request's fields for the backend, by canonical name in first-set order:
#: setting a name again replaces its values in place, adding appends to them.
Fields = Dict[bytes, List[bytes]]


def backend_request_fields(
    request: Request,
    *,
    scheme: str,
    trusted: TrustedProxies,
    rule: Optional[RuleConfig] = None,
    via: bool = False,
    underscores: bool = False,
    request_id: Optional[tuple[bytes, str]] = None,
    trace: TraceContext = NO_TRACE,
) -> Fields:
    """The header fields a backend receives for ``request`` (framing and Host aside).

    End-to-end headers are copied with duplicates and the client's Host kept;
    hop-by-hop headers (and those ``Connection`` names), client-sent
    forwarding headers, an untrusted peer's ``Forwarded`` and names with an
    underscore (see :func:`clbproxy.http.forwarded.client_header_passes`;
    ``underscores`` is the listener's ``underscores_in_headers``) are dropped,
    then the proxy's forwarding headers added
    (X-Forwarded-Port is the listener's port), then the rule's header changes
    applied, then ``Via`` when asked for.

    Trailers: an HTTP/1.1 client's ``TE: trailers`` is passed on as
    ``TE: trailers`` (the proxy relays response trailers to it, so the promise
    holds for the whole chain, as Envoy does); the client's ``Trailer`` header is
    passed on, without the names never forwarded, when its body is chunked.

    The request's ID (``request_id``: the header's name and the ID) replaces
    the client's, before the rule's changes; with a ``trace`` the proxy
    replaced (:mod:`clbproxy.http.tracecontext`), the client's ``traceparent``
    and ``tracestate`` give way to the new ``traceparent``.

    :func:`request_head` turns the fields into the bytes sent.
    """
    client = request.requestHeaders
    # The client's fields by canonical name, read once: the few the proxy needs are
    # dict lookups, the rest one walk (a listener's request: its parsed fields as kept).
    raw = client.grouped() if type(client) is FieldHeaders else dict(client.getAllRawHeaders())
    peer = getattr(request.getClientAddress(), "host", None) or "unknown"
    believed = peer in trusted if trusted.networks else False  # none trusted: no call
    key = (
        id(rule),
        believed,
        None if request_id is None else request_id[0],
        trace.replaced is not None,
        underscores,
    )
    path = _PATHS.get(key)
    if path is None or path[0] is not rule:
        compiled = _rule_headers(rule)
        path = (rule, compiled.add, *compiled.paths(*key[1:4], peer, trusted, underscores))
        if len(_PATHS) >= _MAX_RULES:
            _PATHS.clear()
        _PATHS[key] = path
    _, add, skip, drop, id_name, names = path
    fields: Fields = {}
    if _READ_FIELDS.isdisjoint(raw):  # most requests: none of them to read
        claimed = None
    else:
        connection = raw.get(b"Connection")
        if connection:
            named = _request_hop(tuple(connection))
            if not named <= skip:
                skip = skip | named
                names = {}  # the verdicts below are for this request only
        if request.clientproto in _TRAILER_PROTOCOLS:
            te = raw.get(b"TE")
            if te and accepts_trailers(te):
                fields[b"TE"] = [b"trailers"]
        claimed = raw.get(b"X-Forwarded-For")
    if getattr(getattr(request, "body", None), "length", None) is UNKNOWN_LENGTH:
        announced = _trailer_names(raw.get(b"Trailer"), skip)
        if announced is not None:
            fields[b"Trailer"] = [announced]
    # Each field's name as sent (b"": not sent), then those sent, without a bytecode each.
    sent = [*map(names.get, raw)]
    if None in sent:  # a name not yet seen on this path
        sent = _sent_names(raw, names, skip, drop, underscores)
    fields.update(compress(zip(sent, map(list, raw.values())), sent))
    channel = request.channel
    certificate = getattr(channel, "certificate_headers", None)  # a listener connection's
    if certificate is None:
        certificate = client_certificate_headers(channel.transport)
    for name, value in certificate:
        fields.setdefault(canonical_name(name), []).append(_one_line(value.encode("utf-8")))
    port = getattr(request.getHost(), "port", None)
    host = raw.get(b"Host")
    if believed or claimed:
        proto = raw.get(b"X-Forwarded-Proto")
        forwarded_host = raw.get(b"X-Forwarded-Host")
        for name, value in forwarded_headers(
            peer_ip=peer,
            scheme=scheme,
            host=host[-1].decode("latin-1") if host else None,
            forwarded_for=_texts(claimed),
            forwarded_proto=proto[-1].decode("latin-1") if proto else None,
            forwarded_host=forwarded_host[-1].decode("latin-1") if forwarded_host else None,
            trusted=trusted,
            port=port,
        ):
            # From the client's own field values (no line breaks) and its address.
            fields.setdefault(canonical_name(name), []).append(value.encode("latin-1"))
    else:
        # forwarded_headers' answer for an untrusted peer that sent no chain.  Set, not
        # added to: no client field and no certificate header has these names.
        address = peer.encode("latin-1")
        fields[_X_FORWARDED_FOR] = [address]
        fields[_X_FORWARDED_PROTO] = [scheme.encode("latin-1")]
        if host and host[-1]:
            fields[_X_FORWARDED_HOST] = [host[-1]]
        if port is not None:
            fields[_X_FORWARDED_PORT] = [b"%d" % (port,)]
        fields[_X_REAL_IP] = [address]
    if request_id is not None:
        fields[id_name] = [request_id[1].encode()]  # ASCII: UTF-8's fast path
    if trace.replaced is not None:
        fields[b"Traceparent"] = [trace.replaced.encode("ascii")]
    for name, value in add:
        fields[name] = [value]
    if via:
        fields.setdefault(b"Via", []).append(VIA)
    return fields


#: The client fields :func:`backend_request_fields` reads besides Host (and Trailer,
#: read only for a chunked body), by canonical name.
_READ_FIELDS = frozenset((b"Connection", b"TE", b"X-Forwarded-For"))


def _sent_names(
    raw: Fields,
    names: Dict[bytes, bytes],
    skip: frozenset[str],
    drop: frozenset[str],
    underscores: bool,
) -> List[bytes]:
    """The name each of ``raw``'s fields is sent under (:func:`_sent_name`), remembered."""
    sent = []
    for name in raw:
        known = names.get(name)
        if known is None:
            known = _sent_name(name, skip, drop, underscores)
            if len(names) < _MAX_NAMES:
                names[name] = known
        sent.append(known)
    return sent


def _sent_name(name: bytes, skip: frozenset[str], drop: frozenset[str], underscores: bool) -> bytes:
    """The name a client's field is sent to the backend under, b"" when it is not sent."""
    text = name.decode("latin-1")
    lower = text.lower()
    if lower in skip or lower == "proxy" or lower.startswith("proxy-"):
        return b""  # hop-by-hop (client_header_passes' first rule, inline: every header)
    if "_" in text and not client_header_passes(text, skip, underscores=underscores, ours=drop):
        return b""
    return _CANONICAL.get(name) or canonical_name(name)


#: Verdicts kept per rule and path (:meth:`_RuleHeaders.paths`); names are the client's.
_MAX_NAMES = 1024


@functools.lru_cache(maxsize=256)
def _request_hop(connection: tuple[bytes, ...]) -> frozenset[str]:
    """The hop-by-hop names of a request with these ``Connection`` values (cached: few kinds)."""
    return hop_by_hop_names(_texts(connection))


class _RuleHeaders:
    """A rule's header changes as the forwarder applies them, worked out once per rule.

    ``drop``: lower-case names the rule removes or sets; ``add``: the
    ``(canonical name, value)`` pairs it sets, as sent; :meth:`paths` the client
    headers never copied, by whether the peer is trusted and which of the
    proxy's own headers it replaces.
    """

    __slots__ = ("rule", "drop", "add", "_paths")

    def __init__(self, rule: Optional[RuleConfig]) -> None:
        self.rule = rule
        drop, add = header_changes(rule, [])
        self.drop = frozenset(drop)
        self.add = tuple(
            (canonical_name(name), _one_line(value.encode("latin-1"))) for name, value in add
        )
        self._paths: Dict[tuple, tuple] = {}

    def paths(
        self,
        believed: bool,
        id_header: Optional[bytes],
        replaced: bool,
        peer: str,
        trusted: TrustedProxies,
        underscores: bool = False,
    ) -> tuple[frozenset[str], frozenset[str], Optional[bytes], Dict[bytes, bytes]]:
        """``(skip, drop, id_name, names)`` for a request from a ``believed`` peer or not.

        ``skip``: the client headers never copied; ``drop``: the rule's names
        and the proxy's own (:func:`proxy_named`: the request-ID header
        ``id_header``, None when IDs are off, and the trace headers when the
        trace context was ``replaced``), whose client spellings never pass;
        ``id_name``: the ID header as the backend receives it; ``names``: the
        name each client field name is sent under (b"": not sent), filled as
        requests come (``underscores``: the listener's ``underscores_in_headers``).
        Worked out once per combination (a few per rule), not per request.
        """
        key = (believed, id_header, replaced, underscores)
        known = self._paths.get(key)
        if known is not None:
            return known
        own = _proxy_named(None if id_header is None else id_header.decode("latin-1"), replaced)
        skip = _ALWAYS_SKIPPED | untrusted_headers(peer, trusted) | self.drop | own
        known = (
            skip,
            self.drop | own if own else self.drop,
            None if id_header is None else canonical_name(id_header),
            {},
        )
        if len(self._paths) < 16:
            self._paths[key] = known
        return known


#: Compiled header changes by ``id(rule)`` (the rule is kept in the entry, so the
#: id stays its own); rules are few and come from the configuration.
_RULES: Dict[int, _RuleHeaders] = {}
#: ``(rule, add, skip, drop, id_name, names)`` by ``(id(rule), believed, ID header,
#: trace replaced, underscores)``: a request's path through a rule in one lookup.
_PATHS: Dict[tuple, tuple] = {}
_MAX_RULES = 4096


def _rule_headers(rule: Optional[RuleConfig]) -> _RuleHeaders:
    compiled = _RULES.get(id(rule))
    if compiled is None or compiled.rule is not rule:
        compiled = _RuleHeaders(rule)
        if len(_RULES) >= _MAX_RULES:
            _RULES.clear()  # reloads made this many: start again
        _RULES[id(rule)] = compiled
    return compiled


def backend_host(backend_host: str, port: int, tls: bool) -> bytes:
    """The ``Host`` a backend is sent when the client sent none (HTTP/1.0): its address."""
    host = f"[{backend_host}]" if ":" in backend_host else backend_host
    if port == (443 if tls else 80):
        return host.encode("ascii")
    return b"%s:%d" % (host.encode("ascii"), port)


#: The lengths of the fields' value lists when each has one value (:func:`request_head`).
_ONE = {1}


def request_head(
    method: bytes,
    target: bytes,
    fields: Fields,
    framing: Optional[bytes],
    *,
    persistent: bool,
    host: Optional[bytes],
) -> bytes:
    """The complete request head a backend receives, as one ``bytes``.

    The request line (always HTTP/1.1), ``Connection: close`` when the
    backend connection is not kept, the body's framing line (``framing``,
    e.g. ``b"Content-Length: 5"``; ``Content-Length: 0`` for a PUT or POST
    without a body, as RFC 9110 8.6 advises), the ``fields`` in order, and
    ``host`` last (given when the fields hold no Host: the client sent none).
    The order and spelling are those of the Twisted client this replaced, so a
    backend sees the same bytes.
    """
    # Pieces joined once: a field's line makes no bytes of its own.
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    if not persistent:
        lines.append(b"Connection: close\r\n")
    if framing is not None:
        lines += (framing, b"\r\n")
    elif method in (b"PUT", b"POST"):
        lines.append(b"Content-Length: 0\r\n")
    values = fields.values()
    if {*map(len, values)} == _ONE:  # a value per field (nearly always): joined in C
        lines += (b"\r\n".join(map(b": ".join, zip(fields, map(_first, values)))), b"\r\n")
    else:
        for name, several in fields.items():
            for value in several:
                lines += (name, b": ", value, b"\r\n")
    if host is not None:
        lines += (b"Host: ", host, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def response_carries_trailers(head: ResponseHead, request: Request) -> bool:
    """True when the client's response can end with trailers.

    twisted.web chunks a response to an HTTP/1.1 client that has a body and no
    Content-Length (the forwarder sets Content-Length exactly when the backend
    sent one); an HTTP/2 response ends with them in a last HEADERS frame.
    """
    if request.method == b"HEAD" or head.status in _BODYLESS_STATUSES:
        return False
    if request.clientproto == b"HTTP/2.0":
        return True
    return request.clientproto == b"HTTP/1.1" and head.content_length is None


def never_copied(id_header: bytes) -> frozenset[bytes]:
    """Lower-case names of a backend response's headers never copied to the client.

    Those of :func:`copy_response_headers`'s default (``never``) and the
    request-ID header ``id_header`` (b"": IDs off): the client's response
    already holds the request's own ID, which the backend's would replace.
    """
    return _NEVER_COPIED | {id_header.lower()} if id_header else _NEVER_COPIED


def copy_response_headers(
    head: ResponseHead,
    request: Request,
    never: frozenset[bytes] = _NEVER_COPIED,
    added: Sequence[tuple[Union[str, bytes], Union[str, bytes]]] = (),
) -> frozenset[str]:
    """Put the backend's status and end-to-end headers on the client's response.

    Returns the response's hop-by-hop names (for its trailers).  twisted.web
    frames the client's response itself: a backend Content-Length is set
    explicitly (so it is not chunked), otherwise HTTP/1.1 clients get chunked
    encoding.  The backend's ``Trailer`` header is kept (without the names
    never forwarded) only when that chunked response can carry trailers.
    Hop-by-hop headers never reach the client: those the backend's
    ``Connection`` names, ``Keep-Alive``, ``TE``, ``Trailer``, ``Upgrade``,
    ``Transfer-Encoding``, ``Proxy-*``; the body length comes from the
    response's framing.  Nor do the names in ``never`` beyond those
    (:func:`never_copied`: the request-ID header).  A name the backend repeats
    keeps all its values, in order.  ``added`` (name, value) are added last,
    as ``addRawHeader`` adds them (the persistence cookie, ``Via``).

    The request's ``responseHeaders`` becomes a new object and the one it
    held is left as it was: the forwarder keeps it, should a 502 page replace
    the backend's answer before its body, at no cost per response.
    """
    request.setResponseCode(head.status, head.reason)
    request.defaultContentType = None
    hop = _DEFAULT_HOP
    names = _COPIED.get(never)
    if names is None:
        names = _copied_names(never)
    known = names.get
    grouped: Dict[bytes, List[bytes]] = {}
    for name, value in head.headers:
        key = known(name)
        if key is None:
            key = _copied_key(names, never, name)
        if not key:
            continue
        # No value to fold: a ResponseHead's hold no CR or LF (its parser refuses them).
        grouped.setdefault(key, []).append(value)
    lengths = grouped.pop(_LENGTHS, None)
    announced = grouped.pop(_ANNOUNCED, None)
    connection = grouped.pop(_CONNECTION, None)
    if connection:
        hop, dropped = _response_hop(tuple(connection))
        if dropped is not None:  # it names more than the default
            for key in [key for key in grouped if key.lower() in dropped]:
                del grouped[key]
    # Set after the backend's, as setRawHeaders would set them one by one.
    if request.method == b"HEAD":
        if lengths:
            grouped[b"Content-Length"] = [lengths[-1]]
    elif head.status not in _BODYLESS_STATUSES and head.content_length is not None:
        grouped[b"Content-Length"] = [b"%d" % (head.content_length,)]
    if announced and response_carries_trailers(head, request):
        trailer = _trailer_names(announced, hop)
        if trailer is not None:
            grouped[b"Trailer"] = [trailer]
    headers = request.responseHeaders
    # The backend's own Server header, or none: not the proxy's.
    if type(headers) is FieldHeaders:
        headers = headers.with_fields(b"Server", grouped)
        for name, value in added:
            headers.add_apart(name, value)
    else:
        headers = headers.copy()
        headers.removeHeader(b"server")
        for key, values in grouped.items():
            headers.setRawHeaders(key, values)
        for name, value in added:
            headers.addRawHeader(name, value)
    request.responseHeaders = headers
    return hop


#: For each ``never`` set: the backend's field names as received to the key
#: they are copied under (:func:`~clbproxy.http.field_headers.field_key`), or
#: b"" for a name not copied; one lookup per field.  Bounded, as the names
#: are the backends' to choose; a listener has one ``never`` set.
_COPIED: Dict[frozenset[bytes], Dict[bytes, bytes]] = {}
_MAX_NEVER_SETS = 64
_MAX_COPIED_NAMES = 10_000


def _copied_names(never: frozenset[bytes]) -> Dict[bytes, bytes]:
    if len(_COPIED) >= _MAX_NEVER_SETS:
        _COPIED.clear()
    names = _COPIED[never] = {}
    return names


#: The keys under which the loop of :func:`copy_response_headers` gathers the
#: values of the fields it reads but does not copy (no field name holds a colon).
_LENGTHS, _ANNOUNCED, _CONNECTION = b":content-length", b":trailer", b":connection"
_GATHERED = frozenset((_LENGTHS, _ANNOUNCED, _CONNECTION))


def _copied_key(names: Dict[bytes, bytes], never: frozenset[bytes], name: bytes) -> bytes:
    """The key a backend's field ``name`` is copied under, or gathered under (remembered).

    b"": neither (the field is dropped).
    """
    lower = name.lower()
    if lower in never:
        key = b":" + lower if b":" + lower in _GATHERED else b""
    elif lower.startswith(b"proxy-"):
        key = b""  # hop-by-hop (is_hop_by_hop, on the names' bytes: they are tokens)
    else:
        key = field_key(name)
    if len(names) < _MAX_COPIED_NAMES:
        names[name] = key
    return key
