"""The headers a backend receives about the client: one function for WebSocket and HTTP.

Like nginx's ``$proxy_add_x_forwarded_for`` and AWS ALB, the direct peer is always
appended to ``X-Forwarded-For``.  Who the real client is (``X-Real-IP``) depends
on trust: when the peer is a trusted proxy (a listener's ``trusted_proxies``), the
real client is the right-most address in the chain that is not itself trusted
(nginx's ``real_ip_recursive``); otherwise it is the peer, whatever the client
claims.  ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` from an untrusted peer are
replaced, never passed on, and its ``Forwarded`` header (RFC 7239) is dropped: the
proxy does not write one, so a trusted peer's is passed on as it came.

Which client headers reach a backend at all is decided here too
(:func:`client_header_passes`), for both paths, so that the two cannot differ on
what a backend may believe.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional, Sequence

import attrs

#: Headers that describe one hop and never cross the proxy (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: Headers the proxy computes itself; client-sent copies are dropped.  This is
#: the one list of "our" request headers: their underscore spellings are dropped
#: too (:func:`client_header_passes`).
FORWARDING_HEADERS = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "x-client-cert-subject",
        "x-client-cert-fingerprint",
    }
)

#: End-to-end headers the proxy relies on (routing, framing, what backends are
#: told about the client): a ``Connection`` header cannot nominate them as
#: hop-by-hop, so ``Connection: Host`` does not make a backend see its own address.
NOT_NOMINABLE = frozenset({"host", "content-length", "forwarded", *FORWARDING_HEADERS})


def hop_by_hop_names(connection_values: Iterable[str]) -> frozenset[str]:
    """Every hop-by-hop header name, including those a ``Connection`` header lists.

    Names in :data:`NOT_NOMINABLE` listed by ``Connection`` are not taken.
    Remembered for a few short values (``Upgrade``, ``keep-alive``: nearly every
    request's), bounded in entries and in characters, as the values are the
    clients' to choose.
    """
    values = tuple(connection_values)
    known = _HOP_NAMES.get(values)
    if known is None:
        known = _hop_by_hop_names(values)
        if len(values) <= 4 and sum(map(len, values)) <= _MAX_HOP_CHARS:
            if len(_HOP_NAMES) >= _MAX_HOP_NAMES:
                _HOP_NAMES.clear()
            _HOP_NAMES[values] = known
    return known


#: :func:`hop_by_hop_names`' answers by ``Connection`` values (few, each short).
_HOP_NAMES: dict[tuple[str, ...], frozenset[str]] = {}
_MAX_HOP_NAMES = 256
_MAX_HOP_CHARS = 256


def _hop_by_hop_names(connection_values: tuple[str, ...]) -> frozenset[str]:
    named = {
        token.strip().lower()
        for value in connection_values
        for token in value.split(",")
        if token.strip()
    }
    return HOP_BY_HOP | (named - NOT_NOMINABLE)


def cgi_name(name: str) -> str:
    """``name`` as CGI, WSGI and Rack backends see it: ``X_Real_IP`` and
    ``x-real-ip`` both become ``HTTP_X_REAL_IP``; compared here as ``x-real-ip``."""
    return name.lower().replace("_", "-")


def client_header_passes(
    name: str,
    skip: frozenset[str],
    *,
    underscores: bool = False,
    ours: Iterable[str] = (),
) -> bool:
    """Whether a client's request header ``name`` may be copied to the backend request.

    Not when it is hop-by-hop (:func:`is_hop_by_hop`; ``skip`` holds the
    lower-case names dropped on this path, :func:`hop_by_hop_names` among them),
    and not when its name has an underscore, unless the listener allows those
    (``underscores_in_headers``, nginx's directive of the same name and
    default).  A name that spells one of the proxy's own headers with
    underscores (``X_Real_IP``, ``x-client_cert-subject``) never passes:
    :data:`FORWARDING_HEADERS` and ``ours`` (the names the rule sets or removes).
    """
    if is_hop_by_hop(name, skip):
        return False
    if "_" not in name:
        return True
    if not underscores:
        return False
    key = cgi_name(name)
    return key not in FORWARDING_HEADERS and key not in {cgi_name(own) for own in ours}


#: Client headers believed only from a trusted peer, besides X-Forwarded-* (which
#: the proxy always rewrites).
_UNTRUSTED_ONLY = frozenset({"forwarded"})


def untrusted_headers(peer_ip: str, trusted: TrustedProxies) -> frozenset[str]:
    """Client headers dropped because the peer is not trusted: ``Forwarded`` (RFC 7239).

    Like ``X-Forwarded-Proto``/``-Host``, a ``Forwarded`` header is believed
    only from a peer in ``trusted_proxies``; the proxy writes none itself.
    """
    return frozenset() if trusted.networks and peer_ip in trusted else _UNTRUSTED_ONLY


def is_hop_by_hop(name: str, hop: frozenset[str]) -> bool:
    """Whether a header never crosses the proxy: in ``hop`` (:func:`hop_by_hop_names`),
    ``Proxy`` (httpoxy: CGI backends would read it as their HTTP_PROXY) or ``Proxy-*``."""
    lower = name.lower()
    return lower in hop or lower == "proxy" or lower.startswith("proxy-")


@attrs.frozen
class TrustedProxies:
    """Networks whose forwarding headers are believed."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> TrustedProxies:
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def __contains__(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def _split_list(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _real_ip(peer_ip: str, chain: Sequence[str], trusted: TrustedProxies) -> str:
    if peer_ip not in trusted:
        return peer_ip
    real_ip = peer_ip
    for address in reversed(chain):
        real_ip = address
        if address not in trusted:
            break
    return real_ip


def real_client_ip(
    peer_ip: str, forwarded_for: Sequence[str] = (), trusted: TrustedProxies = TrustedProxies()
) -> str:
    """The client's address as the backend is told it in ``X-Real-IP``.

    ``forwarded_for`` holds the client's ``X-Forwarded-For`` values; they count only
    when the peer is trusted (logs, limits and access lists use this too).
    """
    if not forwarded_for:
        return peer_ip  # no chain: the peer, trusted or not
    return _real_ip(peer_ip, _split_list(forwarded_for), trusted)


def claimed_client_ip(
    peer_ip: str, claimed: Optional[Sequence[bytes]], trusted: TrustedProxies
) -> str:
    """:func:`real_client_ip` for a request's raw ``X-Forwarded-For`` values.

    ``claimed`` is what ``getRawHeaders`` answers (None when none was sent): then
    the answer is the peer at once, with no chain decoded and split (most
    requests, on every request's path twice: admission and the access record).
    """
    if not claimed:
        return peer_ip
    return _real_ip(peer_ip, _split_list([v.decode("latin-1") for v in claimed]), trusted)


def forwarded_headers(
    *,
    peer_ip: str,
    scheme: str,
    host: Optional[str],
    forwarded_for: Sequence[str] = (),
    forwarded_proto: Optional[str] = None,
    forwarded_host: Optional[str] = None,
    trusted: TrustedProxies = TrustedProxies(),
    port: Optional[int] = None,
) -> list[tuple[str, str]]:
    """The forwarding headers to send to a backend, as ``(name, value)`` pairs.

    ``forwarded_for`` holds the client's ``X-Forwarded-For`` values (any number of
    headers); ``forwarded_proto`` and ``forwarded_host`` its own claims, used only
    when the peer is trusted.  ``port`` is the listener port the client connected
    to (``X-Forwarded-Port``).
    """
    believed = peer_ip in trusted if trusted.networks else False  # none trusted: no call
    if forwarded_for:
        chain = _split_list(forwarded_for)
        real_ip = _real_ip(peer_ip, chain, trusted) if believed else peer_ip
        forwarded = ", ".join([*chain, peer_ip])
    else:
        real_ip = forwarded = peer_ip  # no chain: the peer, trusted or not
    if believed:
        forwarded_host = forwarded_host or host
    else:
        forwarded_proto = None
        forwarded_host = host
    if forwarded_host and port is not None:  # a listener's request: all five, one list
        return [
            ("X-Forwarded-For", forwarded),
            ("X-Forwarded-Proto", forwarded_proto or scheme),
            ("X-Forwarded-Host", forwarded_host),
            ("X-Forwarded-Port", str(port)),
            ("X-Real-IP", real_ip),
        ]
    headers = [
        ("X-Forwarded-For", forwarded),
        ("X-Forwarded-Proto", forwarded_proto or scheme),
    ]
    if forwarded_host:
        headers.append(("X-Forwarded-Host", forwarded_host))
    if port is not None:
        headers.append(("X-Forwarded-Port", str(port)))
    headers.append(("X-Real-IP", real_ip))
    return headers
