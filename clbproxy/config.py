"""tap.conf: the TOML file an operator writes, turned into an immutable, validated model.

Every user mistake becomes one line naming the file and the key path
(``tap.conf: listener[0].bind: ...``); all problems of a file are reported together
so a broken config is fixed in one edit, not one error at a time.

The model is a tree of frozen ``attrs`` records.  It is built once by
:func:`load_config` and shared read-only by every service; a reload builds a new
tree and swaps it.
"""

from __future__ import annotations

from typing import Optional

import attrs

#: Balancing policies a target group may name.
POLICIES = ("round_robin",)

#: Listener protocols.  ``https`` is reserved for TLS termination.
PROTOCOLS = ("http",)


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one readable line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@attrs.frozen
class BackendConfig:
    """One backend server of a target group.

    ``host`` is an IPv4 or IPv6 literal (without brackets) or a DNS name, which is
    resolved again for every new connection.
    """

    host: str
    port: int
    weight: int = 10

    @property
    def address(self) -> str:
        """The ``host:port`` text users wrote, IPv6 in brackets."""
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@attrs.frozen
class TargetGroupConfig:
    """A pool of weighted backends and how to reach them."""

    name: str
    backends: tuple[BackendConfig, ...]
    policy: str = "round_robin"
    #: Seconds to establish a TCP connection to one backend.
    connect_timeout: float = 5.0
    #: Seconds a backend has to answer a WebSocket handshake or an HTTP request's headers.
    response_timeout: float = 60.0
    #: How many other backends are tried after a failed connection attempt.
    retries: int = 1


@attrs.frozen
class RuleConfig:
    """A forwarding rule: requests whose Host and path match go to ``target_group``.

    ``host`` is ``None`` for "any host", an exact name, or a ``*.example.com`` wildcard.
    ``path`` is a prefix; the longest matching prefix wins.
    """

    target_group: str
    host: Optional[str] = None
    path: str = "/"
    #: Origins allowed to open WebSocket sessions; ``None`` inherits the listener's.
    allowed_origins: Optional[tuple[str, ...]] = None
    #: Largest WebSocket message in bytes (0: unlimited); ``None`` inherits the listener's.
    max_message_size: Optional[int] = None


@attrs.frozen
class ListenerConfig:
    """One listening socket carrying HTTP and WebSocket."""

    name: str
    bind: str
    rules: tuple[RuleConfig, ...]
    protocol: str = "http"
    #: Origins allowed to open WebSocket sessions; empty allows every origin.
    allowed_origins: tuple[str, ...] = ()
    #: Largest WebSocket message in bytes; 0 means unlimited (messages are streamed).
    max_message_size: int = 0
    #: Bytes each direction of a session may buffer before the other side stops being read.
    session_buffer: int = 256 * 1024
    #: Largest body of a backend's refusal of a WebSocket handshake passed to the client.
    max_refusal_body: int = 64 * 1024
    #: Peers (CIDR) whose X-Forwarded-For is trusted and extended rather than replaced.
    trusted_proxies: tuple[str, ...] = ()
    #: Seconds a client connection may stay idle between HTTP requests.
    client_timeout: float = 60.0


@attrs.frozen
class DemoBackendConfig:
    """An embedded demo application server, so the shipped tap.conf works alone."""

    name: str
    bind: str


@attrs.frozen
class Config:
    """A whole, validated tap.conf."""

    path: str
    listeners: tuple[ListenerConfig, ...]
    target_groups: tuple[TargetGroupConfig, ...]
    demo_backends: tuple[DemoBackendConfig, ...] = ()

    def target_group(self, name: str) -> TargetGroupConfig:
        """The target group called ``name`` (validation guarantees it exists)."""
        for group in self.target_groups:
            if group.name == name:
                return group
        raise KeyError(name)
