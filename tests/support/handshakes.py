"""WebSocket opening handshakes as a client sends them, as bytes."""

from __future__ import annotations

#: The RFC 6455 example key: any valid key does.
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(
    path: str = "/echo",
    host: str = "127.0.0.1",
    extra: bytes = b"",
    *,
    method: str = "GET",
    version: str = "13",
    key: str = WS_KEY,
    connection: str = "Upgrade",
    upgrade: str = "websocket",
    http: str = "HTTP/1.1",
) -> bytes:
    """A WebSocket opening handshake with any field replaceable ("" drops it).

    ``extra`` is raw header lines (each ending in CRLF) added after the standard ones.
    """
    lines = [f"{method} {path} {http}", f"Host: {host}"]
    for name, value in (
        ("Upgrade", upgrade),
        ("Connection", connection),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", version),
    ):
        if value:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1") + extra + b"\r\n"
