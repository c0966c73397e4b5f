"""Client endpoints to backends: one place that decides how a backend is reached."""

from __future__ import annotations

import functools
import ipaddress
from typing import Optional

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint


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
