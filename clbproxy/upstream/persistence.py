"""Session persistence: a returning client goes back to the backend it had.

Two kinds, behind :class:`ISessionPersistence`:

- an inserted cookie (as AWS ALB's and Tencent CLB's "insert cookie"): every
  WebSocket ``101`` and HTTP response carries ``Set-Cookie`` with an opaque
  value, an HMAC of the backend's address under a secret (the configured one,
  else a random one per process), so it never reveals the address;
- the client address, remembered for ``ttl`` seconds after its last use.

A remembered backend that cannot take traffic (out of service, drained, full)
is not used: the balancing policy chooses, and the new choice is remembered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import OrderedDict
from typing import Optional

from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

from clbproxy.config import BackendConfig, PersistenceConfig

#: Source-IP bindings kept at most; the least recently used go first.
MAX_SOURCE_BINDINGS = 100_000


class ISessionPersistence(Interface):
    """Remembers which backend a client had."""

    def lookup(request) -> Optional[BackendConfig]:
        """The backend remembered for ``request`` (a ``RequestInfo``), or None."""

    def remember(request, backend: BackendConfig) -> list:
        """Note that ``request`` went to ``backend``; response headers to add, as pairs."""


@implementer(ISessionPersistence)
class NoPersistence:
    #: Never looks at a request (see ``TargetGroup.reads_requests``).
    reads_request = False

    def lookup(self, request) -> Optional[BackendConfig]:
        return None

    def remember(self, request, backend: BackendConfig) -> list[tuple[str, str]]:
        return []


@implementer(ISessionPersistence)
class CookiePersistence:
    """An inserted cookie whose value is an HMAC of the backend's address."""

    def __init__(self, config: PersistenceConfig, backends, secret: Optional[bytes] = None) -> None:
        self._config = config
        if secret is None:
            secret = config.secret.encode("utf-8") if config.secret else os.urandom(32)
        self._by_token: dict[str, BackendConfig] = {}
        self._tokens: dict[BackendConfig, str] = {}
        for backend in backends:
            token = self.token(secret, backend)
            self._by_token[token] = backend
            self._tokens[backend] = token
        if config.previous_secret:
            # A fleet rotated its secret: old cookies still lead to their backend.
            previous = config.previous_secret.encode("utf-8")
            for backend in backends:
                self._by_token.setdefault(self.token(previous, backend), backend)

    @staticmethod
    def token(secret: bytes, backend: BackendConfig) -> str:
        digest = hmac.new(secret, backend.address.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode("ascii")

    def lookup(self, request) -> Optional[BackendConfig]:
        token = request.cookies.get(self._config.cookie_name)
        return self._by_token.get(token) if token else None

    def remember(self, request, backend: BackendConfig) -> list[tuple[str, str]]:
        token = self._tokens.get(backend)
        if token is None:
            return []
        config = self._config
        attributes = [
            f"{config.cookie_name}={token}",
            f"Max-Age={int(config.ttl)}",
            f"Path={config.cookie_path}",
        ]
        if config.secure:
            attributes.append("Secure")
        if config.http_only:
            attributes.append("HttpOnly")
        attributes.append(f"SameSite={config.same_site}")
        return [("Set-Cookie", "; ".join(attributes))]


@implementer(ISessionPersistence)
class SourceIPPersistence:
    """The client address bound to a backend for ``ttl`` seconds after its last request."""

    def __init__(
        self, config: PersistenceConfig, clock: IReactorTime, limit: int = MAX_SOURCE_BINDINGS
    ) -> None:
        self._ttl = config.ttl
        self._clock = clock
        self._limit = limit
        self._bindings: OrderedDict[str, tuple[BackendConfig, float]] = OrderedDict()

    def lookup(self, request) -> Optional[BackendConfig]:
        binding = self._bindings.get(request.client_ip)
        if binding is None:
            return None
        backend, expires = binding
        if expires <= self._clock.seconds():
            del self._bindings[request.client_ip]
            return None
        return backend

    def remember(self, request, backend: BackendConfig) -> list[tuple[str, str]]:
        if not request.client_ip:
            return []
        now = self._clock.seconds()
        self._bindings[request.client_ip] = (backend, now + self._ttl)
        self._bindings.move_to_end(request.client_ip)
        while self._bindings:
            oldest_ip, (_, expires) = next(iter(self._bindings.items()))
            if expires > now and len(self._bindings) <= self._limit:
                break
            del self._bindings[oldest_ip]
        return []

    def __len__(self) -> int:
        return len(self._bindings)


def make_persistence(config: PersistenceConfig, clock: IReactorTime, backends=()):
    """The persistence ``config`` describes."""
    if config.type == "cookie":
        return CookiePersistence(config, backends)
    if config.type == "source_ip":
        return SourceIPPersistence(config, clock)
    return NoPersistence()
