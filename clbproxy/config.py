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

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

#: Balancing policies a target group may name.
POLICIES = ("round_robin",)

#: Listener protocols.  ``https`` is reserved for TLS termination.
PROTOCOLS = ("http",)
#: How a rule relays WebSocket sessions: checked frames (default), or a byte tunnel.
RELAY_MODES = ("frames", "tunnel")


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
    #: ``frames``: every frame checked at the edge; ``tunnel``: bytes spliced unchecked.
    relay: str = "frames"


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

_DEFAULT_PORTS = {"http": 80, "https": 443}


def default_config_path() -> str:
    """The config file used when none is named: ./tap.conf if present, else the shipped demo."""
    if os.path.isfile("tap.conf"):
        return "tap.conf"
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "tap.conf")


def load_config(path: str) -> Config:
    """Read, parse and validate the tap.conf at ``path``.

    Raises :class:`ConfigError` listing every problem found, one line each, each
    line starting with ``path`` as given; no other exception escapes for anything
    the file contains.
    """
    reader = _Reader(path)
    document = _read_toml(reader, path)
    if document is None:
        raise ConfigError(reader.problems)
    config = _config(reader, path, document)
    if config is None:
        raise ConfigError(reader.problems)
    return config


def parse_size(value: object) -> int:
    """A size in bytes from an integer or a string like ``"64KiB"`` or ``"10MB"``.

    KB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024; the unit is
    case-insensitive.  Raises ``ValueError`` with a message for the user.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size ({_SIZE_HELP}), got {_type_name(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must not be negative, got {value}")
        return value
    match = _SIZE.match(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; use {_SIZE_HELP}")
    digits = match.group(1)
    if len(digits) > 30:
        raise ValueError(f"{value!r} is too large")
    return int(digits) * _SIZE_UNITS[unit]


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
    if math.isinf(seconds):
        raise ValueError(f"{value!r} is too large for a duration")
    if seconds <= 0:
        raise ValueError(f"a duration must be greater than 0, got {value!r}")
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
            self.problem(path, f"{value} out of range {low}-{high}")
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

    def duration(self, path: str, value: object) -> Optional[float]:
        try:
            return parse_duration(value)
        except ValueError as e:
            self.problem(path, str(e))
            return None

    def bind(self, path: str, value: object) -> Optional[str]:
        description = self.string(path, value)
        if description is None:
            return None
        problem = _endpoint_problem(description)
        if problem is not None:
            self.problem(path, problem)
            return None
        return description


_TOP_KEYS = ("listener", "target_group", "demo_backend")
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
)
_RULE_KEYS = ("target_group", "host", "path", "allowed_origins", "max_message_size", "relay")
_TARGET_GROUP_KEYS = ("backends", "policy", "connect_timeout", "response_timeout", "retries")
_BACKEND_KEYS = ("address", "weight")
_DEMO_BACKEND_KEYS = ("name", "bind")


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

    _check_unique(reader, listeners, "name", "name")
    _check_unique(reader, demo_backends, "name", "name")
    _check_unique(reader, listeners + demo_backends, "bind", "bind string")

    if reader.problems:
        return None
    return Config(
        path=path,
        listeners=tuple(model for _, _, model in listeners if model is not None),
        target_groups=tuple(model for model in target_groups if model is not None),
        demo_backends=tuple(model for _, _, model in demo_backends if model is not None),
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
    rules = []
    if reader.required(path, data, "rule", " (at least one [[listener.rule]])"):
        for rule_path, rule in reader.tables(
            _key_path(path, "rule"), data["rule"], "[[listener.rule]]"
        ):
            rules.append((rule_path, _rule(reader, rule_path, rule, group_names)))
    _check_rules_distinct(reader, rules)
    fields["rules"] = tuple(rule for _, rule in rules)
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
    if len(reader.problems) > before:
        return None
    return ListenerConfig(**fields)


def _protocol(reader: _Reader, path: str, value: object) -> Optional[str]:
    if value == "https":
        reader.problem(path, 'HTTPS listeners are not available yet in this version; use "http"')
        return None
    return reader.choice(path, value, PROTOCOLS, "protocol")


def _rule(
    reader: _Reader, path: str, data: dict[str, Any], group_names: Sequence[str]
) -> Optional[RuleConfig]:
    before = len(reader.problems)
    reader.table(path, data, _RULE_KEYS)
    fields: dict[str, Any] = {}
    if reader.required(path, data, "target_group"):
        group_path = _key_path(path, "target_group")
        group = reader.string(group_path, data["target_group"])
        if group is not None and group not in group_names:
            defined = ", ".join(map(_show_name, group_names)) if group_names else "none"
            reader.problem(group_path, f"unknown target group {group!r} (defined: {defined})")
        fields["target_group"] = group
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
    """A rule's host pattern, lower-cased, IPv6 without brackets."""
    text = reader.string(path, value)
    if text is None:
        return None
    if not text:
        reader.problem(path, "must not be empty; leave host out to match any host")
        return None
    pattern = text.lower()
    if ":" in pattern or pattern.startswith("["):
        try:
            return str(ipaddress.IPv6Address(pattern.strip("[]")))
        except ValueError:
            pass
        if ":" in pattern and not pattern.endswith("]"):
            reader.problem(path, f"{text!r}: a host must not include a port")
        else:
            reader.problem(path, f"{text!r} is not an IPv6 address")
        return None
    wildcard = pattern.startswith("*.")
    name = pattern[2:] if wildcard else pattern
    if "*" in name:
        reader.problem(
            path, f"{text!r}: '*' is only allowed as the whole first label, like '*.example.com'"
        )
        return None
    try:
        name = _host(name)
    except ValueError as e:
        reader.problem(path, str(e))
        return None
    if wildcard and _is_ip(name):
        reader.problem(path, f"{text!r}: a wildcard needs a DNS name, like '*.example.com'")
        return None
    return f"*.{name}" if wildcard else name


def _rule_path(reader: _Reader, path: str, value: object) -> Optional[str]:
    text = reader.string(path, value)
    if text is None:
        return None
    if not text.startswith("/"):
        reader.problem(path, f"{text!r} must start with '/'")
        return None
    if any(char in "?#" or char.isspace() or not char.isprintable() for char in text):
        reader.problem(
            path, f"{text!r}: a path prefix has no query, fragment, spaces or control characters"
        )
        return None
    return text


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
    if len(reader.problems) > before:
        return None
    return TargetGroupConfig(**fields)


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
    if isinstance(value, dict):
        reader.table(path, value, _BACKEND_KEYS)
        if "weight" in value:
            weight = reader.integer(_key_path(path, "weight"), value["weight"], 0, 100)
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
