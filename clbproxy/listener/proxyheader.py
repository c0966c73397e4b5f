"""The PROXY protocol header at the start of a connection (see ``ProxiedConnection``).

Apart from :mod:`clbproxy.listener.limits`, which reads it, so that module keeps
room for the limits themselves.
"""

from __future__ import annotations

import ipaddress
from typing import Optional, Union

from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser


def parsed_ip(address: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    """``address`` as an IP address (an IPv4-mapped IPv6 one as IPv4), or None if it is none."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ProxyHeader:
    """The PROXY protocol header (v1 or v2) at the start of a connection, fed as it arrives.

    Twisted's parsers do the parsing; this picks the version from the first bytes
    and, unlike Twisted's wrapper, also takes a header that arrives in pieces
    shorter than its signature, and refuses addresses that are not IP literals
    (Twisted's v1 parser takes any text, and the source becomes the client
    address in headers, logs and limits).
    """

    _SIGNATURES = (V2Parser.PREFIX, V1Parser.PROXYSTR)

    def __init__(self) -> None:
        self._pending = b""
        self._parser = None

    def feed(self, data: bytes):
        """``(info, remaining)`` once the header is complete, else ``(None, b"")``.

        Raises ``InvalidProxyHeader`` when the bytes cannot start or be one.
        """
        if self._parser is None:
            data = self._pending + data
            if len(data) >= 16 and data[:12] == V2Parser.PREFIX and data[12] & 0xF0 == 0x20:
                self._parser = V2Parser()
            elif len(data) >= 8 and data[:5] == V1Parser.PROXYSTR:
                self._parser = V1Parser()
            elif len(data) < 16 and any(s.startswith(data[: len(s)]) for s in self._SIGNATURES):
                self._pending = data
                return None, b""
            else:
                raise InvalidProxyHeader()
            self._pending = b""
        try:
            info, remaining = self._parser.feed(data)
        except ValueError as e:  # a port that is no number, an address that is no ASCII
            raise InvalidProxyHeader() from e
        if info is None:
            return None, b""
        for address in (info.source, info.destination):
            host = getattr(address, "host", None)
            if host is not None and parsed_ip(host) is None:
                raise InvalidProxyHeader()
        return info, remaining or b""
