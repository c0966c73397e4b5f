"""tap.conf: the TOML file an operator writes, turned into an immutable, validated model.

Every user mistake becomes one line naming the file and the key path
(``tap.conf: listener[0].bind: ...``); all problems of a file are reported together
so a broken config is fixed in one edit, not one error at a time.

The model is a tree of frozen ``attrs`` records whose attributes declare their
tap.conf keys.  It is built once by ``load_config`` (or ``load_config_text``, for
a document that is not a file) and shared read-only by every service; a reload
builds a new tree and swaps it.  This package re-exports the public names of its
modules:

- :mod:`~clbproxy.config.model`, :mod:`~clbproxy.config.upstream`,
  :mod:`~clbproxy.config.machine`: the records, their keys and the choices values
  may take;
- :mod:`~clbproxy.config.keys`: how a key is declared on an attribute, and read
  from its table;
- :mod:`~clbproxy.config.units`, :mod:`~clbproxy.config.endpoints`,
  :mod:`~clbproxy.config.values`, :mod:`~clbproxy.config.patterns`: sizes and
  durations, bind strings and hosts, shared value checks, host and path patterns;
- :mod:`~clbproxy.config.reader`: TOML text in, problems named by source and key
  path;
- :mod:`~clbproxy.config.listener`, :mod:`~clbproxy.config.rules`,
  :mod:`~clbproxy.config.tls`, :mod:`~clbproxy.config.targets`,
  :mod:`~clbproxy.config.admin`: validation per table;
- :mod:`~clbproxy.config.loader`: a whole document and its warnings;
- :mod:`~clbproxy.config.fleet`: a fleet instance's local file and etcd's document, merged.
"""

from __future__ import annotations

from clbproxy.config.endpoints import binds_every_interface
from clbproxy.config.loader import default_config_path, load_config, load_config_text
from clbproxy.config.machine import (
    ACCESS_LOG_FORMATS,
    AccessLogConfig,
    AdminConfig,
    DemoBackendConfig,
    FleetConfig,
)
from clbproxy.config.model import (
    CLIENT_AUTH,
    DEFAULT_CIPHERS,
    DEFLATE_MODES,
    PROTOCOLS,
    RELAY_MODES,
    TABLES,
    TLS_VERSIONS,
    CertificateConfig,
    Config,
    ConfigError,
    FixedResponseConfig,
    ListenerConfig,
    RedirectConfig,
    RewriteConfig,
    RuleConfig,
    TLSConfig,
)
from clbproxy.config.units import parse_duration, parse_size
from clbproxy.config.upstream import (
    BACKEND_SCHEMES,
    HASH_SOURCES,
    HEALTH_CHECK_TYPES,
    ON_UNHEALTHY,
    PERSISTENCE_TYPES,
    POLICIES,
    BackendConfig,
    HealthCheckConfig,
    PassiveConfig,
    PersistenceConfig,
    RebalanceConfig,
    TargetGroupConfig,
)
from clbproxy.config.values import (
    MAX_POOL_IDLE,
    MAX_WORKERS,
    MIN_INFLATE_RATE,
    MIN_SESSION_BUFFER,
    WEBSOCKET_IDLE_RANGE,
)

__all__ = [
    "ACCESS_LOG_FORMATS",
    "BACKEND_SCHEMES",
    "CLIENT_AUTH",
    "DEFAULT_CIPHERS",
    "DEFLATE_MODES",
    "HASH_SOURCES",
    "HEALTH_CHECK_TYPES",
    "MAX_POOL_IDLE",
    "MAX_WORKERS",
    "MIN_INFLATE_RATE",
    "MIN_SESSION_BUFFER",
    "ON_UNHEALTHY",
    "PERSISTENCE_TYPES",
    "POLICIES",
    "PROTOCOLS",
    "RELAY_MODES",
    "TABLES",
    "TLS_VERSIONS",
    "WEBSOCKET_IDLE_RANGE",
    "AccessLogConfig",
    "AdminConfig",
    "BackendConfig",
    "CertificateConfig",
    "Config",
    "ConfigError",
    "DemoBackendConfig",
    "FixedResponseConfig",
    "FleetConfig",
    "HealthCheckConfig",
    "ListenerConfig",
    "PassiveConfig",
    "PersistenceConfig",
    "RebalanceConfig",
    "RedirectConfig",
    "RewriteConfig",
    "RuleConfig",
    "TLSConfig",
    "TargetGroupConfig",
    "binds_every_interface",
    "default_config_path",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_size",
]
