"""A fleet instance's configuration: its local file with ``[fleet]``, plus etcd's document.

What belongs to one machine stays in the local tap.conf: ``[fleet]`` (with
``[fleet.listeners.NAME]``, each shared listener's bind, access log and TLS
state directory on this machine, and ``[fleet.binds]``, the short form for
binds alone), ``[admin]``,
``[access_log]``, ``workers``, ``max_connections`` and ``[[demo_backend]]``.
Everything else (listeners without their binds, rules, target groups,
``drain_timeout``...) is one TOML document in etcd.  :func:`read_local` reads
and checks the local file (one that also holds shared tables is refused);
:func:`merge` puts the document and the local part together and validates the
whole exactly as a tap.conf is validated, problems named by the document's
source (``etcd:/clbproxy/prod/config@42``) and key path.  A document that sets
a local key of a listener (``bind``, ``access_log``, ``tls.state_directory``) is
refused, as one that holds ``[admin]`` is: the same document then never means
different files on different machines without saying so.  Relative file names
of the document (certificates) are taken from the local file's directory.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional, Union

import attrs

from clbproxy.config.admin import access_log
from clbproxy.config.keys import key_names, read_keys
from clbproxy.config.loader import load_document
from clbproxy.config.machine import FleetConfig, FleetListenerConfig
from clbproxy.config.model import Config, ConfigError
from clbproxy.config.reader import Reader, parse_toml, read_file
from clbproxy.config.text import key_path

#: The top-level keys a fleet instance's local file may hold; all others come from etcd.
LOCAL_KEYS = ("fleet", "admin", "access_log", "workers", "max_connections", "demo_backend")


@attrs.frozen(eq=False)
class LocalFile:
    """The local file of a fleet instance: its ``[fleet]`` and its other local keys, as read."""

    path: str
    fleet: FleetConfig
    #: The local top-level keys but ``fleet``, as TOML values (merged into each document).
    table: dict
    #: Per listener name, its local keys as TOML values (``bind``, ``access_log``,
    #: ``state_directory``), from ``[fleet.binds]`` and ``[fleet.listeners]``.
    listeners: dict = attrs.Factory(dict)


@attrs.frozen
class Merged:
    """A validated fleet configuration and what this instance leaves out of it."""

    config: Config
    #: Listeners of the document with no bind in ``[fleet.binds]``: not served here.
    unserved: tuple[str, ...] = ()


def has_fleet(path: str) -> bool:
    """Whether the file at ``path`` has a ``[fleet]`` table (False if it cannot be read)."""
    reader = Reader(path, os.path.dirname(os.path.abspath(path)))
    data = read_file(reader, path)
    document = parse_toml(reader, data) if data is not None else None
    return isinstance(document, dict) and "fleet" in document


def read_local(path: str) -> LocalFile:
    """The local file at ``path``; raises ``ConfigError`` with every problem.

    A file without ``[fleet]`` is not a fleet instance's: the caller uses
    :func:`clbproxy.config.load_config` for it.
    """
    reader = Reader(path, os.path.dirname(os.path.abspath(path)))
    data = read_file(reader, path)
    document = parse_toml(reader, data) if data is not None else None
    if document is None:
        raise ConfigError(reader.problems)
    if "fleet" not in document:
        raise ConfigError([f"{path}: missing the [fleet] table"])
    for key in document:
        if key not in LOCAL_KEYS:
            reader.problem(
                key,
                "comes from etcd in fleet mode: a file with [fleet] holds only "
                + ", ".join(LOCAL_KEYS),
            )
    fleet = _fleet(reader, document["fleet"])
    local = {key: value for key, value in document.items() if key != "fleet"}
    # The local keys alone must be valid (a document only adds to them).
    if not reader.problems:
        _check_local_part(reader, local)
    if reader.problems or fleet is None:
        raise ConfigError(reader.problems)
    return LocalFile(path=path, fleet=fleet, table=local, listeners=_local_listeners(document))


def _local_listeners(document: dict) -> dict:
    """Each listener's local keys, as written (checked already by :func:`_fleet`)."""
    found: dict[str, dict] = {}
    table = document["fleet"]
    for name, bind in (table.get("binds") or {}).items():
        found[name] = {"bind": bind}
    for name, keys in (table.get("listeners") or {}).items():
        found.setdefault(name, {}).update(keys)
    return found


def _fleet(reader: Reader, value: Any) -> Optional[FleetConfig]:
    before = len(reader.problems)
    table = reader.table("fleet", value, key_names(FleetConfig))
    if table is None:
        return None
    fields: dict[str, Any] = {}
    read_keys(
        reader,
        "fleet",
        table,
        FleetConfig,
        fields,
        parsers={"endpoints": _endpoints, "binds": _binds, "listeners": _listeners},
    )
    if len(reader.problems) > before:
        return None
    _check_access(reader, fields)
    binds = dict(fields.get("binds", ()))
    for listener in fields.get("listeners", ()):
        if listener.bind is not None and listener.name in binds:
            reader.problem(
                f"fleet.listeners.{listener.name}.bind",
                f"set twice: also in [fleet.binds] ({binds[listener.name]!r})",
            )
    if len(reader.problems) > before:
        return None
    fields.setdefault("instance", _host_name())
    return FleetConfig(**fields)


def _check_access(reader: Reader, fields: dict) -> None:
    """The etcd credentials and TLS files go together as etcd needs them."""
    if ("username" in fields) != ("password_file" in fields):
        missing = "password_file" if "username" in fields else "username"
        reader.problem(f"fleet.{missing}", "username and password_file go together")
    if ("cert_file" in fields) != ("key_file" in fields):
        missing = "key_file" if "cert_file" in fields else "cert_file"
        reader.problem(f"fleet.{missing}", "cert_file and key_file go together")
    tls = [key for key in ("ca_file", "cert_file", "key_file") if key in fields]
    endpoints = fields.get("endpoints", ())
    if tls and not any(url.startswith("https://") for url in endpoints):
        reader.problem(f"fleet.{tls[0]}", "is for https:// endpoints; none is")


def _host_name() -> str:
    name = socket.gethostname().split(".")[0]
    return "".join(char if char.isalnum() or char in "_.-" else "-" for char in name) or "clbproxy"


def _endpoints(reader: Reader, path: str, value: Any) -> Optional[tuple[str, ...]]:
    found = []
    items = reader.strings(path, value)
    if isinstance(value, list) and not value:
        reader.problem(path, "needs at least one etcd client URL")
    for item_path, url in items:
        if not (url.startswith("http://") or url.startswith("https://")) or url.count("/") > 3:
            reader.problem(item_path, f"{url!r} is not an etcd client URL (http://host:port)")
            continue
        found.append(url.rstrip("/"))
    return tuple(found)


def _binds(reader: Reader, path: str, value: Any) -> Optional[tuple[tuple[str, str], ...]]:
    if not isinstance(value, dict):
        reader.problem(path, "expected a table: listener name = bind")
        return None
    found = []
    for name, bind in value.items():
        checked = reader.bind(key_path(path, name), bind)
        if checked is not None:
            found.append((name, checked))
    return tuple(found)


def _listeners(reader: Reader, path: str, value: Any) -> Optional[tuple]:
    if not isinstance(value, dict):
        reader.problem(path, "expected tables: [fleet.listeners.NAME]")
        return None
    found = []
    for name, item in value.items():
        item_path = key_path(path, name)
        before = len(reader.problems)
        table = reader.table(item_path, item, key_names(FleetListenerConfig))
        if table is None:
            continue
        fields: dict[str, Any] = {}
        read_keys(reader, item_path, table, FleetListenerConfig, fields, {"access_log": access_log})
        if len(reader.problems) == before:
            found.append(FleetListenerConfig(name=name, **fields))
    return tuple(found)


def _check_local_part(reader: Reader, local: dict) -> None:
    """Problems of the local keys, found by validating them with a stand-in listener."""
    probe = Reader(reader.source, reader.base_directory)
    document = {
        **local,
        "listener": [
            {"name": "_local", "bind": "tcp:0", "rule": [{"fixed_response": {"status": 200}}]}
        ],
    }
    try:
        load_document(probe, document)
    except ConfigError as error:
        reader.problems.extend(error.problems)


def merge(
    local: LocalFile,
    document: Union[str, bytes],
    source: str,
    cookie_secret: Optional[str] = None,
    previous_secret: Optional[str] = None,
) -> Merged:
    """The configuration of this instance: ``document`` from etcd with the local part.

    Raises ``ConfigError`` with every problem, each starting with ``source``.
    Cookie persistence without its own ``secret`` signs with ``cookie_secret``
    and still honours cookies signed with ``previous_secret``.
    """
    reader = Reader(source, os.path.dirname(os.path.abspath(local.path)))
    shared = parse_toml(reader, document)
    if shared is None:
        raise ConfigError(reader.problems)
    for key in shared:
        if key in LOCAL_KEYS:
            reader.problem(key, f"is local to each instance: set it in {local.path}")
    listeners = shared.get("listener")
    served, unserved = [], []
    if isinstance(listeners, list):
        for index, item in enumerate(listeners):
            if not isinstance(item, dict):
                served.append(item)
                continue
            _refuse_local_keys(reader, local, index, item)
            name = item.get("name")
            own = local.listeners.get(name) if isinstance(name, str) else None
            if own is not None and "bind" in own:
                served.append(_with_local_keys(item, own))
            else:
                unserved.append(str(name))
        if listeners and not served:
            reader.problem(
                "listener",
                f"no listener of the document has a bind in [fleet.binds] or "
                f"[fleet.listeners] of {local.path}",
            )
    merged = {**shared, **local.table}
    if isinstance(listeners, list):
        merged["listener"] = served
    config = load_document(reader, merged)
    if cookie_secret:
        config = with_cookie_secrets(config, cookie_secret, previous_secret)
    return Merged(config, tuple(unserved))


def _refuse_local_keys(reader: Reader, local: LocalFile, index: int, item: dict) -> None:
    name = item.get("name")
    where = f"[fleet.listeners.{name}]" if isinstance(name, str) else "[fleet.listeners.NAME]"
    if "bind" in item:
        reader.problem(
            f"listener[{index}].bind",
            f"binds are local: set it in [fleet.binds] or {where} of {local.path}",
        )
    if "access_log" in item:
        reader.problem(
            f"listener[{index}].access_log",
            f"is local to each instance: set it in {where} of {local.path}",
        )
    tls = item.get("tls")
    if isinstance(tls, dict) and "state_directory" in tls:
        reader.problem(
            f"listener[{index}].tls.state_directory",
            f"is local to each instance: set it in {where} of {local.path}",
        )


def _with_local_keys(item: dict, own: dict) -> dict:
    """The document's listener with this machine's bind, access log and TLS state directory."""
    merged = {**item, "bind": own["bind"]}
    if "access_log" in own:
        merged["access_log"] = own["access_log"]
    tls = item.get("tls")
    if "state_directory" in own and isinstance(tls, dict):
        merged["tls"] = {**tls, "state_directory": own["state_directory"]}
    return merged


def with_cookie_secrets(config: Config, secret: str, previous: Optional[str]) -> Config:
    """``config`` with the fleet's cookie secrets where a group sets no ``secret`` of its own."""
    groups = []
    for group in config.target_groups:
        persistence = group.persistence
        if persistence is not None and persistence.type == "cookie" and not persistence.secret:
            persistence = attrs.evolve(persistence, secret=secret, previous_secret=previous)
            group = attrs.evolve(group, persistence=persistence)
        groups.append(group)
    return attrs.evolve(config, target_groups=tuple(groups))
