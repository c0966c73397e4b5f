"""The headers of a forwarded HTTP exchange, both ways, and the trailers that pass.

:func:`backend_request_headers` builds what a backend receives for a client's
request (hop-by-hop headers dropped, forwarding headers added, the rule's
header changes applied, ``TE``/``Trailer`` passed on when trailers can flow);
:func:`copy_response_headers` puts a backend's status and end-to-end headers on
the client's response.  Both follow the same hop-by-hop and trailer rules,
which is why they live together, apart from the exchange that calls them
(:mod:`clbproxy.http.forwarder`).  The WebSocket handshake stage adds the same
``Via`` (:data:`VIA`).
"""

from __future__ import annotations

import functools
from typing import Iterable, List, Optional, Sequence

from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from twisted.web.server import Request

from clbproxy.config import RuleConfig
from clbproxy.http.forwarded import (
    FORWARDING_HEADERS,
    TrustedProxies,
    client_header_passes,
    forwarded_headers,
    hop_by_hop_names,
    is_hop_by_hop,
    untrusted_headers,
)
from clbproxy.http.server import RequestBody
from clbproxy.http.tracecontext import NO_TRACE, TRACEPARENT, TRACESTATE, TraceContext
from clbproxy.http.trailers import (
    FORBIDDEN,
    accepts_trailers,
    response_connection,
)
from clbproxy.net.certificates import client_certificate_headers
from clbproxy.routing.actions import header_changes

#: Client request headers never copied to the backend request: the framing is
#: rebuilt by the Agent for the streamed body (its length, or chunked), and
#: ``100-continue`` is the proxy's own to answer (see
#: :class:`clbproxy.http.server.ProxyChannel`).
_REQUEST_ONLY_HEADERS = frozenset({"content-length", "expect"})

#: The ``Via`` header value of a listener with ``via = true``.
VIA = b"1.1 clbproxy"

#: Response statuses that never carry a body.
_BODYLESS_STATUSES = frozenset({204, 304})


def _texts(values: Optional[Sequence[bytes]]) -> List[str]:
    return [value.decode("latin-1") for value in values or ()]


def _last(headers: Headers, name: bytes) -> Optional[str]:
    values = headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else None


def _dropped(name: bytes, hop: frozenset[str]) -> bool:
    return is_hop_by_hop(name.decode("latin-1"), hop)


def response_hop_by_hop(response: IResponse) -> frozenset[str]:
    """The hop-by-hop header names of a backend response, with those its ``Connection`` names."""
    connection = response_connection(response) + list(
        response.headers.getRawHeaders(b"connection", ())
    )
    return hop_by_hop_names(_texts(connection))


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


def backend_request_headers(
    request: Request,
    *,
    scheme: str,
    trusted: TrustedProxies,
    rule: Optional[RuleConfig] = None,
    via: bool = False,
    underscores: bool = False,
    request_id: Optional[tuple[bytes, str]] = None,
    trace: TraceContext = NO_TRACE,
) -> Headers:
    """The headers a backend receives for ``request``.

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
    """
    client = request.requestHeaders
    drop, add = header_changes(rule, [])
    peer = getattr(request.getClientAddress(), "host", None) or "unknown"
    if request_id is not None or trace.replaced is not None:
        # The proxy's own headers: no client spelling of them passes (X_Request_Id).
        drop = drop | proxy_named(request_id[0].decode("latin-1") if request_id else None, trace)
    skip = (
        hop_by_hop_names(_texts(client.getRawHeaders(b"connection")))
        | FORWARDING_HEADERS
        | _REQUEST_ONLY_HEADERS
        | untrusted_headers(peer, trusted)
        | drop
    )
    headers = Headers()
    if request.clientproto == b"HTTP/1.1" and accepts_trailers(client.getRawHeaders(b"te", ())):
        headers.setRawHeaders(b"TE", [b"trailers"])
    body = getattr(request, "body", None)
    if isinstance(body, RequestBody) and body.length is UNKNOWN_LENGTH:
        announced = _trailer_names(client.getRawHeaders(b"trailer"), skip)
        if announced is not None:
            headers.setRawHeaders(b"Trailer", [announced])
    for name, values in client.getAllRawHeaders():
        if client_header_passes(name.decode("latin-1"), skip, underscores=underscores, ours=drop):
            headers.setRawHeaders(name, list(values))
    for name, value in client_certificate_headers(request.channel.transport):
        headers.addRawHeader(name.encode("latin-1"), value.encode("utf-8"))
    for name, value in forwarded_headers(
        peer_ip=peer,
        scheme=scheme,
        host=_last(client, b"host"),
        forwarded_for=_texts(client.getRawHeaders(b"x-forwarded-for")),
        forwarded_proto=_last(client, b"x-forwarded-proto"),
        forwarded_host=_last(client, b"x-forwarded-host"),
        trusted=trusted,
        port=getattr(request.getHost(), "port", None),
    ):
        headers.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
    if request_id is not None:
        headers.setRawHeaders(request_id[0], [request_id[1].encode("ascii")])
    if trace.replaced is not None:
        headers.setRawHeaders(b"traceparent", [trace.replaced.encode("ascii")])
    for name, value in add:
        headers.setRawHeaders(name.encode("latin-1"), [value.encode("latin-1")])
    if via:
        headers.addRawHeader(b"Via", VIA)
    return headers


def response_carries_trailers(response: IResponse, request: Request) -> bool:
    """True when the client's response will be chunked, so it can end with trailers.

    twisted.web chunks a response to an HTTP/1.1 client that has a body and no
    Content-Length; the forwarder sets Content-Length exactly when the backend
    sent one.
    """
    return (
        request.clientproto == b"HTTP/1.1"
        and request.method != b"HEAD"
        and response.code not in _BODYLESS_STATUSES
        and response.length is UNKNOWN_LENGTH
    )


def copy_response_headers(response: IResponse, request: Request) -> None:
    """Put the backend's status and end-to-end headers on the client's response.

    twisted.web frames the client's response itself: a backend Content-Length
    is set explicitly (so it is not chunked), otherwise HTTP/1.1 clients get
    chunked encoding.  The backend's ``Trailer`` header is kept (without the
    names never forwarded) only when that chunked response can carry trailers.
    Hop-by-hop headers never reach the client: those the backend's
    ``Connection`` names (read from the connection headers
    :class:`clbproxy.http.trailers.TrailerClientProtocol` keeps, as Twisted's client
    leaves ``Connection`` out of ``response.headers``), ``Keep-Alive``, ``TE``,
    ``Trailer``, ``Upgrade``, ``Transfer-Encoding``, ``Proxy-*``; the body length
    comes from ``response.length``.
    """
    request.setResponseCode(response.code, response.phrase)
    request.defaultContentType = None
    # The backend's own Server header, or none: not the proxy's.
    request.responseHeaders.removeHeader(b"server")
    backend = response.headers
    hop = response_hop_by_hop(response)
    for name, values in backend.getAllRawHeaders():
        if name.lower() == b"content-length" or _dropped(name, hop):
            continue
        request.responseHeaders.setRawHeaders(name, list(values))
    if request.method == b"HEAD":
        length = backend.getRawHeaders(b"content-length")
        if length:
            request.responseHeaders.setRawHeaders(b"Content-Length", [length[-1]])
    elif response.code not in _BODYLESS_STATUSES and response.length is not UNKNOWN_LENGTH:
        request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % (response.length,)])
    if response_carries_trailers(response, request):
        announced = _trailer_names(backend.getRawHeaders(b"trailer"), hop)
        if announced is not None:
            request.responseHeaders.setRawHeaders(b"Trailer", [announced])
