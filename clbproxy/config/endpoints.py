"""Addresses in tap.conf: server endpoint strings (``bind``), hosts and ports.

A ``bind`` is checked against what Twisted's ``serverFromString`` would do, with
messages a user can act on, before anything listens.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from clbproxy.config.text import did_you_mean

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

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_DIGITS = re.compile(r"[0-9]+\Z")


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


def split_host_port(text: str, original: str) -> tuple[str, Optional[str]]:
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


def port_number(text: str, low: int) -> int:
    """The port in ``text``, from ``low`` to 65535; ``ValueError`` for the user otherwise."""
    if not _DIGITS.match(text):
        raise ValueError(f"port {text!r} is not a number")
    port = int(text) if len(text) <= 10 else 1 << 64
    if not low <= port <= 65535:
        shown = port if len(text) <= 10 else text
        raise ValueError(f"port {shown} out of range {low}-65535")
    return port


def canonical_host(text: str) -> str:
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


def bracketed(host: str) -> str:
    """``host`` as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


class _EndpointError(Exception):
    """Why an endpoint description cannot be used."""


def endpoint_problem(description: str) -> Optional[str]:
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
            hint = did_you_mean(key, names) or f"; options: {', '.join(names)}"
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
