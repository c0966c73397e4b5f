"""Checks of values several tables share, or that a key's declaration names.

Origins, client networks, rates and the limits values are held to.  Each check
reports its problem to the :class:`~clbproxy.config.reader.Reader` and returns
the value in canonical form.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

from clbproxy.config.endpoints import bracketed, canonical_host, port_number, split_host_port
from clbproxy.config.reader import Reader
from clbproxy.config.text import show_size, shown, type_name

#: Range of ``websocket_idle_timeout`` in seconds, as on the cloud balancer.
WEBSOCKET_IDLE_RANGE = (30.0, 3600.0)
#: Upper bound of connection counts and handshake rates.
MAX_COUNT = 10_000_000
#: Most worker processes (``workers``).
MAX_WORKERS = 64
#: Most idle keep-alive HTTP connections a target group keeps per backend.
MAX_POOL_IDLE = 1000
#: The smallest per-direction session buffer that still lets a WebSocket frame header through.
MIN_SESSION_BUFFER = 4 * 1024
#: Smallest ``websocket_inflate_rate`` other than 0: below it, compressed sessions crawl.
MIN_INFLATE_RATE = 64 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: A header name (RFC 9110 5.1: a token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")

#: Headers a request ID cannot travel in: they frame the message, route it, or
#: are the proxy's own forwarding headers.
_NOT_FOR_IDS = frozenset(
    {
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "upgrade",
        "keep-alive",
        "te",
        "trailer",
        "traceparent",
        "tracestate",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "forwarded",
    }
)


def rate(reader: Reader, path: str, value: object) -> Optional[float]:
    """Events per second: a number from 0 (no limit) up."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reader.problem(path, f"expected a number of handshakes per second, got {type_name(value)}")
        return None
    if not 0 <= value <= MAX_COUNT:  # also false for nan
        reader.problem(path, f"{shown(value)} out of range 0-{MAX_COUNT} (0: no limit)")
        return None
    return float(value)


def per_second(what: str):
    """A parse for a rate of ``what`` per second: a number from 0 (off) up."""

    def parse(reader: Reader, path: str, value: object) -> Optional[float]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            reader.problem(path, f"expected a number of {what} per second, got {type_name(value)}")
            return None
        if not 0 <= value <= MAX_COUNT:  # also false for nan
            reader.problem(path, f"{shown(value)} out of range 0-{MAX_COUNT} (0: no limit)")
            return None
        return float(value)

    return parse


def fraction(reader: Reader, path: str, value: object) -> Optional[float]:
    """A number from 0 to 1 (``websocket_lifetime_spread``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reader.problem(path, f"expected a number from 0 to 1, got {type_name(value)}")
        return None
    if not 0 <= value <= 1:  # also false for nan
        reader.problem(path, f"{shown(value)} out of range 0-1")
        return None
    return float(value)


def inflate_rate(reader: Reader, path: str, value: object) -> Optional[int]:
    """Inflated bytes per second (a size: ``"16MiB"``): 0 (no limit) or at least 64KiB."""
    rate = reader.size(path, value)
    if rate is not None and 0 < rate < MIN_INFLATE_RATE:
        reader.problem(
            path,
            f"must be 0 (no limit) or at least {show_size(MIN_INFLATE_RATE)} per second, "
            f"got {value!r}",
        )
        return None
    return rate


def interval_or_off(reader: Reader, path: str, value: object) -> Optional[float]:
    """A duration, or 0 for "never" (``websocket_ping_interval``)."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return reader.duration(path, value)


def origins(reader: Reader, path: str, value: object) -> tuple[str, ...]:
    """Exact origins, lower-cased, default ports dropped, as browsers send them."""
    origins: list[str] = []
    for item_path, text in reader.strings(path, value):
        try:
            origin = _origin(text)
        except ValueError as e:
            reader.problem(item_path, str(e))
            continue
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _origin(text: str) -> str:
    if "*" in text:
        raise ValueError(
            f"{text!r} is not allowed: list exact origins like 'https://example.com' "
            "(an empty list allows every origin)"
        )
    scheme, separator, rest = text.partition("://")
    if not separator:
        raise ValueError(
            f"{text!r} is not an origin; expected scheme://host[:port], like 'https://example.com'"
        )
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{text!r} is not an origin: the scheme must be http or https")
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(char in rest for char in "/?#@"):
        raise ValueError(
            f"{text!r} is not an origin: it is only scheme://host[:port], without path or user"
        )
    host, port_text = split_host_port(rest, text)
    origin = f"{scheme}://{bracketed(canonical_host(host))}"
    port = _DEFAULT_PORTS[scheme] if port_text is None else port_number(port_text, 1)
    return origin if port == _DEFAULT_PORTS[scheme] else f"{origin}:{port}"


def networks(reader: Reader, path: str, value: object) -> tuple[str, ...]:
    """CIDR networks, normalized (host bits cleared)."""
    networks = []
    for item_path, text in reader.strings(path, value):
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            reader.problem(
                item_path,
                f"{text!r} is not a network in CIDR notation, like '10.0.0.0/8' or 'fd00::/8'",
            )
    return tuple(networks)


def id_header(reader: Reader, path: str, value: object) -> Optional[str]:
    """A header name for request IDs (``request_id_header``), or ``""`` for none."""
    text = reader.string(path, value)
    if text is None or text == "":
        return text
    if not _TOKEN.match(text) or "_" in text:
        reader.problem(
            path, f"{text!r} is not a header name (letters, digits and '-'; \"\" turns IDs off)"
        )
        return None
    lower = text.lower()
    if lower in _NOT_FOR_IDS or lower.startswith(("proxy", "x-client-cert-")):
        reader.problem(path, f"{text!r} is a header the proxy reads or writes for itself")
        return None
    return text
