"""Validation of target groups: backends, balancing, health checks, persistence, ejection."""

from __future__ import annotations

import re
from typing import Any, Optional

import attrs

from clbproxy.config.endpoints import canonical_host, port_number, split_host_port
from clbproxy.config.keys import key_names, read_keys, read_record
from clbproxy.config.reader import Reader
from clbproxy.config.text import NAME, key_path, tail, type_name
from clbproxy.config.upstream import (
    BACKEND_SCHEMES,
    HASH_SOURCES,
    PERSISTENCE_TYPES,
    REBALANCE_POLICIES,
    BackendConfig,
    HealthCheckConfig,
    PassiveConfig,
    PersistenceConfig,
    RebalanceConfig,
    TargetGroupConfig,
)

_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HEADER_NAME = _COOKIE_NAME
_STATUS_RANGE = re.compile(r"\s*([1-5][0-9][0-9])\s*(?:-\s*([1-5][0-9][0-9])\s*)?\Z")
_TLS_ONLY = ("verify", "ca_file", "server_name")


def target_group(reader: Reader, path: str, name: str, data: object) -> Optional[TargetGroupConfig]:
    """The model of ``[target_group.NAME]``, or ``None`` after reporting its problems."""
    before = len(reader.problems)
    if not NAME.match(name):
        reader.problem(path, f"invalid name {name!r}: use letters, digits, '_', '.' and '-'")
    table = reader.table(path, data, key_names(TargetGroupConfig))
    if table is None:
        return None
    fields: dict[str, Any] = {"name": name}
    parsers = {
        "backends": _backends,
        "hash_key": _hash_key,
        "health_check": _health_check,
        "persistence": _persistence,
        "passive": _passive,
        "rebalance": _rebalance,
        "tls": _scheme,
        "server_name": _server_name,
    }
    read_keys(reader, path, table, TargetGroupConfig, fields, parsers)
    if not fields.get("tls"):
        for key in _TLS_ONLY:
            if key in table:
                reader.problem(key_path(path, key), 'only applies with scheme = "wss" or "https"')
    if fields.get("rebalance") is not None:
        _check_rebalance(reader, key_path(path, "rebalance"), fields)
    if len(reader.problems) > before:
        return None
    return TargetGroupConfig(**fields)


def _rebalance(reader: Reader, path: str, value: object) -> Optional[RebalanceConfig]:
    return read_record(reader, path, value, RebalanceConfig)


def _check_rebalance(reader: Reader, path: str, fields: dict[str, Any]) -> None:
    """Rebalancing only helps where a relieved client's reconnection goes somewhere else."""
    policy = fields.get("policy", "round_robin")
    if policy not in REBALANCE_POLICIES:
        reader.problem(
            path,
            f'needs policy = "least_conn" or "random_two" (policy is {policy!r}): '
            "other policies would not send a relieved client to a less loaded backend",
        )
    persistence = fields.get("persistence")
    if persistence is not None and persistence.type != "none":
        reader.problem(
            path,
            f"{persistence.type} persistence would send a relieved client straight back "
            "to the same backend; remove one of the two tables",
        )


def _scheme(reader: Reader, path: str, value: object) -> bool:
    """Whether the ``scheme`` reaches backends over TLS."""
    return reader.choice(path, value, BACKEND_SCHEMES, "scheme") in ("https", "wss")


def _server_name(reader: Reader, path: str, value: object) -> Optional[str]:
    name = reader.string(path, value)
    if name is None:
        return None
    try:
        return canonical_host(name)
    except ValueError as e:
        reader.problem(path, str(e))
        return None


def _hash_key(reader: Reader, path: str, value: object) -> Optional[str]:
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


def _health_check(reader: Reader, path: str, value: object) -> Optional[HealthCheckConfig]:
    before = len(reader.problems)
    table = reader.table(path, value, key_names(HealthCheckConfig))
    if table is None:
        return None
    fields: dict[str, Any] = {"enabled": True}
    parsers = {
        "path": _check_path,
        "host": _probe_host,
        "expect_status": _status_ranges,
        "jitter": _jitter,
    }
    read_keys(reader, path, table, HealthCheckConfig, fields, parsers)
    if fields.get("type") in ("tcp",) and ("path" in table or "expect_status" in table):
        reader.problem(path, "path and expect_status apply to http, https and websocket checks")
    if len(reader.problems) > before:
        return None
    interval, timeout = fields.get("interval", 5.0), fields.get("timeout", 2.0)
    if timeout > interval:
        reader.problem(
            key_path(path, "timeout"),
            f"{timeout:g} s is longer than the interval ({interval:g} s)",
        )
        return None
    return HealthCheckConfig(**fields)


def _probe_host(reader: Reader, path: str, value: object) -> Optional[str]:
    host = reader.string(path, value)
    if host is not None and (not host or any(c.isspace() for c in host)):
        reader.problem(path, f"{host!r} is not a Host header value")
    return host


def _jitter(reader: Reader, path: str, value: object) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reader.problem(path, f"expected a fraction of the interval (0-0.5), got {type_name(value)}")
        return None
    if not 0 <= value <= 0.5:
        reader.problem(path, f"{value} out of range 0-0.5")
        return None
    return float(value)


def _check_path(reader: Reader, path: str, value: object) -> Optional[str]:
    text = reader.string(path, value)
    if text is not None and (
        not text.startswith("/") or any(c.isspace() or not c.isprintable() for c in text)
    ):
        reader.problem(path, f"{text!r} must start with '/' and have no spaces")
        return None
    return text


def _status_ranges(reader: Reader, path: str, value: object) -> tuple[tuple[int, int], ...]:
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


def _persistence(reader: Reader, path: str, value: object) -> Optional[PersistenceConfig]:
    before = len(reader.problems)
    table = reader.table(path, value, key_names(PersistenceConfig))
    if table is None:
        return None
    fields: dict[str, Any] = {}
    if reader.required(path, table, "type", " ('cookie', 'source_ip' or 'none')"):
        fields["type"] = reader.choice(
            key_path(path, "type"), table["type"], PERSISTENCE_TYPES, "persistence type"
        )
    parsers = {"cookie_name": _cookie_name, "cookie_path": _cookie_path, "secret": _secret}
    read_keys(reader, path, table, PersistenceConfig, fields, parsers)
    if fields.get("same_site") == "None" and not fields.get("secure", False):
        reader.problem(path, "same_site = 'None' needs secure = true (browsers require it)")
    if len(reader.problems) > before:
        return None
    return PersistenceConfig(**fields)


def _cookie_name(reader: Reader, path: str, value: object) -> Optional[str]:
    name = reader.string(path, value)
    if name is not None and not _COOKIE_NAME.match(name):
        reader.problem(path, f"{name!r} is not a cookie name")
    return name


def _cookie_path(reader: Reader, path: str, value: object) -> Optional[str]:
    cookie_path = _check_path(reader, path, value)
    if cookie_path is not None and ";" in cookie_path:
        reader.problem(path, "must not contain ';'")
    return cookie_path


def _secret(reader: Reader, path: str, value: object) -> Optional[str]:
    secret = reader.string(path, value)
    if secret is not None and len(secret) < 16:
        reader.problem(path, "must be at least 16 characters")
    return secret


def _passive(reader: Reader, path: str, value: object) -> Optional[PassiveConfig]:
    model = read_record(reader, path, value, PassiveConfig)
    if model is None:
        return None
    if model.max_ejection < model.ejection:
        reader.problem(
            key_path(path, "max_ejection"),
            f"{model.max_ejection:g} s is shorter than ejection ({model.ejection:g} s)",
        )
        return None
    return model


def _backends(reader: Reader, path: str, value: object) -> tuple[BackendConfig, ...]:
    if not isinstance(value, list):
        reader.problem(path, f"expected an array of backends, got {type_name(value)}")
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
                item_path, f"duplicate address {backend.address!r} (also {tail(seen[key])})"
            )
        else:
            seen[key] = item_path
            backends.append(backend)
    return tuple(backends)


def _backend(reader: Reader, path: str, value: object) -> Optional[BackendConfig]:
    before = len(reader.problems)
    weight = None
    max_conns = 0
    if isinstance(value, dict):
        reader.table(path, value, key_names(BackendConfig))
        if "weight" in value:
            weight = reader.integer(key_path(path, "weight"), value["weight"], 0, 100)
        if "max_conns" in value:
            max_conns = reader.integer(
                key_path(path, "max_conns"), value["max_conns"], 0, 10_000_000
            )
        if not reader.required(path, value, "address"):
            return None
        address_path = key_path(path, "address")
        address = reader.string(address_path, value["address"])
    elif isinstance(value, str):
        address_path, address = path, value
    else:
        reader.problem(
            path,
            'expected a "host:port" string or a table { address = "host:port", weight = 10 }, '
            f"got {type_name(value)}",
        )
        return None
    if address is None:
        return None
    try:
        host, port = split_host_port(address, address)
        if port is None:
            raise ValueError(f"{address!r} has no port; expected host:port")
        backend = BackendConfig(host=canonical_host(host), port=port_number(port, 1))
    except ValueError as e:
        reader.problem(address_path, str(e))
        return None
    if len(reader.problems) > before:
        return None
    if max_conns:
        backend = attrs.evolve(backend, max_conns=max_conns)
    return backend if weight is None else attrs.evolve(backend, weight=weight)
