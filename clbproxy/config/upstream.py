"""The records of target groups: backends, health checks, persistence, passive ejection.

Like :mod:`clbproxy.config.model`, each attribute a user writes is declared once,
with its key's metadata (see :mod:`clbproxy.config.keys`).
"""

from __future__ import annotations

from typing import Optional

import attrs

from clbproxy.config import keys
from clbproxy.config.keys import setting
from clbproxy.config.values import MAX_POOL_IDLE

#: Balancing policies a target group may name.
POLICIES = ("round_robin", "least_conn", "consistent_hash", "random_two")
#: Where ``consistent_hash`` takes its key: ``source_ip`` or ``header:``/``cookie:``/``query:NAME``.
HASH_SOURCES = ("header", "cookie", "query")
#: Kinds of active health check.
HEALTH_CHECK_TYPES = ("http", "https", "tcp", "websocket")
#: Kinds of session persistence.
PERSISTENCE_TYPES = ("none", "cookie", "source_ip")
#: What happens to live WebSocket sessions on a backend taken out of service.
ON_UNHEALTHY = ("keep", "close")
#: Target group schemes; ``wss`` and ``https`` reach backends over TLS.
BACKEND_SCHEMES = ("http", "ws", "https", "wss")


@attrs.frozen(cache_hash=True)
class BackendConfig:
    """One backend server of a target group.

    ``host`` is an IPv4 or IPv6 literal (without brackets) or a DNS name, which is
    resolved again for every new connection.  Its hash is kept: balancing and
    health look a backend up by it several times per request.
    """

    host: str = setting(
        key="address",
        doc="``host:port`` of the backend.  Host: IPv4, ``[IPv6]`` or a DNS name "
        "(resolved on every new connection).",
    )
    port: int
    weight: int = setting(10, doc="0-100.  0 drains: no new sessions, live ones go on.")
    max_conns: int = setting(
        0,
        doc="Most live sessions plus in-flight requests (0: no limit); a full backend is "
        "skipped, all full answers 503.",
    )

    #: :attr:`address`, made once (balancing reads it several times per request);
    #: not a key, and not part of the backend's identity (equality, hash).
    _address: str = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        object.__setattr__(self, "_address", f"{host}:{self.port}")

    @property
    def address(self) -> str:
        """The ``host:port`` text users wrote, IPv6 in brackets."""
        return self._address


@attrs.frozen
class HealthCheckConfig:
    """Active health checks of a target group's backends (off unless configured)."""

    enabled: bool = setting(
        False,
        shown="``true``",
        doc="``false`` keeps the table but runs no checks.",
        parse=keys.boolean(),
    )
    type: str = setting(
        "http",
        doc="``http``, ``https`` (certificate not verified: a liveness probe), ``tcp`` "
        "(connect only) or ``websocket`` (a handshake that must get a valid ``101``).",
        parse=keys.choice(HEALTH_CHECK_TYPES, "health check type"),
    )
    port: int = setting(
        0, shown="backend's", doc="Probe this port instead.", parse=keys.integer(1, 65535)
    )
    path: str = setting("/", doc="Path of HTTP(S) and WebSocket checks.")
    method: str = setting(
        "GET", doc="``GET`` or ``HEAD``.", parse=keys.choice(("GET", "HEAD"), "method")
    )
    host: Optional[str] = setting(None, shown="the backend", doc="``Host`` header of the probe.")
    expect_status: tuple[tuple[int, int], ...] = setting(
        ((200, 399),),
        shown='``["200-399"]``',
        doc='Healthy statuses: ``"200"``, ``"200-399"``, ``"2xx"``.',
    )
    expect_body: Optional[str] = setting(
        None,
        doc="A substring the body (first 64 KiB) must contain.",
        parse=keys.string(),
    )
    interval: float = setting(
        5.0, doc="Seconds between checks, 2-300.", parse=keys.duration_in(2, 300)
    )
    timeout: float = setting(
        2.0,
        doc="Seconds a probe may take, 2-60, at most ``interval``.",
        parse=keys.duration_in(2, 60),
    )
    healthy_threshold: int = setting(
        3, doc="Successes in a row that bring a backend back (2-10).", parse=keys.integer(2, 10)
    )
    unhealthy_threshold: int = setting(
        3, doc="Failures in a row that take it out (2-10).", parse=keys.integer(2, 10)
    )
    jitter: float = setting(
        0.1,
        doc="Each wait is ``interval`` ± this fraction (0-0.5); first probes are spread "
        "over the first interval, so checks do not align.",
    )


@attrs.frozen
class PersistenceConfig:
    """Session persistence: returning clients go back to their backend."""

    type: str = setting(
        "none",
        required=True,
        doc="``cookie`` (an inserted cookie), ``source_ip`` or ``none``.",
    )
    cookie_name: str = setting("clb_session", doc="The inserted cookie's name.")
    ttl: float = setting(
        3600.0,
        doc="Seconds, 30-3600: the cookie's ``Max-Age``, or how long a client address "
        "stays bound after its last session or request.",
        parse=keys.duration_in(30, 3600),
    )
    cookie_path: str = setting("/", doc="The cookie's ``Path``.")
    secure: bool = setting(False, doc="Add ``Secure``.", parse=keys.boolean())
    http_only: bool = setting(True, doc="Add ``HttpOnly``.", parse=keys.boolean())
    same_site: str = setting(
        "Lax",
        doc="``Strict``, ``Lax`` or ``None`` (needs ``secure``).",
        parse=keys.choice(("Strict", "Lax", "None"), "SameSite"),
    )
    secret: Optional[str] = setting(
        None,
        shown="random per process",
        doc="HMAC key of cookie values (16+ characters); set it so cookies stay valid "
        "across restarts and across several proxies.",
    )
    #: A fleet's previous cookie secret (not a key): cookies it signed are still honoured.
    previous_secret: Optional[str] = attrs.field(default=None, repr=False)


@attrs.frozen
class PassiveConfig:
    """Passive ejection of backends that fail real traffic (always on)."""

    failures: int = setting(
        3,
        doc="Consecutive connect failures or resets that eject a backend.",
        parse=keys.integer(1, 100),
    )
    ejection: float = setting(
        10.0, doc="Seconds of the first ejection.", parse=keys.duration_in(1, 86400)
    )
    max_ejection: float = setting(
        300.0,
        doc="Cap: an ejection within this many seconds of the previous one's end lasts "
        "twice as long, up to this.",
        parse=keys.duration_in(1, 86400),
    )
    count_5xx: bool = setting(
        False,
        doc="Count 5xx answers (HTTP, and WebSocket handshake refusals) as failures.",
        parse=keys.boolean(),
    )


#: Policies that send a relieved session's reconnection to a less loaded backend.
REBALANCE_POLICIES = ("least_conn", "random_two")


@attrs.frozen
class RebalanceConfig:
    """Rebalancing of live WebSocket sessions across a group's backends (opt-in)."""

    max_ratio: float = setting(
        1.5,
        doc="Sessions per unit of weight on the busiest healthy, ready backend may be "
        "this many times those on the least busy one (1.05-100) before sessions are "
        "moved.",
        parse=keys.number(1.05, 100),
    )
    closes_per_second: float = setting(
        10.0,
        doc="Most sessions relieved per second on each backend (0.01-10000; above 1 "
        "a whole number is used).  A relieved client is closed with 1001 and is "
        "expected to reconnect; it then lands by the group's policy.",
        parse=keys.number(0.01, 10000),
    )


@attrs.frozen
class TargetGroupConfig:
    """A pool of weighted backends and how to reach them."""

    name: str
    backends: tuple[BackendConfig, ...] = setting(
        doc='A list of ``"host:port"`` strings or ``{ address = "host:port", weight = 10, '
        "max_conns = 0 }`` tables.  Host: IPv4, ``[IPv6]`` or a DNS name (resolved on "
        "every new connection).  Weight 0-100, default 10; 0 drains: no new sessions, "
        "live ones go on.  ``max_conns``: most live sessions plus in-flight requests "
        "(0: no limit); a full backend is skipped, all full answers 503.",
        required=True,
    )
    policy: str = setting(
        "round_robin",
        doc="``round_robin``, ``least_conn``, ``consistent_hash`` or ``random_two`` "
        "(see `Balancing`_).",
        parse=keys.choice(POLICIES, "policy"),
    )
    connect_timeout: float = setting(
        5.0, doc="Seconds to connect to one backend.", parse=keys.duration()
    )
    response_timeout: float = setting(
        60.0,
        doc="Seconds a backend has to answer a WebSocket handshake or send HTTP response "
        "headers, counted from the last request body bytes sent to it (a slow upload "
        "that keeps moving is never cut).",
        parse=keys.duration(),
    )
    retries: int = setting(
        1,
        doc="Other backends tried after a failed connect (0-10) before the client gets 502.",
        parse=keys.integer(0, 10),
    )
    hash_key: str = setting(
        "source_ip",
        doc="What ``consistent_hash`` hashes: ``source_ip``, ``header:NAME``, "
        "``cookie:NAME`` or ``query:NAME``.",
    )
    fail_open: bool = setting(
        True,
        doc="When no backend is in service, send traffic to all of them (logged); ``false``: 503.",
        parse=keys.boolean(),
    )
    on_unhealthy: str = setting(
        "keep",
        doc="``keep`` live WebSocket sessions of a backend taken out of service, or "
        "``close`` them (1001 to the client) after the grace period.",
        parse=keys.choice(ON_UNHEALTHY, "action"),
    )
    on_unhealthy_grace: float = setting(
        30.0,
        doc="Seconds before ``close`` acts; a backend back in service by then keeps its sessions.",
        parse=keys.duration_in(0.001, 3600),
    )
    health_check: HealthCheckConfig = setting(
        HealthCheckConfig(),
        shown="(none)",
        doc="``[target_group.NAME.health_check]``: active checks (below).",
    )
    persistence: PersistenceConfig = setting(
        PersistenceConfig(),
        shown="(none)",
        doc="``[target_group.NAME.persistence]``: session persistence (below).",
    )
    passive: PassiveConfig = setting(
        PassiveConfig(),
        shown="(defaults)",
        doc="``[target_group.NAME.passive]``: passive ejection (below).",
    )
    rebalance: Optional[RebalanceConfig] = setting(
        None,
        doc="``[target_group.NAME.rebalance]``: move live WebSocket sessions to backends "
        "that have fewer (below).",
    )
    tls: bool = setting(
        False,
        key="scheme",
        shown='``"http"``',
        doc="``http``/``ws`` (plain) or ``https``/``wss``: both HTTP and WebSocket "
        "traffic of the group reach its backends over TLS (SNI, certificate and host "
        "name verified with service-identity).",
    )
    verify: bool = setting(
        True,
        doc="TLS groups: ``false`` accepts any backend certificate (logged as a warning "
        "at start and by ``--check``).",
        parse=keys.boolean(),
    )
    ca_file: Optional[str] = setting(
        None,
        shown="system trust",
        doc="TLS groups: PEM bundle of CAs trusted for backends instead of the system store.",
        parse=keys.file(),
    )
    server_name: Optional[str] = setting(
        None,
        shown="backend host",
        doc="TLS groups: the name sent as SNI and verified (the backend address may be an IP).",
    )
    http_pool_max_idle: int = setting(
        64,
        doc="Idle keep-alive HTTP connections kept per backend (0-1000; 0: a new "
        "connection, with ``Connection: close``, for every request).  Each group has "
        "its own pool, so a connection is only reused with the TLS settings it was "
        "verified with.",
        parse=keys.integer(0, MAX_POOL_IDLE),
    )
    http_pool_idle_timeout: float = setting(
        60.0,
        doc="Seconds an idle keep-alive HTTP connection to a backend stays open (0.001-3600).",
        parse=keys.duration_in(0.001, 3600),
    )
