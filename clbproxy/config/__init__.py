"""tap.conf: the TOML file an operator writes, turned into an immutable, validated model.

Every user mistake becomes one line naming the file and the key path
(``tap.conf: listener[0].bind: ...``); all problems of a file are reported together
so a broken config is fixed in one edit, not one error at a time.

The model is a tree of frozen ``attrs`` records.  It is built once by
:func:`load_config` and shared read-only by every service; a reload builds a new
tree and swaps it.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import math
import os
import re
from typing import Any, Optional, Sequence

import attrs
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from clbproxy.config.patterns import (
    HOST_EXACT,
    check_replacement,
    compile_regex,
    parse_host,
    parse_path,
)
from clbproxy.net import descriptors

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

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

#: Listener protocols: ``https`` terminates TLS, then carries the same HTTP and WebSocket.
PROTOCOLS = ("http", "https")

#: Lowest TLS versions a listener may require.
TLS_VERSIONS = ("1.2", "1.3")

#: What a listener with mutual TLS does with clients that send no certificate.
CLIENT_AUTH = ("require", "optional")

#: Target group schemes; ``wss`` and ``https`` reach backends over TLS.
BACKEND_SCHEMES = ("http", "ws", "https", "wss")

#: Mozilla's "intermediate" TLS 1.2 cipher list (TLS 1.3 suites are always on).
DEFAULT_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)

#: How a rule relays WebSocket sessions: checked frames (default), or a byte tunnel.
RELAY_MODES = ("frames", "tunnel")
#: How permessage-deflate is negotiated: by client and backend (the proxy passes
#: the offer and the answer on) or by each hop with the proxy.
DEFLATE_MODES = ("end_to_end", "per_hop")


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
    #: Most live WebSocket sessions plus in-flight HTTP requests at once; 0: no limit.
    max_conns: int = 0

    @property
    def address(self) -> str:
        """The ``host:port`` text users wrote, IPv6 in brackets."""
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@attrs.frozen
class HealthCheckConfig:
    """Active health checks of a target group's backends (off unless configured)."""

    enabled: bool = False
    type: str = "http"
    #: Port probed instead of each backend's own; 0 uses the backend's port.
    port: int = 0
    path: str = "/"
    method: str = "GET"
    #: Host header of HTTP and WebSocket checks; ``None`` sends the backend's address.
    host: Optional[str] = None
    #: Inclusive status ranges that count as healthy.
    expect_status: tuple[tuple[int, int], ...] = ((200, 399),)
    #: A substring the response body must contain; ``None`` does not read it for matching.
    expect_body: Optional[str] = None
    interval: float = 5.0
    timeout: float = 2.0
    healthy_threshold: int = 3
    unhealthy_threshold: int = 3
    #: Each wait between checks is the interval plus or minus this fraction of it.
    jitter: float = 0.1


@attrs.frozen
class PersistenceConfig:
    """Session persistence: returning clients go back to their backend."""

    type: str = "none"
    cookie_name: str = "clb_session"
    #: Seconds a cookie or a source-IP binding lives (30-3600).
    ttl: float = 3600.0
    cookie_path: str = "/"
    secure: bool = False
    http_only: bool = True
    same_site: str = "Lax"
    #: HMAC key for cookie values; ``None``: a random key per process.
    secret: Optional[str] = None


@attrs.frozen
class PassiveConfig:
    """Passive ejection of backends that fail real traffic (always on)."""

    #: Consecutive connect failures or resets that eject a backend.
    failures: int = 3
    #: Seconds of the first ejection; each repeat doubles it, up to ``max_ejection``.
    ejection: float = 10.0
    max_ejection: float = 300.0
    #: Whether a 5xx answer counts as a failure.
    count_5xx: bool = False


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
    #: ``consistent_hash`` key: ``source_ip``, ``header:NAME``, ``cookie:NAME``, ``query:NAME``.
    hash_key: str = "source_ip"
    #: When no backend is healthy: True sends traffic to all of them, False answers 503.
    fail_open: bool = True
    #: ``keep`` live WebSocket sessions of a backend taken out, or ``close`` them (1001).
    on_unhealthy: str = "keep"
    #: Seconds before ``on_unhealthy = "close"`` closes a session.
    on_unhealthy_grace: float = 30.0
    health_check: HealthCheckConfig = HealthCheckConfig()
    persistence: PersistenceConfig = PersistenceConfig()
    passive: PassiveConfig = PassiveConfig()
    #: Connect to backends over TLS (``scheme = "wss"`` or ``"https"``).
    tls: bool = False
    #: Verify the backend's certificate and host name (only with ``tls``).
    verify: bool = True
    #: PEM bundle of CAs trusted for backends; ``None`` uses the system trust store.
    ca_file: Optional[str] = None
    #: Name sent as SNI and verified; ``None`` uses the backend's host.
    server_name: Optional[str] = None
    #: Idle keep-alive HTTP connections kept per backend (0: one connection per request).
    http_pool_max_idle: int = 8
    #: Seconds an idle keep-alive HTTP connection to a backend is kept open.
    http_pool_idle_timeout: float = 60.0


@attrs.frozen
class RewriteConfig:
    """How a rule changes the request path before forwarding (the query is kept).

    Either ``strip_prefix`` (removed from the start of the path) or a regex
    ``pattern`` whose first match is replaced by ``replacement`` (``\\1``, ``\\g<name>``).
    """

    strip_prefix: Optional[str] = None
    pattern: Optional[str] = None
    replacement: str = ""


@attrs.frozen
class FixedResponseConfig:
    """A response the proxy answers itself, without a backend (maintenance pages...)."""

    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


@attrs.frozen
class RedirectConfig:
    """A redirect answered by the proxy; ``$scheme``, ``$host``, ``$request_uri`` are expanded.

    ``status`` ``None`` is 301 for GET and HEAD, 308 for other methods.
    """

    location: str
    status: Optional[int] = None


@attrs.frozen
class RuleConfig:
    """A forwarding rule: requests whose Host and path match go to ``target_group``.

    ``host`` is ``None`` for "any host" or a host pattern, ``path`` a path
    pattern (see :mod:`clbproxy.config.patterns`), both in canonical text.  A rule
    forwards to ``target_group``, or answers ``fixed_response`` or ``redirect``.
    """

    target_group: Optional[str] = None
    host: Optional[str] = None
    path: str = "/"
    #: Origins allowed to open WebSocket sessions; ``None`` inherits the listener's.
    allowed_origins: Optional[tuple[str, ...]] = None
    #: Largest WebSocket message in bytes (0: unlimited); ``None`` inherits the listener's.
    max_message_size: Optional[int] = None
    rewrite: Optional[RewriteConfig] = None
    fixed_response: Optional[FixedResponseConfig] = None
    redirect: Optional[RedirectConfig] = None
    #: Request headers set (replacing any the client sent) on the way to the backend.
    set_headers: tuple[tuple[str, str], ...] = ()
    #: Request headers removed on the way to the backend, lower-case.
    remove_headers: tuple[str, ...] = ()
    #: Client networks (CIDR) this rule serves, on top of the listener's lists; empty: all.
    allow: tuple[str, ...] = ()
    #: Client networks (CIDR) refused with 403 by this rule.
    deny: tuple[str, ...] = ()
    #: ``frames``: every frame checked at the edge; ``tunnel``: bytes spliced unchecked.
    relay: str = "frames"


@attrs.frozen
class AccessLogConfig:
    """Where access log lines go (``"-"``: stdout) and in which format."""

    path: str
    format: str = "plain"


@attrs.frozen
class AdminConfig:
    """The admin listener: status page, JSON API and Prometheus metrics."""

    bind: str = "tcp:9090:interface=127.0.0.1"
    metrics_path: str = "/metrics"
    #: Host names (besides IP literals and localhost names) the admin site answers to:
    #: a name not listed could be an attacker's, rebound to this address (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    #: A file holding the bearer token the API and metrics then require.
    token_file: Optional[str] = None
    #: The token read from ``token_file`` (at load, so at start and on reload).
    token: Optional[str] = attrs.field(default=None, repr=False)


@attrs.frozen
class CertificateConfig:
    """One certificate of an HTTPS listener: PEM files, absolute paths."""

    #: The certificate followed by its intermediates.
    cert: str
    key: str
    #: A file whose first line is the passphrase of an encrypted key.
    passphrase_file: Optional[str] = None
    #: A DER OCSP response stapled to handshakes that ask for one.
    ocsp_response: Optional[str] = None
    #: Served to clients without SNI or with an unknown name.
    default: bool = False


@attrs.frozen
class TLSConfig:
    """TLS termination settings of an HTTPS listener (``[listener.tls]``)."""

    certificates: tuple[CertificateConfig, ...] = ()
    #: Generate (once) and serve a self-signed certificate for localhost.
    self_signed: bool = False
    #: Where the self-signed certificate is kept (relative: to the working directory).
    state_directory: str = "clbproxy-state"
    min_version: str = "1.2"
    ciphers: str = DEFAULT_CIPHERS
    session_tickets: bool = True
    #: PEM bundle of CAs whose client certificates are accepted (mutual TLS).
    client_ca: Optional[str] = None
    client_auth: str = "require"
    #: Refuse handshakes whose SNI no certificate covers (and those without SNI).
    strict_sni: bool = False


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
    #: Seconds a client connection may stay idle while a request is being received.
    client_timeout: float = 60.0
    #: This listener's access log; ``None`` uses the top-level one.
    access_log: Optional[AccessLogConfig] = None
    #: Host pattern of the domain serving requests whose Host matches no rule;
    #: ``None``: the rules without a host, else the first domain written.
    default_domain: Optional[str] = None
    #: Largest request body in bytes (413 above it); 0 means unlimited.
    max_body_size: int = 64 * 1024 * 1024
    #: Largest request header section (request line included) in bytes (431 above it).
    max_header_size: int = 32 * 1024
    #: Longest request line in bytes (414 above it).
    max_request_line: int = 8 * 1024
    #: Add a ``Via: 1.1 clbproxy`` header to requests and responses.
    via: bool = False
    #: Forward request headers whose name has an underscore (nginx's
    #: ``underscores_in_headers``); those that spell one of the proxy's own headers
    #: are dropped whatever this says.
    underscores_in_headers: bool = False
    #: Seconds from the first byte of a request (or the connection) to its last header.
    header_timeout: float = 60.0
    #: Seconds an HTTP keep-alive connection may wait for its next request.
    keepalive_timeout: float = 75.0
    #: Seconds without a frame in either direction before a session is closed with 1001.
    websocket_idle_timeout: float = 60.0
    #: Seconds between the proxy's pings to each hop of a session; 0: no pings.
    websocket_ping_interval: float = 0.0
    #: Seconds a hop has to answer the proxy's ping before it is taken for dead.
    websocket_ping_timeout: float = 10.0
    #: ``end_to_end``: client and backend negotiate permessage-deflate through the
    #: proxy, compressed frames pass on checked; ``per_hop``: each hop with the proxy.
    websocket_deflate: str = "end_to_end"
    #: Bytes per second of permessage-deflate data the proxy inflates for one session
    #: (to check it, or per hop); past it, the sender is not read for a while. 0: no limit.
    websocket_inflate_rate: int = 16 * 1024 * 1024
    #: Connections the listener holds at once (0: no limit); past it, accepting pauses.
    max_connections: int = 0
    #: Connections one client address may hold at once (0: no limit); more are closed unanswered.
    max_connections_per_ip: int = 0
    #: WebSocket handshakes per second one client address may start (0: no limit).
    websocket_handshake_rate: float = 0.0
    #: Handshakes a client address may start at once before the rate applies.
    websocket_handshake_burst: int = 10
    #: Client networks (CIDR) the listener serves; empty: all.
    allow: tuple[str, ...] = ()
    #: Client networks (CIDR) refused with 403.
    deny: tuple[str, ...] = ()
    #: TLS settings; set exactly when ``protocol`` is ``https``.
    tls: Optional[TLSConfig] = None
    #: Answer every request with a redirect to the same URL over HTTPS.
    redirect_to_https: bool = False
    #: Port of the HTTPS URL redirected to (443 is left out of the URL).
    https_port: int = 443


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
    #: The access log of listeners without their own; ``None``: none.
    access_log: Optional[AccessLogConfig] = None
    #: The admin listener; ``None`` (no ``[admin]`` table): not started.
    admin: Optional[AdminConfig] = None
    #: Seconds a stopping proxy waits for requests and sessions to end.
    drain_timeout: float = 30.0
    #: Connections all listeners hold at once (0: no limit); past it, accepting pauses.
    max_connections: int = 0
    #: Worker processes sharing the listening sockets (1: the proxy is one process).
    workers: int = 1
    #: Things that work but deserve attention (an expired certificate...), one line each.
    warnings: tuple[str, ...] = ()

    def target_group(self, name: str) -> TargetGroupConfig:
        """The target group called ``name`` (validation guarantees it exists)."""
        for group in self.target_groups:
            if group.name == name:
                return group
        raise KeyError(name)


#: Positional parameters, in order, of the endpoint types a listener may bind (besides
#: ``haproxy:``, which wraps one of them); TLS is a listener setting, not an endpoint.
_ENDPOINT_PARAMETERS = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "backlog", "interface"),
    "unix": ("address", "mode", "backlog", "lockfile"),
    "systemd": ("domain", "index", "name"),
}

_USE_ENDPOINT = "use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint"

_TLS_NOT_ALLOWED = (
    "is not allowed: TLS comes from the listener's own settings "
    f'(protocol = "https"); {_USE_ENDPOINT}'
)

_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_SIZE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*\Z")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*\Z")
_TOML_POSITION = re.compile(r"(.*) \(at (?:line (\d+), column (\d+)|end of document)\)\Z", re.S)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_KEY_TUPLE = re.compile(r"\(((?:'[^']*', )*'[^']*'),?\)")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}

_SIZE_HELP = 'bytes as an integer, or a string like "64KiB", "16MiB", "512KB" or "10MB"'
_DURATION_HELP = 'seconds as a number, or a string like "5s", "250ms", "2m" or "1h"'

#: The smallest per-direction session buffer that still lets a WebSocket frame header through.
MIN_SESSION_BUFFER = 4 * 1024
#: Smallest ``websocket_inflate_rate`` other than 0: below it, compressed sessions crawl.
MIN_INFLATE_RATE = 64 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}


def default_config_path() -> str:
    """The config file used when none is named: ./tap.conf if present, else the shipped demo."""
    if os.path.isfile("tap.conf"):
        return "tap.conf"
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tap.conf")


def load_config(path: str) -> Config:
    """Read, parse and validate the tap.conf at ``path``.

    Raises :class:`ConfigError` listing every problem found, one line each, each
    line starting with ``path`` as given; no other exception escapes for anything
    the file contains.  Certificate files are not read here: callers that are
    about to serve use :func:`clbproxy.ops.preflight.load_checked`.
    """
    reader = _Reader(path)
    document = _read_toml(reader, path)
    if document is None:
        raise ConfigError(reader.problems)
    config = _config(reader, path, document)
    if config is None:
        raise ConfigError(reader.problems)
    warnings = _worker_warnings(config)
    warnings.extend(_exposure_warnings(config))
    budget = descriptors.budget_warning(
        config.path, config.max_connections, descriptors.process_descriptor_limit()
    )
    if budget is not None:
        warnings.append(budget)
    return attrs.evolve(config, warnings=tuple(warnings)) if warnings else config


def _worker_warnings(config: Config) -> list[str]:
    """What behaves differently once several worker processes share the traffic."""
    if config.workers == 1:
        return []
    return [
        f"{config.path}: target_group.{group.name}.persistence: source_ip persistence is "
        f"remembered per worker (workers = {config.workers}); use policy = "
        '"consistent_hash" for stickiness across workers'
        for group in config.target_groups
        if group.persistence is not None and group.persistence.type == "source_ip"
    ]


#: ``trusted_proxies`` ranges wider than this (per IP version) are warned about: no
#: operator's own proxies span more than a /8 (IPv4) or the ULA /7 (IPv6).
_WIDEST_TRUSTED_PREFIX = {4: 8, 6: 7}


def _exposure_warnings(config: Config) -> list[str]:
    """Settings that work but hand control to strangers, one line each (file and key).

    ``clbproxy check`` prints them and the proxy logs them at start; they are not
    errors, as a firewall or a private network may make them safe.
    """
    warnings = []
    if config.admin is not None and binds_every_interface(config.admin.bind):
        warnings.append(
            f"{config.path}: admin.bind: {config.admin.bind!r} listens on every interface: "
            "whoever reaches it can read the status and drain, disable or reweight backends; "
            "bind 127.0.0.1 or a management address (and consider admin.token_file)"
        )
    for index, listener in enumerate(config.listeners):
        for cidr in listener.trusted_proxies:
            network = ipaddress.ip_network(cidr)
            if network.prefixlen >= _WIDEST_TRUSTED_PREFIX[network.version]:
                continue
            span = "every address" if network.prefixlen == 0 else "a very wide range"
            warnings.append(
                f"{config.path}: listener[{index}].trusted_proxies: listener "
                f"{listener.name!r}: {cidr} trusts {span}: any client there can claim any "
                "address in X-Forwarded-For (and is exempt from max_connections_per_ip); "
                "list only your own proxies' addresses"
            )
    return warnings


def binds_every_interface(bind: str) -> bool:
    """Whether the server endpoint ``bind`` (already validated) listens on every address."""
    args, kwargs = _endpoint_arguments(bind)
    if args[:1] == ["haproxy"]:
        args = args[1:]
    kind = args[0] if args else ""
    if kind not in ("tcp", "tcp6"):
        return False
    params = {**dict(zip(_ENDPOINT_PARAMETERS[kind], args[1:])), **kwargs}
    interface = params.get("interface", "::" if kind == "tcp6" else "")
    if interface == "":
        return True
    try:
        return ipaddress.ip_address(interface).is_unspecified
    except ValueError:
        return False


_MAX_DURATION = 365 * 86400.0
_MAX_SIZE = 2**63 - 1  # the largest file offset: nginx's and HAProxy's bound as well


def _shown(value: object) -> str:
    """``value`` as the user wrote it, or its length when it is an absurdly long integer.

    Printing an integer of thousands of digits is refused by the interpreter (its
    int-to-string limit) and would not help anyone reading the message anyway.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        magnitude = abs(value)
        digits = math.floor(magnitude.bit_length() * math.log10(2))
        while 10**digits <= magnitude:
            digits += 1
        while 10 ** (digits - 1) > magnitude:
            digits -= 1
        return f"an integer of {digits} digits"
    return repr(value)


def parse_size(value: object) -> int:
    """A size in bytes from an integer or a string like ``"64KiB"`` or ``"10MB"``.

    KB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024; the unit is
    case-insensitive.  Raises ``ValueError`` with a message for the user.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size ({_SIZE_HELP}), got {_type_name(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must not be negative, got {_shown(value)}")
        if value > _MAX_SIZE:
            raise ValueError(f"{_shown(value)} is too large for a size (at most {_MAX_SIZE})")
        return value
    match = _SIZE.match(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; use {_SIZE_HELP}")
    digits = match.group(1)
    if len(digits) > 30:
        raise ValueError(f"{value!r} is too large")
    size = int(digits) * _SIZE_UNITS[unit]
    if size > _MAX_SIZE:
        raise ValueError(f"{value!r} is too large for a size (at most {_MAX_SIZE} bytes)")
    return size


def parse_duration(value: object) -> float:
    """A positive number of seconds from a number or a string like ``"5s"``, ``"250ms"``.

    Raises ``ValueError`` with a message for the user.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration ({_DURATION_HELP}), got {_type_name(value)}")
    if isinstance(value, str):
        match = _DURATION.match(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _DURATION_UNITS:
            raise ValueError(f"{value!r} is not a duration; use {_DURATION_HELP}")
        seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if math.isnan(seconds):
        raise ValueError("a duration must be a number, got nan")
    if seconds > _MAX_DURATION:
        # Also keeps timers within what the reactor's poll() accepts as a timeout.
        raise ValueError(f"{_shown(value)} is too large for a duration (at most 365 days)")
    if seconds <= 0:
        raise ValueError(f"a duration must be greater than 0, got {_shown(value)}")
    return seconds


def _read_toml(reader: _Reader, path: str) -> Optional[dict[str, Any]]:
    """The parsed document, or ``None`` after reporting why the file is not TOML."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as e:
        reader.problem("", f"cannot read: {e.strerror or e}")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, column = _position(data[: e.start].decode("utf-8-sig"))
        byte = data[e.start]
        reader.problem("", f"line {line}, column {column}: not valid UTF-8 (byte 0x{byte:02x})")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        reader.problem("", _toml_error(e, text))
    except RecursionError:
        reader.problem("", "arrays or tables are nested too deeply")
    except ValueError as e:
        if "integer string conversion" in str(e):
            # CPython's int-to-string limit, whose own message suggests a Python call.
            e = ValueError("an integer has more digits than the interpreter reads (4300)")
        reader.problem("", f"not valid TOML: {e}")
    return None


def _toml_error(error: ValueError, text: str) -> str:
    """``line L, column C: message`` for a TOML syntax error."""
    message = getattr(error, "msg", None)
    line = getattr(error, "lineno", None)
    column = getattr(error, "colno", None)
    if message is None or line is None:
        match = _TOML_POSITION.match(str(error))
        if match is None:
            return f"not valid TOML: {error}"
        message = match.group(1)
        if match.group(2):
            line, column = int(match.group(2)), int(match.group(3))
        else:
            line, column = _position(text)
    message = _KEY_TUPLE.sub(lambda m: ".".join(_literal_keys(m.group(1))), message)
    return f"line {line}, column {column}: {message}"


def _literal_keys(text: str) -> list[str]:
    """The keys of a repr'd tuple of strings, as found in tomllib's messages."""
    return [part.strip("'") for part in text.split(", ")]


def _position(text: str) -> tuple[int, int]:
    """Line and column (1-based) just after ``text``."""
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


class _Reader:
    """Collects problems, each named by file and key path, while values are checked."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        where = f"{self.filename}: {path}: " if path else f"{self.filename}: "
        self.problems.append(where + message)

    def table(self, path: str, value: object, known: Sequence[str]) -> Optional[dict[str, Any]]:
        """``value`` if it is a table, after reporting any key not in ``known``."""
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {_type_name(value)}")
            return None
        for key in value:
            if key not in known:
                self.problem(path, f"unknown key {key!r}{_did_you_mean(key, known)}")
        return value

    def required(self, path: str, table: dict[str, Any], key: str, hint: str = "") -> bool:
        if key in table:
            return True
        self.problem(path, f"missing required key {key!r}{hint}")
        return False

    def tables(self, path: str, value: object, header: str) -> list[tuple[str, dict[str, Any]]]:
        """The tables of an array of tables, each with its path; problems for the rest."""
        if not isinstance(value, list):
            self.problem(path, f"expected an array of tables ({header}), got {_type_name(value)}")
            return []
        if not value:
            self.problem(path, f"needs at least one {header}")
        found = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if isinstance(item, dict):
                found.append((item_path, item))
            else:
                self.problem(item_path, f"expected a table, got {_type_name(item)}")
        return found

    def string(self, path: str, value: object) -> Optional[str]:
        if isinstance(value, str):
            return value
        self.problem(path, f"expected a string, got {_type_name(value)}")
        return None

    def strings(self, path: str, value: object) -> list[tuple[str, str]]:
        """The strings of an array, each with its path; problems for anything else."""
        if not isinstance(value, list):
            self.problem(path, f"expected an array of strings, got {_type_name(value)}")
            return []
        found = []
        for index, item in enumerate(value):
            text = self.string(f"{path}[{index}]", item)
            if text is not None:
                found.append((f"{path}[{index}]", text))
        return found

    def name(self, path: str, value: object) -> Optional[str]:
        text = self.string(path, value)
        if text is not None and not _NAME.match(text):
            self.problem(path, f"invalid name {text!r}: use letters, digits, '_', '.' and '-'")
            return None
        return text

    def integer(self, path: str, value: object, low: int, high: int) -> Optional[int]:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"expected an integer, got {_type_name(value)}")
            return None
        if not low <= value <= high:
            self.problem(path, f"{_shown(value)} out of range {low}-{high}")
            return None
        return value

    def choice(self, path: str, value: object, choices: Sequence[str], what: str) -> Optional[str]:
        text = self.string(path, value)
        if text is not None and text not in choices:
            allowed = ", ".join(repr(choice) for choice in choices)
            self.problem(path, f"unknown {what} {text!r}; must be one of: {allowed}")
            return None
        return text

    def size(self, path: str, value: object, minimum: int = 0) -> Optional[int]:
        try:
            size = parse_size(value)
        except ValueError as e:
            self.problem(path, str(e))
            return None
        if size < minimum:
            self.problem(path, f"must be at least {_show_size(minimum)}, got {value!r}")
            return None
        return size

    def boolean(self, path: str, value: object) -> Optional[bool]:
        if isinstance(value, bool):
            return value
        self.problem(path, f"expected true or false, got {_type_name(value)}")
        return None

    def duration(self, path: str, value: object) -> Optional[float]:
        try:
            return parse_duration(value)
        except ValueError as e:
            self.problem(path, str(e))
            return None

    def duration_in(self, path: str, value: object, low: float, high: float) -> Optional[float]:
        seconds = self.duration(path, value)
        if seconds is not None and not low <= seconds <= high:
            self.problem(path, f"{seconds:g} s out of range {low:g}-{high:g} s")
            return None
        return seconds

    def file(self, path: str, value: object) -> Optional[str]:
        """A file name, made absolute relative to the configuration file's directory."""
        text = self.string(path, value)
        if text is None:
            return None
        if not text:
            self.problem(path, "must not be empty")
            return None
        base = os.path.dirname(os.path.abspath(self.filename))
        return os.path.normpath(os.path.join(base, os.path.expanduser(text)))

    def bind(self, path: str, value: object) -> Optional[str]:
        description = self.string(path, value)
        if description is None:
            return None
        problem = _endpoint_problem(description)
        if problem is not None:
            self.problem(path, problem)
            return None
        return description


_TOP_KEYS = (
    "listener",
    "target_group",
    "demo_backend",
    "access_log",
    "admin",
    "drain_timeout",
    "max_connections",
    "workers",
)
_LISTENER_KEYS = (
    "name",
    "protocol",
    "bind",
    "rule",
    "allowed_origins",
    "max_message_size",
    "session_buffer",
    "max_refusal_body",
    "trusted_proxies",
    "client_timeout",
    "access_log",
    "default_domain",
    "max_body_size",
    "max_header_size",
    "max_request_line",
    "via",
    "underscores_in_headers",
    "header_timeout",
    "keepalive_timeout",
    "websocket_idle_timeout",
    "websocket_ping_interval",
    "websocket_ping_timeout",
    "websocket_deflate",
    "websocket_inflate_rate",
    "max_connections",
    "max_connections_per_ip",
    "websocket_handshake_rate",
    "websocket_handshake_burst",
    "allow",
    "deny",
    "tls",
    "redirect_to_https",
    "https_port",
)
_TLS_KEYS = (
    "certificates",
    "self_signed",
    "state_directory",
    "min_version",
    "ciphers",
    "session_tickets",
    "client_ca",
    "client_auth",
    "strict_sni",
)
_CERTIFICATE_KEYS = ("cert", "key", "passphrase_file", "ocsp_response", "default")
_RULE_KEYS = (
    "target_group",
    "host",
    "path",
    "allowed_origins",
    "max_message_size",
    "rewrite",
    "fixed_response",
    "redirect",
    "set_headers",
    "remove_headers",
    "allow",
    "deny",
    "relay",
)

#: Range of ``websocket_idle_timeout`` in seconds, as on the cloud balancer.
WEBSOCKET_IDLE_RANGE = (30.0, 3600.0)

#: Upper bound of connection counts and handshake rates.
_MAX_COUNT = 10_000_000

#: Most worker processes (``workers``).
MAX_WORKERS = 64
#: Most idle keep-alive HTTP connections a target group keeps per backend.
MAX_POOL_IDLE = 1000
_FRAMING_HEADERS = frozenset(
    {"connection", "content-length", "transfer-encoding", "upgrade", "keep-alive", "te", "trailer"}
)
_REWRITE_KEYS = ("strip_prefix", "pattern", "replacement")
_FIXED_RESPONSE_KEYS = ("status", "body", "content_type")
_REDIRECT_KEYS = ("location", "status")
_TARGET_GROUP_KEYS = (
    "backends",
    "policy",
    "connect_timeout",
    "response_timeout",
    "retries",
    "hash_key",
    "fail_open",
    "on_unhealthy",
    "on_unhealthy_grace",
    "http_pool_max_idle",
    "http_pool_idle_timeout",
    "health_check",
    "persistence",
    "passive",
    "scheme",
    "verify",
    "ca_file",
    "server_name",
)
_BACKEND_KEYS = ("address", "weight", "max_conns")
_HEALTH_CHECK_KEYS = (
    "enabled",
    "type",
    "port",
    "path",
    "method",
    "host",
    "expect_status",
    "expect_body",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "jitter",
)
_PERSISTENCE_KEYS = (
    "type",
    "cookie_name",
    "ttl",
    "cookie_path",
    "secure",
    "http_only",
    "same_site",
    "secret",
)
_PASSIVE_KEYS = ("failures", "ejection", "max_ejection", "count_5xx")
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HEADER_NAME = _COOKIE_NAME
_STATUS_RANGE = re.compile(r"\s*([1-5][0-9][0-9])\s*(?:-\s*([1-5][0-9][0-9])\s*)?\Z")
_DEMO_BACKEND_KEYS = ("name", "bind")
_ACCESS_LOG_KEYS = ("path", "format")
_ADMIN_KEYS = ("bind", "metrics_path", "allowed_hosts", "token_file")

#: Access log formats.
ACCESS_LOG_FORMATS = ("plain", "json")


def _config(reader: _Reader, path: str, document: dict[str, Any]) -> Optional[Config]:
    """The model of a whole parsed document; problems go to ``reader``."""
    reader.table("", document, _TOP_KEYS)
    groups_value = document.get("target_group", {})
    group_names: list[str] = []
    if isinstance(groups_value, dict):
        group_names = list(groups_value)
    else:
        reader.problem(
            "target_group",
            "expected a table of target groups ([target_group.NAME]), "
            f"got {_type_name(groups_value)}",
        )

    listeners = []
    if reader.required("", document, "listener", " (at least one [[listener]])"):
        for item_path, item in reader.tables("listener", document["listener"], "[[listener]]"):
            listeners.append((item_path, item, _listener(reader, item_path, item, group_names)))

    target_groups = []
    for name in group_names:
        item_path = _key_path("target_group", name)
        target_groups.append(_target_group(reader, item_path, name, groups_value[name]))

    demo_backends = []
    if "demo_backend" in document:
        for item_path, item in reader.tables(
            "demo_backend", document["demo_backend"], "[[demo_backend]]"
        ):
            demo_backends.append((item_path, item, _demo_backend(reader, item_path, item)))

    access_log = None
    if "access_log" in document:
        access_log = _access_log(reader, "access_log", document["access_log"])
    admin = []
    if "admin" in document:
        model = _admin(reader, "admin", document["admin"])
        if model is not None:
            admin.append(("admin", document["admin"], model))

    _check_unique(reader, listeners, "name", "name")
    _check_unique(reader, demo_backends, "name", "name")
    _check_unique(reader, listeners + demo_backends + admin, "bind", "bind string")
    top: dict[str, Any] = {}
    if "drain_timeout" in document:
        top["drain_timeout"] = reader.duration("drain_timeout", document["drain_timeout"])
    if "max_connections" in document:
        top["max_connections"] = reader.integer(
            "max_connections", document["max_connections"], 0, _MAX_COUNT
        )

    if "workers" in document:
        top["workers"] = reader.integer("workers", document["workers"], 1, MAX_WORKERS)

    if reader.problems:
        return None
    return Config(
        **top,
        path=path,
        listeners=tuple(model for _, _, model in listeners if model is not None),
        target_groups=tuple(model for model in target_groups if model is not None),
        demo_backends=tuple(model for _, _, model in demo_backends if model is not None),
        access_log=access_log,
        admin=admin[0][2] if admin else None,
    )


def _check_unique(
    reader: _Reader, items: list[tuple[str, dict[str, Any], object]], key: str, what: str
) -> None:
    """Report each table whose string ``key`` repeats an earlier table's."""
    seen: dict[str, str] = {}
    for path, table, _ in items:
        value = table.get(key)
        if not isinstance(value, str):
            continue
        if value in seen:
            reader.problem(_key_path(path, key), f"duplicate {what} {value!r} (also {seen[value]})")
        else:
            seen[value] = path


def _listener(
    reader: _Reader, path: str, data: dict[str, Any], group_names: Sequence[str]
) -> Optional[ListenerConfig]:
    before = len(reader.problems)
    reader.table(path, data, _LISTENER_KEYS)
    fields: dict[str, Any] = {}
    if reader.required(path, data, "name"):
        fields["name"] = reader.name(_key_path(path, "name"), data["name"])
    if "protocol" in data:
        fields["protocol"] = _protocol(reader, _key_path(path, "protocol"), data["protocol"])
    if reader.required(path, data, "bind"):
        fields["bind"] = reader.bind(_key_path(path, "bind"), data["bind"])
    _listener_tls(reader, path, data, fields)
    rules = []
    # A listener that redirects everything to HTTPS needs no rules.
    if ("rule" in data or not fields.get("redirect_to_https")) and reader.required(
        path, data, "rule", " (at least one [[listener.rule]])"
    ):
        for rule_path, rule in reader.tables(
            _key_path(path, "rule"), data["rule"], "[[listener.rule]]"
        ):
            rules.append((rule_path, _rule(reader, rule_path, rule, group_names)))
    _check_rules_distinct(reader, rules)
    fields["rules"] = tuple(rule for _, rule in rules)
    if "default_domain" in data:
        fields["default_domain"] = _default_domain(
            reader, _key_path(path, "default_domain"), data["default_domain"], rules
        )
    for key, minimum in (("max_body_size", 0), ("max_header_size", 1024), ("max_request_line", 64)):
        if key in data:
            fields[key] = reader.size(_key_path(path, key), data[key], minimum)
    for key in ("via", "underscores_in_headers"):
        if key in data:
            fields[key] = reader.boolean(_key_path(path, key), data[key])
    if "allowed_origins" in data:
        fields["allowed_origins"] = _origins(
            reader, _key_path(path, "allowed_origins"), data["allowed_origins"]
        )
    for key, check in (
        ("max_message_size", reader.size),
        ("max_refusal_body", reader.size),
        ("client_timeout", reader.duration),
    ):
        if key in data:
            fields[key] = check(_key_path(path, key), data[key])
    if "session_buffer" in data:
        fields["session_buffer"] = reader.size(
            _key_path(path, "session_buffer"), data["session_buffer"], MIN_SESSION_BUFFER
        )
    if "trusted_proxies" in data:
        fields["trusted_proxies"] = _networks(
            reader, _key_path(path, "trusted_proxies"), data["trusted_proxies"]
        )
    if "access_log" in data:
        fields["access_log"] = _access_log(
            reader, _key_path(path, "access_log"), data["access_log"]
        )
    _lifecycle_keys(reader, path, data, fields)
    _access_lists(reader, path, data, fields)
    if len(reader.problems) > before:
        return None
    return ListenerConfig(**fields)


def _lifecycle_keys(
    reader: _Reader, path: str, data: dict[str, Any], fields: dict[str, Any]
) -> None:
    """A listener's timeouts and connection limits (see clbproxy.ops.lifecycle and .limits)."""
    for key in ("header_timeout", "keepalive_timeout", "websocket_ping_timeout"):
        if key in data:
            fields[key] = reader.duration(_key_path(path, key), data[key])
    if "websocket_deflate" in data:
        fields["websocket_deflate"] = reader.choice(
            _key_path(path, "websocket_deflate"),
            data["websocket_deflate"],
            DEFLATE_MODES,
            "permessage-deflate mode",
        )
    if "websocket_idle_timeout" in data:
        key_path = _key_path(path, "websocket_idle_timeout")
        seconds = reader.duration(key_path, data["websocket_idle_timeout"])
        low, high = WEBSOCKET_IDLE_RANGE
        if seconds is not None and not low <= seconds <= high:
            reader.problem(key_path, f"{seconds:g} s out of range {low:g}-{high:g} s")
            seconds = None
        fields["websocket_idle_timeout"] = seconds
    if "websocket_ping_interval" in data:
        value = data["websocket_ping_interval"]
        key_path = _key_path(path, "websocket_ping_interval")
        if value == 0 and not isinstance(value, bool):
            fields["websocket_ping_interval"] = 0.0
        else:
            fields["websocket_ping_interval"] = reader.duration(key_path, value)
    for key in ("max_connections", "max_connections_per_ip"):
        if key in data:
            fields[key] = reader.integer(_key_path(path, key), data[key], 0, _MAX_COUNT)
    if "websocket_handshake_burst" in data:
        key = "websocket_handshake_burst"
        fields[key] = reader.integer(_key_path(path, key), data[key], 1, _MAX_COUNT)
    if "websocket_handshake_rate" in data:
        fields["websocket_handshake_rate"] = _rate(
            reader, _key_path(path, "websocket_handshake_rate"), data["websocket_handshake_rate"]
        )
    if "websocket_inflate_rate" in data:
        fields["websocket_inflate_rate"] = _inflate_rate(
            reader, _key_path(path, "websocket_inflate_rate"), data["websocket_inflate_rate"]
        )


def _rate(reader: _Reader, path: str, value: object) -> Optional[float]:
    """Events per second: a number from 0 (no limit) up."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reader.problem(path, f"expected a number of handshakes per second, got {_type_name(value)}")
        return None
    if not 0 <= value <= _MAX_COUNT:  # also false for nan
        reader.problem(path, f"{_shown(value)} out of range 0-{_MAX_COUNT} (0: no limit)")
        return None
    return float(value)


def _inflate_rate(reader: _Reader, path: str, value: object) -> Optional[int]:
    """Inflated bytes per second (a size: ``"16MiB"``): 0 (no limit) or at least 64KiB."""
    rate = reader.size(path, value)
    if rate is not None and 0 < rate < MIN_INFLATE_RATE:
        reader.problem(
            path,
            f"must be 0 (no limit) or at least {_show_size(MIN_INFLATE_RATE)} per second, "
            f"got {value!r}",
        )
        return None
    return rate


def _access_lists(reader: _Reader, path: str, data: dict[str, Any], fields: dict[str, Any]) -> None:
    """``allow`` and ``deny``: client networks in CIDR notation."""
    for key in ("allow", "deny"):
        if key in data:
            fields[key] = _networks(reader, _key_path(path, key), data[key])


def _protocol(reader: _Reader, path: str, value: object) -> Optional[str]:
    return reader.choice(path, value, PROTOCOLS, "protocol")


def _listener_tls(reader: _Reader, path: str, data: dict[str, Any], fields: dict[str, Any]) -> None:
    """``tls``, ``redirect_to_https`` and ``https_port`` of a listener, checked together."""
    https = data.get("protocol") == "https"
    tls_path = _key_path(path, "tls")
    if "tls" in data:
        if https:
            fields["tls"] = _tls(reader, tls_path, data["tls"])
        elif fields.get("protocol", "http") == "http":
            reader.problem(tls_path, 'only HTTPS listeners have TLS settings (protocol = "https")')
    elif https:
        reader.problem(
            path,
            "an HTTPS listener needs a [listener.tls] table with certificates "
            "(or self_signed = true)",
        )
    if "redirect_to_https" in data:
        key_path = _key_path(path, "redirect_to_https")
        redirect = reader.boolean(key_path, data["redirect_to_https"])
        if redirect and https:
            reader.problem(key_path, "is for HTTP listeners; this listener is already HTTPS")
        fields["redirect_to_https"] = redirect
    if "https_port" in data:
        fields["https_port"] = reader.integer(
            _key_path(path, "https_port"), data["https_port"], 1, 65535
        )


def _tls(reader: _Reader, path: str, value: object) -> Optional[TLSConfig]:
    before = len(reader.problems)
    table = reader.table(path, value, _TLS_KEYS)
    if table is None:
        return None
    fields: dict[str, Any] = {}
    for key in ("self_signed", "session_tickets", "strict_sni"):
        if key in table:
            fields[key] = reader.boolean(_key_path(path, key), table[key])
    if "state_directory" in table:
        fields["state_directory"] = reader.string(
            _key_path(path, "state_directory"), table["state_directory"]
        )
    if "certificates" in table:
        certificates = []
        for item_path, item in reader.tables(
            _key_path(path, "certificates"), table["certificates"], "certificate table"
        ):
            certificates.append(_certificate(reader, item_path, item))
        fields["certificates"] = tuple(certificates)
        defaults = [c for c in certificates if c is not None and c.default]
        if len(defaults) > 1:
            reader.problem(
                _key_path(path, "certificates"), "more than one certificate has default = true"
            )
    if bool(fields.get("certificates")) == bool(fields.get("self_signed")):
        reader.problem(path, "give either certificates = [...] or self_signed = true")
    if "min_version" in table:
        fields["min_version"] = reader.choice(
            _key_path(path, "min_version"), table["min_version"], TLS_VERSIONS, "TLS version"
        )
    if "ciphers" in table:
        ciphers = reader.string(_key_path(path, "ciphers"), table["ciphers"])
        if ciphers is not None and not ciphers.strip():
            reader.problem(_key_path(path, "ciphers"), "must not be empty")
        fields["ciphers"] = ciphers
    if "client_ca" in table:
        fields["client_ca"] = reader.file(_key_path(path, "client_ca"), table["client_ca"])
    if "client_auth" in table:
        key_path = _key_path(path, "client_auth")
        fields["client_auth"] = reader.choice(
            key_path, table["client_auth"], CLIENT_AUTH, "client_auth"
        )
        if "client_ca" not in table:
            reader.problem(key_path, "needs client_ca, the CAs that sign client certificates")
    if len(reader.problems) > before:
        return None
    return TLSConfig(**fields)


def _certificate(reader: _Reader, path: str, data: dict[str, Any]) -> Optional[CertificateConfig]:
    before = len(reader.problems)
    reader.table(path, data, _CERTIFICATE_KEYS)
    fields: dict[str, Any] = {}
    for key in ("cert", "key"):
        if reader.required(path, data, key):
            fields[key] = reader.file(_key_path(path, key), data[key])
    for key in ("passphrase_file", "ocsp_response"):
        if key in data:
            fields[key] = reader.file(_key_path(path, key), data[key])
    if "default" in data:
        fields["default"] = reader.boolean(_key_path(path, "default"), data["default"])
    if len(reader.problems) > before:
        return None
    return CertificateConfig(**fields)


def _rule(
    reader: _Reader, path: str, data: dict[str, Any], group_names: Sequence[str]
) -> Optional[RuleConfig]:
    before = len(reader.problems)
    reader.table(path, data, _RULE_KEYS)
    fields: dict[str, Any] = {}
    actions = [key for key in ("target_group", "fixed_response", "redirect") if key in data]
    if not actions:
        reader.problem(
            path, "missing required key 'target_group' (or 'fixed_response' or 'redirect')"
        )
    elif len(actions) > 1:
        reader.problem(path, f"give only one of {', '.join(map(repr, actions))}")
    if "target_group" in data:
        group_path = _key_path(path, "target_group")
        group = reader.string(group_path, data["target_group"])
        if group is not None and group not in group_names:
            defined = ", ".join(map(_show_name, group_names)) if group_names else "none"
            reader.problem(group_path, f"unknown target group {group!r} (defined: {defined})")
        fields["target_group"] = group
    for key, parse in (
        ("rewrite", _rewrite),
        ("fixed_response", _fixed_response),
        ("redirect", _redirect),
        ("set_headers", _set_headers),
        ("remove_headers", _remove_headers),
    ):
        if key in data:
            fields[key] = parse(reader, _key_path(path, key), data[key])
    if "host" in data:
        fields["host"] = _rule_host(reader, _key_path(path, "host"), data["host"])
    if "path" in data:
        fields["path"] = _rule_path(reader, _key_path(path, "path"), data["path"])
    if "allowed_origins" in data:
        fields["allowed_origins"] = _origins(
            reader, _key_path(path, "allowed_origins"), data["allowed_origins"]
        )
    if "max_message_size" in data:
        fields["max_message_size"] = reader.size(
            _key_path(path, "max_message_size"), data["max_message_size"]
        )
    _access_lists(reader, path, data, fields)
    if "relay" in data:
        fields["relay"] = reader.choice(
            _key_path(path, "relay"), data["relay"], RELAY_MODES, "relay mode"
        )
    if len(reader.problems) > before:
        return None
    return RuleConfig(**fields)


def _check_rules_distinct(reader: _Reader, rules: list[tuple[str, Optional[RuleConfig]]]) -> None:
    """Report a rule matching the same host and path as an earlier one: it could never win."""
    seen: dict[tuple[Optional[str], str], str] = {}
    for path, rule in rules:
        if rule is None:
            continue
        key = (rule.host, rule.path)
        if key in seen:
            host = "any host" if rule.host is None else f"host {rule.host!r}"
            reader.problem(
                path, f"{_tail(seen[key])} already matches {host} and path {rule.path!r}"
            )
        else:
            seen[key] = path


def _rule_host(reader: _Reader, path: str, value: object) -> Optional[str]:
    """A rule's host pattern in canonical text: lower-cased names, IPv6 without brackets."""
    text = reader.string(path, value)
    if text is None:
        return None
    if not text:
        reader.problem(path, "must not be empty; leave host out to match any host")
        return None
    try:
        pattern = parse_host(text)
    except ValueError as e:
        reader.problem(path, str(e))
        return None
    if pattern.kind != HOST_EXACT:
        return pattern.text
    name = pattern.value
    if ":" in name or name.startswith("["):
        try:
            return str(ipaddress.IPv6Address(name.strip("[]")))
        except ValueError:
            pass
        if ":" in name and not name.endswith("]"):
            reader.problem(path, f"{text!r}: a host must not include a port")
        else:
            reader.problem(path, f"{text!r} is not an IPv6 address")
        return None
    try:
        return _host(name)
    except ValueError as e:
        reader.problem(path, str(e))
        return None


def _rule_path(reader: _Reader, path: str, value: object) -> Optional[str]:
    """A rule's path pattern in canonical text: ``= /x``, ``^~ /x``, ``~ re``, ``/x``..."""
    text = reader.string(path, value)
    if text is None:
        return None
    try:
        return parse_path(text).text
    except ValueError as e:
        reader.problem(path, str(e))
        return None


def _default_domain(
    reader: _Reader, path: str, value: object, rules: list[tuple[str, Optional[RuleConfig]]]
) -> Optional[str]:
    """The default domain: the host of some rule, in canonical text."""
    host = _rule_host(reader, path, value)
    if host is None:
        return None
    hosts = [rule.host for _, rule in rules if rule is not None]
    if host not in hosts:
        shown = ", ".join(repr(h) for h in dict.fromkeys(hosts) if h is not None) or "none"
        reader.problem(path, f"{host!r} is not the host of any rule (hosts: {shown})")
        return None
    if None in hosts:
        reader.problem(
            path,
            "rules without 'host' already take requests for any other host; "
            "give them a host or leave default_domain out",
        )
        return None
    return host


def _rewrite(reader: _Reader, path: str, value: object) -> Optional[RewriteConfig]:
    table = reader.table(path, value, _REWRITE_KEYS)
    if table is None:
        return None
    if ("strip_prefix" in table) == ("pattern" in table):
        reader.problem(path, "give exactly one of 'strip_prefix' or 'pattern' (with 'replacement')")
        return None
    if "strip_prefix" in table:
        prefix = reader.string(_key_path(path, "strip_prefix"), table["strip_prefix"])
        if prefix is not None and not prefix.startswith("/"):
            reader.problem(_key_path(path, "strip_prefix"), f"{prefix!r} must start with '/'")
            return None
        if "replacement" in table:
            reader.problem(_key_path(path, "replacement"), "only goes with 'pattern'")
            return None
        return None if prefix is None else RewriteConfig(strip_prefix=prefix)
    pattern_path = _key_path(path, "pattern")
    pattern = reader.string(pattern_path, table["pattern"])
    replacement = reader.string(_key_path(path, "replacement"), table.get("replacement", ""))
    if pattern is None or replacement is None:
        return None
    try:
        compiled = compile_regex(pattern)
    except ValueError as e:
        reader.problem(pattern_path, str(e))
        return None
    try:
        check_replacement(compiled, replacement)
    except ValueError as e:
        reader.problem(_key_path(path, "replacement"), str(e))
        return None
    return RewriteConfig(pattern=pattern, replacement=replacement)


def _fixed_response(reader: _Reader, path: str, value: object) -> Optional[FixedResponseConfig]:
    table = reader.table(path, value, _FIXED_RESPONSE_KEYS)
    if table is None or not reader.required(path, table, "status"):
        return None
    status = reader.integer(_key_path(path, "status"), table["status"], 200, 599)
    body = reader.string(_key_path(path, "body"), table.get("body", ""))
    content_type = reader.string(
        _key_path(path, "content_type"), table.get("content_type", "text/plain; charset=utf-8")
    )
    if content_type is not None and not _header_value_ok(content_type):
        reader.problem(_key_path(path, "content_type"), f"{content_type!r} is not a header value")
        return None
    if status is None or body is None or content_type is None:
        return None
    return FixedResponseConfig(status=status, body=body, content_type=content_type)


def _redirect(reader: _Reader, path: str, value: object) -> Optional[RedirectConfig]:
    if isinstance(value, str):
        value = {"location": value}
    table = reader.table(path, value, _REDIRECT_KEYS)
    if table is None or not reader.required(path, table, "location"):
        return None
    location = reader.string(_key_path(path, "location"), table["location"])
    if location is not None and (not location or not _header_value_ok(location)):
        reader.problem(_key_path(path, "location"), f"{location!r} is not a usable Location")
        return None
    status = None
    if "status" in table:
        status = reader.choice(
            _key_path(path, "status"),
            str(table["status"]),
            ("301", "302", "303", "307", "308"),
            "redirect status",
        )
        if status is None:
            return None
    if location is None:
        return None
    return RedirectConfig(location=location, status=int(status) if status else None)


def _set_headers(reader: _Reader, path: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        reader.problem(
            path, f'expected a table like {{ "X-Env" = "prod" }}, got {_type_name(value)}'
        )
        return ()
    headers = []
    for name, header_value in value.items():
        item_path = _key_path(path, name)
        text = reader.string(item_path, header_value)
        if not _TOKEN.match(name):
            reader.problem(item_path, f"{name!r} is not a header name")
        elif name.lower() in _FRAMING_HEADERS:
            reader.problem(item_path, f"{name!r} describes one hop or the body; it cannot be set")
        elif text is not None and not _header_value_ok(text):
            reader.problem(item_path, f"{text!r} is not a header value (no control characters)")
        elif text is not None:
            headers.append((name, text))
    return tuple(headers)


def _remove_headers(reader: _Reader, path: str, value: object) -> tuple[str, ...]:
    names = []
    for item_path, name in reader.strings(path, value):
        if not _TOKEN.match(name):
            reader.problem(item_path, f"{name!r} is not a header name")
        else:
            names.append(name.lower())
    return tuple(names)


def _header_value_ok(text: str) -> bool:
    return all(
        char == "\t" or 0x20 <= ord(char) < 0x7F or 0xA0 <= ord(char) <= 0xFF for char in text
    )


def _origins(reader: _Reader, path: str, value: object) -> tuple[str, ...]:
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
    host, port_text = _split_host_port(rest, text)
    origin = f"{scheme}://{_bracketed(_host(host))}"
    port = _DEFAULT_PORTS[scheme] if port_text is None else _port(port_text, 1)
    return origin if port == _DEFAULT_PORTS[scheme] else f"{origin}:{port}"


def _networks(reader: _Reader, path: str, value: object) -> tuple[str, ...]:
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


def _target_group(
    reader: _Reader, path: str, name: str, data: object
) -> Optional[TargetGroupConfig]:
    before = len(reader.problems)
    if not _NAME.match(name):
        reader.problem(path, f"invalid name {name!r}: use letters, digits, '_', '.' and '-'")
    table = reader.table(path, data, _TARGET_GROUP_KEYS)
    if table is None:
        return None
    fields: dict[str, Any] = {"name": name}
    if reader.required(path, table, "backends"):
        fields["backends"] = _backends(reader, _key_path(path, "backends"), table["backends"])
    if "policy" in table:
        fields["policy"] = reader.choice(
            _key_path(path, "policy"), table["policy"], POLICIES, "policy"
        )
    for key in ("connect_timeout", "response_timeout"):
        if key in table:
            fields[key] = reader.duration(_key_path(path, key), table[key])
    if "retries" in table:
        fields["retries"] = reader.integer(_key_path(path, "retries"), table["retries"], 0, 10)
    if "hash_key" in table:
        fields["hash_key"] = _hash_key(reader, _key_path(path, "hash_key"), table["hash_key"])
    if "fail_open" in table:
        fields["fail_open"] = reader.boolean(_key_path(path, "fail_open"), table["fail_open"])
    if "on_unhealthy" in table:
        fields["on_unhealthy"] = reader.choice(
            _key_path(path, "on_unhealthy"), table["on_unhealthy"], ON_UNHEALTHY, "action"
        )
    if "on_unhealthy_grace" in table:
        fields["on_unhealthy_grace"] = reader.duration_in(
            _key_path(path, "on_unhealthy_grace"), table["on_unhealthy_grace"], 0.001, 3600
        )
    if "http_pool_max_idle" in table:
        fields["http_pool_max_idle"] = reader.integer(
            _key_path(path, "http_pool_max_idle"),
            table["http_pool_max_idle"],
            0,
            MAX_POOL_IDLE,
        )
    if "http_pool_idle_timeout" in table:
        fields["http_pool_idle_timeout"] = reader.duration_in(
            _key_path(path, "http_pool_idle_timeout"),
            table["http_pool_idle_timeout"],
            0.001,
            3600,
        )
    for key, build in (
        ("health_check", _health_check),
        ("persistence", _persistence),
        ("passive", _passive),
    ):
        if key in table:
            fields[key] = build(reader, _key_path(path, key), table[key])
    _backend_tls(reader, path, table, fields)
    if len(reader.problems) > before:
        return None
    return TargetGroupConfig(**fields)


def _hash_key(reader: _Reader, path: str, value: object) -> Optional[str]:
    text = reader.string(path, value)
    if text is None:
        return None
    if text == "source_ip":
        return text
    source, _, name = text.partition(":")
    if source not in HASH_SOURCES or not name or not _HEADER_NAME.match(name):
        reader.problem(
            path,
            f"{text!r} is not a hash key; use 'source_ip', 'header:NAME', 'cookie:NAME' "
            "or 'query:NAME'",
        )
        return None
    return f"{source}:{name.lower()}" if source == "header" else text


def _health_check(reader: _Reader, path: str, value: object) -> Optional[HealthCheckConfig]:
    before = len(reader.problems)
    table = reader.table(path, value, _HEALTH_CHECK_KEYS)
    if table is None:
        return None
    fields: dict[str, Any] = {"enabled": True}
    if "enabled" in table:
        fields["enabled"] = reader.boolean(_key_path(path, "enabled"), table["enabled"])
    if "type" in table:
        fields["type"] = reader.choice(
            _key_path(path, "type"), table["type"], HEALTH_CHECK_TYPES, "health check type"
        )
    if "port" in table:
        fields["port"] = reader.integer(_key_path(path, "port"), table["port"], 1, 65535)
    if "path" in table:
        fields["path"] = _check_path(reader, _key_path(path, "path"), table["path"])
    if "method" in table:
        fields["method"] = reader.choice(
            _key_path(path, "method"), table["method"], ("GET", "HEAD"), "method"
        )
    if "host" in table:
        host = reader.string(_key_path(path, "host"), table["host"])
        if host is not None and (not host or any(c.isspace() for c in host)):
            reader.problem(_key_path(path, "host"), f"{host!r} is not a Host header value")
        fields["host"] = host
    if "expect_status" in table:
        fields["expect_status"] = _status_ranges(
            reader, _key_path(path, "expect_status"), table["expect_status"]
        )
    if "expect_body" in table:
        fields["expect_body"] = reader.string(_key_path(path, "expect_body"), table["expect_body"])
    for key, low, high in (("interval", 2, 300), ("timeout", 2, 60)):
        if key in table:
            fields[key] = reader.duration_in(_key_path(path, key), table[key], low, high)
    for key in ("healthy_threshold", "unhealthy_threshold"):
        if key in table:
            fields[key] = reader.integer(_key_path(path, key), table[key], 2, 10)
    if "jitter" in table:
        jitter = table["jitter"]
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            reader.problem(
                _key_path(path, "jitter"),
                f"expected a fraction of the interval (0-0.5), got {_type_name(jitter)}",
            )
        elif not 0 <= jitter <= 0.5:
            reader.problem(_key_path(path, "jitter"), f"{jitter} out of range 0-0.5")
        else:
            fields["jitter"] = float(jitter)
    if fields.get("type") in ("tcp",) and ("path" in table or "expect_status" in table):
        reader.problem(path, "path and expect_status apply to http, https and websocket checks")
    if len(reader.problems) > before:
        return None
    interval, timeout = fields.get("interval", 5.0), fields.get("timeout", 2.0)
    if timeout > interval:
        reader.problem(
            _key_path(path, "timeout"),
            f"{timeout:g} s is longer than the interval ({interval:g} s)",
        )
        return None
    return HealthCheckConfig(**fields)


def _check_path(reader: _Reader, path: str, value: object) -> Optional[str]:
    text = reader.string(path, value)
    if text is not None and (
        not text.startswith("/") or any(c.isspace() or not c.isprintable() for c in text)
    ):
        reader.problem(path, f"{text!r} must start with '/' and have no spaces")
        return None
    return text


def _status_ranges(reader: _Reader, path: str, value: object) -> tuple[tuple[int, int], ...]:
    """Status ranges from ``["200-399", "404"]`` or ``["2xx", "3xx"]``."""
    ranges = []
    for item_path, text in reader.strings(path, value):
        lower = text.strip().lower()
        if re.match(r"[1-5]xx\Z", lower):
            ranges.append((int(lower[0]) * 100, int(lower[0]) * 100 + 99))
            continue
        match = _STATUS_RANGE.match(text)
        low = int(match.group(1)) if match else 0
        high = int(match.group(2) or low) if match else 0
        if match is None or high < low:
            reader.problem(
                item_path, f"{text!r} is not a status range; use '200', '200-399' or '2xx'"
            )
            continue
        ranges.append((low, high))
    if isinstance(value, list) and not value:
        reader.problem(path, "needs at least one status range")
    return tuple(ranges)


def _persistence(reader: _Reader, path: str, value: object) -> Optional[PersistenceConfig]:
    before = len(reader.problems)
    table = reader.table(path, value, _PERSISTENCE_KEYS)
    if table is None:
        return None
    fields: dict[str, Any] = {}
    if reader.required(path, table, "type", " ('cookie', 'source_ip' or 'none')"):
        fields["type"] = reader.choice(
            _key_path(path, "type"), table["type"], PERSISTENCE_TYPES, "persistence type"
        )
    if "cookie_name" in table:
        name = reader.string(_key_path(path, "cookie_name"), table["cookie_name"])
        if name is not None and not _COOKIE_NAME.match(name):
            reader.problem(_key_path(path, "cookie_name"), f"{name!r} is not a cookie name")
        fields["cookie_name"] = name
    if "ttl" in table:
        fields["ttl"] = reader.duration_in(_key_path(path, "ttl"), table["ttl"], 30, 3600)
    if "cookie_path" in table:
        fields["cookie_path"] = _check_path(
            reader, _key_path(path, "cookie_path"), table["cookie_path"]
        )
        if fields["cookie_path"] is not None and ";" in fields["cookie_path"]:
            reader.problem(_key_path(path, "cookie_path"), "must not contain ';'")
    for key in ("secure", "http_only"):
        if key in table:
            fields[key] = reader.boolean(_key_path(path, key), table[key])
    if "same_site" in table:
        fields["same_site"] = reader.choice(
            _key_path(path, "same_site"), table["same_site"], ("Strict", "Lax", "None"), "SameSite"
        )
    if "secret" in table:
        secret = reader.string(_key_path(path, "secret"), table["secret"])
        if secret is not None and len(secret) < 16:
            reader.problem(_key_path(path, "secret"), "must be at least 16 characters")
        fields["secret"] = secret
    if fields.get("same_site") == "None" and not fields.get("secure", False):
        reader.problem(path, "same_site = 'None' needs secure = true (browsers require it)")
    if len(reader.problems) > before:
        return None
    return PersistenceConfig(**fields)


def _passive(reader: _Reader, path: str, value: object) -> Optional[PassiveConfig]:
    before = len(reader.problems)
    table = reader.table(path, value, _PASSIVE_KEYS)
    if table is None:
        return None
    fields: dict[str, Any] = {}
    if "failures" in table:
        fields["failures"] = reader.integer(_key_path(path, "failures"), table["failures"], 1, 100)
    for key in ("ejection", "max_ejection"):
        if key in table:
            fields[key] = reader.duration_in(_key_path(path, key), table[key], 1, 86400)
    if "count_5xx" in table:
        fields["count_5xx"] = reader.boolean(_key_path(path, "count_5xx"), table["count_5xx"])
    if len(reader.problems) > before:
        return None
    model = PassiveConfig(**fields)
    if model.max_ejection < model.ejection:
        reader.problem(
            _key_path(path, "max_ejection"),
            f"{model.max_ejection:g} s is shorter than ejection ({model.ejection:g} s)",
        )
        return None
    return model


def _backend_tls(reader: _Reader, path: str, table: dict[str, Any], fields: dict[str, Any]) -> None:
    if "scheme" in table:
        scheme = reader.choice(
            _key_path(path, "scheme"), table["scheme"], BACKEND_SCHEMES, "scheme"
        )
        fields["tls"] = scheme in ("https", "wss")
    if "verify" in table:
        fields["verify"] = reader.boolean(_key_path(path, "verify"), table["verify"])
    if "ca_file" in table:
        fields["ca_file"] = reader.file(_key_path(path, "ca_file"), table["ca_file"])
    if "server_name" in table:
        key_path = _key_path(path, "server_name")
        name = reader.string(key_path, table["server_name"])
        if name is not None:
            try:
                fields["server_name"] = _host(name)
            except ValueError as e:
                reader.problem(key_path, str(e))
    if not fields.get("tls"):
        for key in ("verify", "ca_file", "server_name"):
            if key in table:
                reader.problem(_key_path(path, key), 'only applies with scheme = "wss" or "https"')


def _backends(reader: _Reader, path: str, value: object) -> tuple[BackendConfig, ...]:
    if not isinstance(value, list):
        reader.problem(path, f"expected an array of backends, got {_type_name(value)}")
        return ()
    if not value:
        reader.problem(path, "needs at least one backend")
    backends: list[BackendConfig] = []
    seen: dict[tuple[str, int], str] = {}
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        backend = _backend(reader, item_path, item)
        if backend is None:
            continue
        key = (backend.host, backend.port)
        if key in seen:
            reader.problem(
                item_path, f"duplicate address {backend.address!r} (also {_tail(seen[key])})"
            )
        else:
            seen[key] = item_path
            backends.append(backend)
    return tuple(backends)


def _backend(reader: _Reader, path: str, value: object) -> Optional[BackendConfig]:
    before = len(reader.problems)
    weight = None
    max_conns = 0
    if isinstance(value, dict):
        reader.table(path, value, _BACKEND_KEYS)
        if "weight" in value:
            weight = reader.integer(_key_path(path, "weight"), value["weight"], 0, 100)
        if "max_conns" in value:
            max_conns = reader.integer(
                _key_path(path, "max_conns"), value["max_conns"], 0, 10_000_000
            )
        if not reader.required(path, value, "address"):
            return None
        address_path = _key_path(path, "address")
        address = reader.string(address_path, value["address"])
    elif isinstance(value, str):
        address_path, address = path, value
    else:
        reader.problem(
            path,
            'expected a "host:port" string or a table { address = "host:port", weight = 10 }, '
            f"got {_type_name(value)}",
        )
        return None
    if address is None:
        return None
    try:
        host, port = _split_host_port(address, address)
        if port is None:
            raise ValueError(f"{address!r} has no port; expected host:port")
        backend = BackendConfig(host=_host(host), port=_port(port, 1))
    except ValueError as e:
        reader.problem(address_path, str(e))
        return None
    if len(reader.problems) > before:
        return None
    if max_conns:
        backend = attrs.evolve(backend, max_conns=max_conns)
    return backend if weight is None else attrs.evolve(backend, weight=weight)


def _demo_backend(reader: _Reader, path: str, data: dict[str, Any]) -> Optional[DemoBackendConfig]:
    before = len(reader.problems)
    reader.table(path, data, _DEMO_BACKEND_KEYS)
    fields: dict[str, Any] = {}
    if reader.required(path, data, "name"):
        fields["name"] = reader.name(_key_path(path, "name"), data["name"])
    if reader.required(path, data, "bind"):
        fields["bind"] = reader.bind(_key_path(path, "bind"), data["bind"])
    if len(reader.problems) > before:
        return None
    return DemoBackendConfig(**fields)


def _access_log(reader: _Reader, path: str, value: object) -> Optional[AccessLogConfig]:
    before = len(reader.problems)
    data = reader.table(path, value, _ACCESS_LOG_KEYS)
    if data is None:
        return None
    fields: dict[str, Any] = {}
    if reader.required(path, data, "path", ' (a file, or "-" for stdout)'):
        log_path = reader.string(_key_path(path, "path"), data["path"])
        if log_path == "":
            reader.problem(_key_path(path, "path"), 'must not be empty; use "-" for stdout')
        fields["path"] = log_path
    if "format" in data:
        fields["format"] = reader.choice(
            _key_path(path, "format"), data["format"], ACCESS_LOG_FORMATS, "format"
        )
    if len(reader.problems) > before:
        return None
    return AccessLogConfig(**fields)


def _admin(reader: _Reader, path: str, value: object) -> Optional[AdminConfig]:
    before = len(reader.problems)
    data = reader.table(path, value, _ADMIN_KEYS)
    if data is None:
        return None
    fields: dict[str, Any] = {}
    if "bind" in data:
        fields["bind"] = reader.bind(_key_path(path, "bind"), data["bind"])
    if "metrics_path" in data:
        metrics_path = reader.string(_key_path(path, "metrics_path"), data["metrics_path"])
        if metrics_path is not None and (
            not metrics_path.startswith("/")
            or metrics_path == "/"
            or metrics_path.startswith("/api/")
            or any(char in "?#" or char.isspace() for char in metrics_path)
        ):
            reader.problem(
                _key_path(path, "metrics_path"),
                f"{metrics_path!r} must be a path like '/metrics' "
                "(not '/' or under '/api/', no query or spaces)",
            )
        fields["metrics_path"] = metrics_path
    if "allowed_hosts" in data:
        fields["allowed_hosts"] = _allowed_hosts(
            reader, _key_path(path, "allowed_hosts"), data["allowed_hosts"]
        )
    if "token_file" in data:
        key = _key_path(path, "token_file")
        token_file = reader.file(key, data["token_file"])
        if token_file is not None:
            fields["token_file"] = token_file
            fields["token"] = _read_token(reader, key, token_file)
    if len(reader.problems) > before:
        return None
    return AdminConfig(**fields)


#: A name ``allowed_hosts`` may list: DNS labels (underscores tolerated), no port.
_ALLOWED_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?\Z")

#: What a bearer token may be made of (RFC 6750's b64token).
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*\Z")


def _allowed_hosts(reader: _Reader, path: str, value: object) -> tuple[str, ...]:
    """Host names, lower-cased and without a final dot, as the admin site compares them."""
    names = []
    for item_path, text in reader.strings(path, value):
        if not _ALLOWED_HOST.match(text) or ".." in text:
            reader.problem(
                item_path,
                f"{text!r} is not a host name like 'admin.example.net' (no port, no scheme)",
            )
            continue
        names.append(text.lower().rstrip("."))
    return tuple(names)


def _read_token(reader: _Reader, path: str, token_file: str) -> Optional[str]:
    """The bearer token in ``token_file`` (surrounding whitespace ignored)."""
    try:
        with open(token_file, "rb") as stream:
            raw = stream.read(4097)
    except OSError as error:
        reader.problem(path, f"cannot read {token_file}: {error.strerror or error}")
        return None
    token = raw.decode("ascii", "replace").strip()
    if not token:
        reader.problem(path, f"{token_file} is empty; put the token on its first line")
        return None
    if len(raw) > 4096 or not _BEARER_TOKEN.match(token):
        reader.problem(
            path,
            f"{token_file} must hold one token of at most 4096 letters, digits and -._~+/ "
            "(like the output of 'openssl rand -hex 32')",
        )
        return None
    return token


def _split_host_port(text: str, original: str) -> tuple[str, Optional[str]]:
    """``(host, port text or None)`` of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ValueError(f"{original!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{original!r}: {host!r} is not an IPv6 address") from None
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"{original!r}: expected ':port' after ']'")
        return host, rest[1:]
    if text.count(":") > 1:
        raise ValueError(f"{original!r}: put an IPv6 address in brackets, like '[::1]:8080'")
    host, separator, port = text.partition(":")
    if not host:
        raise ValueError(f"{original!r} has no host")
    return host, port if separator else None


def _port(text: str, low: int) -> int:
    if not _DIGITS.match(text):
        raise ValueError(f"port {text!r} is not a number")
    port = int(text) if len(text) <= 10 else 1 << 64
    if not low <= port <= 65535:
        shown = port if len(text) <= 10 else text
        raise ValueError(f"port {shown} out of range {low}-65535")
    return port


def _host(text: str) -> str:
    """An IP literal or DNS name, lower-cased, without a trailing dot or brackets."""
    if ":" in text:
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv6 address") from None
    name = text.lower()
    if name and all(char in "0123456789." for char in name):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 address") from None
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{text!r} is not a valid host name")
    return name


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _EndpointError(Exception):
    """Why an endpoint description cannot be used."""


def _endpoint_problem(description: str) -> Optional[str]:
    """Why ``description`` is not a usable server endpoint, or ``None``.

    The description is checked against what ``serverFromString`` would do, with
    readable messages, and then parsed for real against a ``MemoryReactor``
    (nothing listens).  ``systemd:`` endpoints are only checked here: Twisted
    looks their descriptors up when parsing, and they exist only under systemd.
    """
    shown = repr(description)
    try:
        args, kwargs = _endpoint_arguments(description)
        kinds = [arg.lower() for arg in args[:2]]
        if kinds[:1] == ["ssl"] or kinds == ["haproxy", "ssl"]:
            return f"{shown} {_TLS_NOT_ALLOWED}"
        _check_endpoint(args, kwargs)
    except _EndpointError as e:
        message = f"{shown}: {e}"
        if re.search(r"interface=[0-9A-Fa-f]*:", description):
            message += r"; escape the colons of an IPv6 address, like 'interface=\:\:1'"
        return message
    if "systemd" in args[:2]:
        return None
    try:
        serverFromString(MemoryReactor(), description)
    except Exception as e:
        return f"{shown}: {str(e) or type(e).__name__}"
    return None


def _endpoint_arguments(description: str) -> tuple[list[str], dict[str, str]]:
    """Positional and keyword arguments of an endpoint description, as Twisted splits them.

    ``:`` separates arguments, the first ``=`` in one makes it a keyword argument,
    and a backslash escapes the next character.
    """
    if not description:
        raise _EndpointError(f"must not be empty; {_USE_ENDPOINT}")
    args: list[str] = []
    kwargs: dict[str, str] = {}
    parts: list[str] = [""]
    characters = iter(description)
    for char in characters:
        if char == ":":
            _add_argument(parts, args, kwargs)
            parts = [""]
        elif char == "=" and len(parts) == 1:
            parts.append("")
        elif char == "\\":
            escaped = next(characters, None)
            if escaped is None:
                raise _EndpointError("ends with a lone backslash")
            parts[-1] += escaped
        else:
            parts[-1] += char
    _add_argument(parts, args, kwargs)
    return args, kwargs


def _add_argument(parts: list[str], args: list[str], kwargs: dict[str, str]) -> None:
    if len(parts) == 1:
        args.append(parts[0])
        return
    key, value = parts
    if key in kwargs:
        raise _EndpointError(f"option {key!r} given twice")
    kwargs[key] = value


def _check_endpoint(args: list[str], kwargs: dict[str, str]) -> None:
    """Raise :class:`_EndpointError` unless the parsed description is a usable endpoint."""
    if not args:
        raise _EndpointError(f"must start with the endpoint type; {_USE_ENDPOINT}")
    kind = args[0]
    if kind == "haproxy":
        if len(args) < 2:
            raise _EndpointError("haproxy: needs the endpoint it wraps, like 'haproxy:tcp:8080'")
        if args[1] == "haproxy":
            raise _EndpointError("haproxy: cannot wrap another haproxy: endpoint")
        _check_endpoint(args[1:], kwargs)
        return
    if kind not in _ENDPOINT_PARAMETERS:
        raise _EndpointError(f"unknown endpoint type {kind!r}; {_USE_ENDPOINT}")
    names = _ENDPOINT_PARAMETERS[kind]
    if len(args) - 1 > len(names):
        raise _EndpointError(f"too many arguments; {kind}: takes {', '.join(names)}")
    params = dict(zip(names, args[1:]))
    for key, value in kwargs.items():
        if key not in names:
            hint = _did_you_mean(key, names) or f"; options: {', '.join(names)}"
            raise _EndpointError(f"unknown option {key!r} for {kind}:{hint}")
        if key in params:
            raise _EndpointError(f"option {key!r} given twice")
        params[key] = value
    _ENDPOINT_CHECKS[kind](kind, params)


def _check_tcp(kind: str, params: dict[str, str]) -> None:
    port = params.get("port")
    if not port:
        raise _EndpointError(f"needs a port, like '{kind}:8080'")
    if not _DIGITS.match(port):
        raise _EndpointError(f"port must be a number, got {port!r}")
    number = int(port) if len(port) <= 10 else 1 << 64
    if number > 65535:
        raise _EndpointError(f"port {number if len(port) <= 10 else port} out of range 0-65535")
    _check_backlog(params)
    interface = params.get("interface", "")
    try:
        version = ipaddress.ip_address(interface).version
    except ValueError:
        return
    if kind == "tcp" and version == 6:
        raise _EndpointError(f"interface {interface!r} is an IPv6 address; use tcp6:")
    if kind == "tcp6" and version == 4:
        raise _EndpointError(f"interface {interface!r} is an IPv4 address; use tcp:")


def _check_unix(kind: str, params: dict[str, str]) -> None:
    if not params.get("address"):
        raise _EndpointError("needs a socket path, like 'unix:/run/clbproxy.sock'")
    mode = params.get("mode", "666")
    if not re.match(r"[0-7]{1,4}\Z", mode):
        raise _EndpointError(f"mode must be an octal number like 660, got {mode!r}")
    if params.get("lockfile", "1") not in ("0", "1"):
        raise _EndpointError(f"lockfile must be 0 or 1, got {params['lockfile']!r}")
    _check_backlog(params)


def _check_systemd(kind: str, params: dict[str, str]) -> None:
    domain = params.get("domain")
    if not domain:
        raise _EndpointError(
            "needs a domain and an index or name, like 'systemd:domain=INET:index=0'"
        )
    if domain not in ("INET", "INET6", "UNIX"):
        raise _EndpointError(f"domain must be INET, INET6 or UNIX, got {domain!r}")
    if ("index" in params) == ("name" in params):
        raise _EndpointError("give exactly one of index (a number) or name")
    index = params.get("index")
    if index is not None and not _DIGITS.match(index):
        raise _EndpointError(f"index must be a number, got {index!r}")
    if params.get("name") == "":
        raise _EndpointError("name must not be empty")


def _check_backlog(params: dict[str, str]) -> None:
    backlog = params.get("backlog", "50")
    if not _DIGITS.match(backlog) or len(backlog) > 9 or int(backlog) == 0:
        raise _EndpointError(f"backlog must be a positive number, got {backlog!r}")


_ENDPOINT_CHECKS = {
    "tcp": _check_tcp,
    "tcp6": _check_tcp,
    "unix": _check_unix,
    "systemd": _check_systemd,
}


def _key_path(path: str, key: str) -> str:
    """``path.key``, quoting ``key`` as TOML would when it is not a bare key."""
    if not _BARE_KEY.match(key):
        key = '"' + "".join(_toml_escape(char) for char in key) + '"'
    return f"{path}.{key}" if path else key


def _toml_escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char


def _show_name(name: str) -> str:
    """A name as written in the file, quoted only when it is not a plain name."""
    return name if _NAME.match(name) else repr(name)


def _tail(path: str) -> str:
    """The last component of a key path, to refer to a sibling: ``rule[0]``, ``backends[1]``."""
    return path.rsplit(".", 1)[-1]


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(value: object) -> str:
    """How a TOML value's type is called in messages: ``a string``, ``an integer``..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return type(value).__name__


def _show_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit} ({size} bytes)"
    return f"{size} bytes"
