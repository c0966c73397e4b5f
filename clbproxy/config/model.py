"""The configuration model: frozen records, one per tap.conf table, and their keys.

Each record is built once by the loader and shared read-only; a reload builds a
new tree and swaps it.  Every attribute a user writes is declared here once, with
its key's metadata (see :mod:`clbproxy.config.keys`): the reference documentation,
the unknown-key check and the parsing of plain values all come from it.
"""

from __future__ import annotations

from typing import Optional

import attrs

from clbproxy.config import keys
from clbproxy.config.keys import setting
from clbproxy.config.machine import (
    AccessLogConfig,
    AdminConfig,
    DemoBackendConfig,
    FleetConfig,
    FleetListenerConfig,
)
from clbproxy.config.upstream import (
    BackendConfig,
    HealthCheckConfig,
    PassiveConfig,
    PersistenceConfig,
    RebalanceConfig,
    TargetGroupConfig,
)
from clbproxy.config.values import (
    MAX_COUNT,
    MAX_WORKERS,
    MIN_SESSION_BUFFER,
    WEBSOCKET_IDLE_RANGE,
    fraction,
    id_header,
    inflate_rate,
    interval_or_off,
    networks,
    origins,
    per_second,
    rate,
)

#: Listener protocols: ``https`` terminates TLS, then carries the same HTTP and WebSocket.
PROTOCOLS = ("http", "https")

#: Most concurrent streams an HTTP/2 connection may be allowed (``http2_max_concurrent_streams``).
MAX_HTTP2_STREAMS = 10_000
#: Smallest ``http2_connection_window``: one stream's window (RFC 9113's default, rounded up).
MIN_HTTP2_WINDOW = 64 * 1024
#: Largest ``http2_connection_window``: HTTP/2's flow-control windows are 31-bit.
MAX_HTTP2_WINDOW = 2**31 - 1

#: Lowest TLS versions a listener may require.
TLS_VERSIONS = ("1.2", "1.3")

#: What a listener with mutual TLS does with clients that send no certificate.
CLIENT_AUTH = ("require", "optional")

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

#: What a WebSocket session over its message or byte rate gets: read slower, or closed.
RATE_ACTIONS = ("throttle", "close")

#: ``request_id_from``: IDs kept from ``trusted_proxies`` only, or from any client.
REQUEST_ID_SOURCES = ("trusted", "any")


_NETWORKS = "Client networks (CIDR)"


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one readable line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@attrs.frozen
class RewriteConfig:
    """How a rule changes the request path before forwarding (the query is kept).

    Either ``strip_prefix`` (removed from the start of the path) or a regex
    ``pattern`` whose first match is replaced by ``replacement`` (``\\1``, ``\\g<name>``).
    """

    strip_prefix: Optional[str] = setting(
        None, doc="A prefix (starting with ``/``) removed from the start of the path."
    )
    pattern: Optional[str] = setting(
        None, doc="A regular expression whose first match in the path is replaced."
    )
    replacement: str = setting(
        "", doc="What replaces ``pattern``'s match (``\\\\1``, ``\\\\g<name>``)."
    )


@attrs.frozen
class FixedResponseConfig:
    """A response the proxy answers itself, without a backend (maintenance pages...)."""

    status: int = setting(doc="The status answered, 200-599.")
    body: str = setting("", doc="The body answered.")
    content_type: str = setting("text/plain; charset=utf-8", doc="The ``Content-Type``.")


@attrs.frozen
class RedirectConfig:
    """A redirect answered by the proxy; ``$scheme``, ``$host``, ``$request_uri`` are expanded.

    ``status`` ``None`` is 301 for GET and HEAD, 308 for other methods.
    """

    location: str = setting(
        doc="The ``Location``; ``$scheme``, ``$host`` (with port), ``$request_uri`` are expanded."
    )
    status: Optional[int] = setting(
        None,
        shown="301 or 308",
        doc="301, 302, 303, 307 or 308; by default 301 for GET/HEAD, 308 otherwise.",
    )


@attrs.frozen
class RuleConfig:
    """A forwarding rule: requests whose Host and path match go to ``target_group``.

    ``host`` is ``None`` for "any host" or a host pattern, ``path`` a path
    pattern (see :mod:`clbproxy.config.patterns`), both in canonical text.  A rule
    forwards to ``target_group``, or answers ``fixed_response`` or ``redirect``.
    """

    target_group: Optional[str] = setting(
        None,
        shown="see below",
        doc="The target group that serves matching requests.",
    )
    host: Optional[str] = setting(
        None, shown="any host", doc="A host pattern (`Forwarding rules`_)."
    )
    path: str = setting("/", doc="A path pattern (`Forwarding rules`_).")
    allowed_origins: Optional[tuple[str, ...]] = setting(
        None,
        shown="listener's",
        doc="Overrides the listener's list for this rule.",
        parse=origins,
    )
    max_message_size: Optional[int] = setting(
        None,
        shown="listener's",
        doc="Overrides the listener's limit for this rule.",
        parse=keys.size(),
    )
    websocket_message_rate: Optional[float] = setting(
        None,
        shown="listener's",
        doc="Overrides the listener's rate for this rule (0: none here).  Not on a "
        "``tunnel`` rule, which reads no messages.",
        parse=per_second("messages"),
    )
    websocket_message_burst: Optional[int] = setting(
        None,
        shown="listener's",
        doc="Overrides the listener's burst for this rule.",
        parse=keys.integer(0, MAX_COUNT),
    )
    websocket_byte_rate: Optional[int] = setting(
        None,
        shown="listener's",
        doc="Overrides the listener's rate for this rule (0: none here).",
        parse=keys.size(),
    )
    websocket_byte_burst: Optional[int] = setting(
        None,
        shown="listener's",
        doc="Overrides the listener's burst for this rule.",
        parse=keys.size(),
    )
    websocket_rate_action: Optional[str] = setting(
        None,
        shown="listener's",
        doc="Overrides the listener's action for this rule.",
        parse=keys.choice(RATE_ACTIONS, "rate action"),
    )
    rewrite: Optional[RewriteConfig] = setting(
        None,
        shown="none",
        doc='``{ strip_prefix = "/api" }`` or ``{ pattern = "^/v([0-9]+)/(.*)", '
        'replacement = "/\\\\2?v=\\\\1" }`` (first match replaced; ``\\\\1``, '
        "``\\\\g<name>``).  The query is kept.  Applies to WebSocket too.  Works on the "
        "normalised path (`Forwarding rules`_).",
    )
    fixed_response: Optional[FixedResponseConfig] = setting(
        None,
        shown="none",
        doc='``{ status = 503, body = "...", content_type = "text/html" }`` answered by '
        "the proxy itself.",
    )
    redirect: Optional[RedirectConfig] = setting(
        None,
        shown="none",
        doc='``"https://$host$request_uri"`` or ``{ location = "...", status = 302 }``.  '
        "``$scheme``, ``$host`` (with port), ``$request_uri`` are expanded.  Status by "
        "default 301 for GET/HEAD, 308 otherwise.  A Host with ``@ / \\ ? # %``, "
        "whitespace, a control or non-ASCII character is replaced by the listener's "
        "address (as for ``redirect_to_https``).",
    )
    set_headers: tuple[tuple[str, str], ...] = setting(
        (),
        shown="``{}``",
        doc='``{ "X-Env" = "prod" }``: request headers set on the way to the backend '
        "(replacing the client's).",
    )
    remove_headers: tuple[str, ...] = setting((), doc="Request header names removed on the way.")
    allow: tuple[str, ...] = setting(
        (),
        doc=f"{_NETWORKS} this rule serves, checked after the listener's lists; empty: all.",
        parse=networks,
    )
    deny: tuple[str, ...] = setting(
        (),
        doc=f"{_NETWORKS} this rule refuses with 403, checked after the listener's lists.",
        parse=networks,
    )
    relay: str = setting(
        "frames",
        shown="``frames``",
        doc="How WebSocket sessions are relayed: ``frames`` (every frame checked at the "
        "edge) or ``tunnel`` (bytes spliced after the handshake, unchecked); see "
        "`Relay modes`_.",
        parse=keys.choice(RELAY_MODES, "relay mode"),
    )


@attrs.frozen
class CertificateConfig:
    """One certificate of an HTTPS listener: PEM files, absolute paths."""

    cert: str = setting(
        doc="The certificate followed by its intermediates, PEM.",
        parse=keys.file(),
        required=True,
    )
    key: str = setting(
        doc="The private key: PEM, PKCS#1/PKCS#8/SEC1.", parse=keys.file(), required=True
    )
    passphrase_file: Optional[str] = setting(
        None,
        doc="A file whose first line is the key's passphrase.",
        parse=keys.file(),
    )
    ocsp_response: Optional[str] = setting(
        None,
        doc="A DER OCSP response stapled when the client asks; refresh the file and reload.",
        parse=keys.file(),
    )
    default: bool = setting(
        False,
        doc="``true``: served to clients without SNI or with an unknown name (otherwise "
        "the first certificate is the default).",
        parse=keys.boolean(),
    )


@attrs.frozen
class TLSConfig:
    """TLS termination settings of an HTTPS listener (``[listener.tls]``)."""

    certificates: tuple[CertificateConfig, ...] = setting(
        (),
        shown="(one of these two)",
        doc="Certificate tables (below).  The client's SNI picks the certificate whose "
        "subjectAltName DNS names match, exactly or by a ``*.example.com`` wildcard (one "
        "label); without SNI, or with an unknown name, the default certificate is served.",
    )
    self_signed: bool = setting(
        False,
        doc="``true``: serve a self-signed certificate for ``localhost``/127.0.0.1/::1, "
        "generated on first start (and when expired) into ``state_directory``; its "
        "SHA-256 fingerprint is logged.  For trying WSS out, not for production.",
        parse=keys.boolean(),
    )
    state_directory: str = setting(
        "clbproxy-state",
        shown="``clbproxy-state``",
        doc="Where ``self_signed`` keeps its files, relative to the working directory.",
        parse=keys.string(),
    )
    min_version: str = setting(
        "1.2",
        doc='``"1.2"`` or ``"1.3"`` (TLS 1.3 only).  Older clients get a '
        "``protocol_version`` alert and a log line.",
        parse=keys.choice(TLS_VERSIONS, "TLS version"),
    )
    ciphers: str = setting(
        DEFAULT_CIPHERS,
        shown="Mozilla intermediate",
        doc="OpenSSL cipher list for TLS 1.2 (ECDHE with AES-GCM or ChaCha20 by "
        "default).  TLS 1.3 suites are OpenSSL's.  A client with no shared cipher gets "
        "an alert and a log line.  A list with which OpenSSL would offer an eNULL, "
        "aNULL, EXPORT, RC4, DES, 3DES or MD5 cipher, or that sets ``@SECLEVEL=0``, is "
        "a config error (``HIGH`` alone includes aNULL: write ``HIGH:!aNULL:!MD5``).",
    )
    session_tickets: bool = setting(
        True,
        doc="``false`` turns TLS session tickets off (session-ID resumption stays).",
        parse=keys.boolean(),
    )
    client_ca: Optional[str] = setting(
        None,
        doc="PEM bundle of CAs whose client certificates are accepted: turns on mutual TLS.",
        parse=keys.file(),
    )
    client_auth: str = setting(
        "require",
        doc="With ``client_ca``: ``require`` refuses handshakes without a client "
        "certificate; ``optional`` lets them through.  A certificate that does not "
        "verify is always refused.",
        parse=keys.choice(CLIENT_AUTH, "client_auth"),
    )
    strict_sni: bool = setting(
        False,
        doc="``true``: refuse (``handshake_failure`` alert, a log line) a handshake whose "
        "SNI no certificate covers, or that sends no SNI, instead of serving the default "
        "certificate (HAProxy's ``strict-sni``, nginx's ``ssl_reject_handshake``).",
        parse=keys.boolean(),
    )


@attrs.frozen
class ListenerConfig:
    """One listening socket carrying HTTP and WebSocket."""

    name: str = setting(doc="Unique name, used in logs.", parse=keys.name(), required=True)
    bind: str = setting(
        doc="A Twisted server endpoint: ``tcp:8080:interface=127.0.0.1``, "
        "``tcp6:8080:interface=\\:\\:1``, ``unix:/run/clb.sock``, "
        "``systemd:domain=INET:index=0``, or any of those wrapped in ``haproxy:`` "
        "(PROXY protocol).  ``ssl:`` is refused: TLS comes from the listener's own "
        "settings.",
        parse=keys.bind(),
        required=True,
    )
    rules: tuple[RuleConfig, ...] = setting(
        key="rule",
        shown="(required)",
        doc="One or more ``[[listener.rule]]`` tables (below); a listener with "
        "``redirect_to_https`` needs none.",
    )
    protocol: str = setting(
        "http",
        doc="``http`` or ``https``.  An HTTP listener carries WebSocket (WS) too, an HTTPS "
        "listener WSS (see `HTTPS and TLS`_).",
        parse=keys.choice(PROTOCOLS, "protocol"),
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        doc="Origins (``https://app.example``) allowed to open WebSocket sessions; others "
        "get 403.  Empty allows all.  Requests without ``Origin`` (non-browser clients) "
        "pass.",
        parse=origins,
    )
    max_message_size: int = setting(
        0,
        doc="Largest WebSocket message in bytes, 0 for no limit (messages are streamed, "
        "so size costs no memory).  Bigger messages close the session with 1009.",
        parse=keys.size(),
    )
    session_buffer: int = setting(
        256 * 1024,
        shown="``256KiB``",
        doc="Bytes one direction of a session may hold in the proxy before the other "
        "side stops being read (and the side itself: see `WebSocket`_, flow control).",
        parse=keys.size(MIN_SESSION_BUFFER),
    )
    max_refusal_body: int = setting(
        64 * 1024,
        shown="``64KiB``",
        doc="Largest body of a backend's refusal of a WebSocket handshake that is passed "
        "on (longer ones are cut).",
        parse=keys.size(),
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        doc="CIDR networks whose ``X-Forwarded-*`` headers are believed (see `Headers to "
        "the backend`_).  A range wider than an IPv4 /8 or an IPv6 /7 (``0.0.0.0/0``, "
        "``::/0``...) is a warning at start and in ``clbproxy check``.",
        parse=networks,
    )
    client_timeout: float = setting(
        60.0,
        doc="Seconds a client connection may be idle (no byte received) while a request "
        "is being read.",
        parse=keys.duration(),
    )
    access_log: Optional[AccessLogConfig] = setting(
        None,
        shown="top-level",
        doc="This listener's own ``{ path = ..., format = ... }`` (see `Access log`_); "
        "overrides ``[access_log]``.",
    )
    default_domain: Optional[str] = setting(
        None,
        shown="first host",
        doc="The host (as written in a rule) whose rules serve requests whose Host "
        "matches no rule; without it, the rules without ``host``, else the first host "
        "written; see `Forwarding rules`_.",
    )
    max_body_size: int = setting(
        64 * 1024 * 1024,
        shown="``64MiB``",
        doc="Largest request body; larger is 413.  0: no limit.",
        parse=keys.size(),
    )
    max_header_size: int = setting(
        32 * 1024,
        shown="``32KiB``",
        doc="Largest request head (request line + headers); 431.",
        parse=keys.size(1024),
    )
    max_request_line: int = setting(
        8 * 1024, shown="``8KiB``", doc="Longest request line; 414.", parse=keys.size(64)
    )
    via: bool = setting(
        False, doc="Add ``Via: 1.1 clbproxy`` to requests and responses.", parse=keys.boolean()
    )
    underscores_in_headers: bool = setting(
        False,
        doc="Forward request headers whose name has an underscore (``X_Custom``), as "
        "nginx's directive does.  Off, they are dropped.  Underscore spellings of the "
        "proxy's own headers are dropped either way (see `Headers to the backend`_).",
        parse=keys.boolean(),
    )
    request_id_header: str = setting(
        "X-Request-Id",
        doc="The header that carries each request's and WebSocket session's ID: sent to "
        "the backend, echoed to the client (responses, the ``101``, the proxy's own "
        'errors) and logged; ``""``: no IDs.  See `Request IDs`_.',
        parse=id_header,
    )
    request_id_from: str = setting(
        "trusted",
        doc="Whose ID is kept (when well formed): ``trusted`` (peers in "
        "``trusted_proxies``) or ``any`` (every client); others get a new one.",
        parse=keys.choice(REQUEST_ID_SOURCES, "request ID source"),
    )
    trace: bool = setting(
        False,
        doc="W3C Trace Context: replace a missing or invalid ``traceparent`` with a new "
        "one (and drop its ``tracestate``).  Off, both pass as they came.  Valid ones "
        "are logged either way; see `Trace context`_.",
        parse=keys.boolean(),
    )
    header_timeout: float = setting(
        60.0,
        doc="Seconds from the first byte of a request (or the connection) to its last "
        "header; see `Timeouts`_.",
        parse=keys.duration(),
    )
    keepalive_timeout: float = setting(
        75.0,
        doc="Seconds an HTTP keep-alive connection may wait for its next request; see `Timeouts`_.",
        parse=keys.duration(),
    )
    websocket_idle_timeout: float = setting(
        60.0,
        doc="Seconds without a frame in either direction before a session is closed with "
        "1001 (30-3600); see `Timeouts`_.",
        parse=keys.duration_in(*WEBSOCKET_IDLE_RANGE),
    )
    websocket_ping_interval: float = setting(
        0.0,
        doc="Seconds between the proxy's pings to each hop of a session (0: off); see `Timeouts`_.",
        parse=interval_or_off,
    )
    websocket_ping_timeout: float = setting(
        10.0,
        doc="Seconds a hop has to answer the proxy's ping before it is taken for dead; "
        "see `Timeouts`_.",
        parse=keys.duration(),
    )
    websocket_deflate: str = setting(
        "end_to_end",
        doc='``"end_to_end"`` (client and backend negotiate permessage-deflate through '
        'the proxy, compressed frames pass on checked) or ``"per_hop"`` (each hop with '
        "the proxy); see `WebSocket`_.",
        parse=keys.choice(DEFLATE_MODES, "permessage-deflate mode"),
    )
    websocket_inflate_rate: int = setting(
        16 * 1024 * 1024,
        shown='``"16MiB"``',
        doc="Bytes of permessage-deflate data the proxy inflates per second for one "
        "session (to check it end to end, or per hop); past it, the sender is not read "
        "until the allowance refills (one second's worth at most).  A size; 0: no "
        "limit, else at least ``64KiB``.",
        parse=inflate_rate,
    )
    websocket_message_rate: float = setting(
        0.0,
        doc="Messages per second each direction of a session may carry, on average (0: "
        "no limit); see `Long-lived sessions`_.",
        parse=per_second("messages"),
    )
    websocket_message_burst: int = setting(
        0,
        doc="Messages a direction may carry at once above the rate (0: one second's worth).",
        parse=keys.integer(0, MAX_COUNT),
    )
    websocket_byte_rate: int = setting(
        0,
        doc='Wire bytes per second each direction of a session may carry (a size, ``"1MiB"``; '
        "0: no limit).",
        parse=keys.size(),
    )
    websocket_byte_burst: int = setting(
        0,
        doc="Bytes a direction may carry at once above the rate (0: one second's worth).",
        parse=keys.size(),
    )
    websocket_rate_action: str = setting(
        "throttle",
        doc="A direction over its rate: ``throttle`` (not read until it is back within "
        "it; nothing is lost) or ``close`` (the sender gets 1008, the other side 1001 or "
        "1011).",
        parse=keys.choice(RATE_ACTIONS, "rate action"),
    )
    websocket_max_lifetime: float = setting(
        0.0,
        doc="Seconds a session may live (0: no limit); then it is closed with 1001 so "
        "its client reconnects.",
        parse=interval_or_off,
    )
    websocket_lifetime_spread: float = setting(
        0.1,
        doc="Each session's lifetime is drawn between ``websocket_max_lifetime`` times "
        "(1 - spread) and ``websocket_max_lifetime`` (a fraction, 0-1), so sessions "
        "opened together do not end together.",
        parse=fraction,
    )
    max_connections: int = setting(
        0,
        doc="Connections the listener holds at once: see `Limits`_ (0: no limit); past "
        "it, accepting pauses.",
        parse=keys.integer(0, MAX_COUNT),
    )
    max_connections_per_ip: int = setting(
        0,
        doc="Connections one client address may hold at once: see `Limits`_ (0: no "
        "limit); more are closed unanswered.",
        parse=keys.integer(0, MAX_COUNT),
    )
    websocket_handshake_rate: float = setting(
        0.0,
        doc="WebSocket handshakes per second one client address may start (0: no "
        "limit); see `Limits`_.",
        parse=rate,
    )
    websocket_handshake_burst: int = setting(
        10,
        doc="Handshakes a client address may start at once before the rate applies; see `Limits`_.",
        parse=keys.integer(1, MAX_COUNT),
    )
    allow: tuple[str, ...] = setting(
        (), doc=f"{_NETWORKS} the listener serves; empty: all.", parse=networks
    )
    deny: tuple[str, ...] = setting((), doc=f"{_NETWORKS} refused with 403.", parse=networks)
    tls: Optional[TLSConfig] = setting(
        None,
        doc="``[listener.tls]``: required for, and only allowed on, HTTPS listeners (see "
        "`HTTPS and TLS`_).",
    )
    redirect_to_https: bool = setting(
        False,
        doc="HTTP listeners: answer every request (WebSocket upgrades too) with a "
        "redirect to the same host, path and query over HTTPS: 301 for GET/HEAD, 308 "
        "for other methods.  Such a listener needs no rules.",
    )
    https_port: int = setting(
        443,
        doc="The port of the redirect's ``https://`` URL (443 is left out of the URL).",
        parse=keys.integer(1, 65535),
    )
    http2: bool = setting(
        False,
        doc="HTTPS listeners: offer HTTP/2 by ALPN (``h2``, then ``http/1.1``); see "
        "`HTTP/2`_.  Not on HTTP listeners (cleartext HTTP/2, h2c, is not offered).  "
        "WebSocket opens over HTTP/1.1 connections unless ``websocket_over_http2`` is on.",
        parse=keys.boolean(),
    )
    websocket_over_http2: bool = setting(
        False,
        doc="With ``http2 = true``: advertise RFC 8441's extended CONNECT, so browsers "
        "open WebSockets as streams of their HTTP/2 connection (backends still get an "
        'HTTP/1.1 upgrade).  Needs ``websocket_deflate = "end_to_end"``.  Browsers do '
        "not fall back to HTTP/1.1 when such a WebSocket is refused: see "
        "`WebSocket over HTTP/2`_.",
        parse=keys.boolean(),
    )
    http2_max_concurrent_streams: int = setting(
        128,
        doc="Requests one HTTP/2 connection may have under way at once (advertised in "
        "SETTINGS); a stream beyond it is refused with ``REFUSED_STREAM``.",
        parse=keys.integer(1, MAX_HTTP2_STREAMS),
    )
    http2_connection_window: int = setting(
        1024 * 1024,
        shown="``1MiB``",
        doc="Request body bytes one HTTP/2 connection may hold in the proxy before "
        "backends take them (its flow-control window; each stream's is 64KiB).",
        parse=keys.size(MIN_HTTP2_WINDOW),
    )
    http2_max_resets: int = setting(
        200,
        doc="Stream resets one HTTP/2 connection may cause in 10 seconds, by the client "
        "(Rapid Reset) or by the proxy for the client's errors (MadeYouReset); more "
        "close it with ``GOAWAY ENHANCE_YOUR_CALM``.",
        parse=keys.integer(1, MAX_COUNT),
    )
    http2_max_control_frames: int = setting(
        1000,
        doc="SETTINGS, PING and PRIORITY frames and empty DATA frames one HTTP/2 "
        "connection may send in 10 seconds; more close it with ``GOAWAY "
        "ENHANCE_YOUR_CALM``.",
        parse=keys.integer(1, MAX_COUNT),
    )


@attrs.frozen
class Config:
    """A whole, validated tap.conf."""

    #: Where the document came from: its file name, or another source name.
    path: str
    listeners: tuple[ListenerConfig, ...] = setting(
        key="listener", doc="``[[listener]]`` tables: at least one."
    )
    target_groups: tuple[TargetGroupConfig, ...] = setting(
        key="target_group", shown="(none)", doc="``[target_group.NAME]`` tables."
    )
    demo_backends: tuple[DemoBackendConfig, ...] = setting(
        (), key="demo_backend", shown="(none)", doc="``[[demo_backend]]`` tables."
    )
    access_log: Optional[AccessLogConfig] = setting(
        None,
        doc="``[access_log]``: the access log of listeners without their own; none: no access log.",
    )
    admin: Optional[AdminConfig] = setting(
        None, doc="``[admin]``: the admin listener; without the table it is not started."
    )
    drain_timeout: float = setting(
        30.0,
        doc="Seconds a stopping proxy waits for requests and sessions to end before cutting them.",
        parse=keys.duration(),
    )
    max_connections: int = setting(
        0,
        doc="Client connections of all listeners together (0: no limit); past it, "
        "accepting pauses.  Also held to the descriptor budget (see `Limits`_); a larger "
        "value is warned about.",
        parse=keys.integer(0, MAX_COUNT),
    )
    workers: int = setting(
        1,
        doc="Processes that serve traffic (1-64); with more than one, see `Worker processes`_.",
        parse=keys.integer(1, MAX_WORKERS),
    )
    #: Things that work but deserve attention (an expired certificate...), one line each.
    warnings: tuple[str, ...] = ()

    def target_group(self, name: str) -> TargetGroupConfig:
        """The target group called ``name`` (validation guarantees it exists)."""
        for group in self.target_groups:
            if group.name == name:
                return group
        raise KeyError(name)


#: Each tap.conf table, by the name the reference uses, and the record it fills.
TABLES: dict[str, type] = {
    "top": Config,
    "listener": ListenerConfig,
    "listener.rule": RuleConfig,
    "listener.rule.rewrite": RewriteConfig,
    "listener.rule.fixed_response": FixedResponseConfig,
    "listener.rule.redirect": RedirectConfig,
    "listener.tls": TLSConfig,
    "listener.tls.certificates": CertificateConfig,
    "target_group": TargetGroupConfig,
    "target_group.backends": BackendConfig,
    "target_group.health_check": HealthCheckConfig,
    "target_group.persistence": PersistenceConfig,
    "target_group.passive": PassiveConfig,
    "target_group.rebalance": RebalanceConfig,
    "demo_backend": DemoBackendConfig,
    "access_log": AccessLogConfig,
    "admin": AdminConfig,
    "fleet": FleetConfig,
    "fleet.listeners": FleetListenerConfig,
}
