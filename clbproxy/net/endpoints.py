"""Client endpoints to backends: one place that decides how a backend is reached."""

from __future__ import annotations

import functools
import ipaddress
from typing import Optional

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint, ITCPTransport


def backend_endpoint(reactor, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """An endpoint to ``host:port``: IP literals directly, DNS names via ``HostnameEndpoint``.

    ``HostnameEndpoint`` resolves names on every connection (so DNS changes take
    effect at once) but reports a refused connection only after its 0.3 s
    happy-eyeballs delay, even for an IP literal; a backend given as an address
    fails fast and the next one is tried sooner.
    """
    version = _ip_version(host)
    if version is None:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    endpoint = TCP4ClientEndpoint if version == 4 else TCP6ClientEndpoint
    return endpoint(reactor, host, port, timeout=timeout)


@functools.lru_cache(maxsize=1024)
def _ip_version(host: str) -> Optional[int]:
    """4 or 6 for an IP literal, None for a name (parsed once per backend, not per connection)."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def disable_nagle(transport) -> None:
    """Send small writes at once on ``transport``'s TCP socket (``TCP_NODELAY``).

    A proxy relays what it receives as it arrives; with Nagle's algorithm on, a
    small frame written while an earlier one is unacknowledged waits for that ACK,
    which the peer delays by up to 40 ms: a relayed stream of small or fragmented
    messages slows to about 25 writes a second.  nginx (``tcp_nodelay on``) and
    HAProxy set it on both sides of a proxied connection.  twisted.web sets it on
    the connections it serves and the HTTP client's, but Autobahn's
    ``tcpNoDelay`` option never reaches the socket (its ``connectionMade`` reads
    the option before the factory's options are copied onto the protocol), so
    the relay's backend connections set it here.  TLS and the connection
    limiter's wrappers declare ``ITCPTransport`` and pass the call down.
    """
    if ITCPTransport.providedBy(transport):
        transport.setTcpNoDelay(True)
