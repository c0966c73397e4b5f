"""Loading tap.conf: a file or a text in, the validated model or every problem out.

Every user mistake becomes one line naming the source and the key path
(``tap.conf: listener[0].bind: ...``); all problems of a document are reported
together so a broken config is fixed in one edit, not one error at a time.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Optional, Union

import attrs

from clbproxy.config.admin import access_log, admin, demo_backend
from clbproxy.config.endpoints import binds_every_interface
from clbproxy.config.keys import key_names, read_keys
from clbproxy.config.listener import listener
from clbproxy.config.model import Config, ConfigError
from clbproxy.config.reader import Reader, parse_toml, read_file
from clbproxy.config.targets import target_group
from clbproxy.config.text import key_path, type_name
from clbproxy.net import descriptors


def default_config_path() -> str:
    """The config file used when none is named: ./tap.conf if present, else the shipped demo."""
    if os.path.isfile("tap.conf"):
        return "tap.conf"
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tap.conf")


def load_config(path: str) -> Config:
    """Read, parse and validate the tap.conf at ``path``.

    Raises :class:`~clbproxy.config.model.ConfigError` listing every problem
    found, one line each, each line starting with ``path`` as given; no other
    exception escapes for anything the file contains.  Certificate files are not
    read here: callers that are about to serve use
    :func:`clbproxy.ops.preflight.load_checked`.
    """
    reader = Reader(path, os.path.dirname(os.path.abspath(path)))
    data = read_file(reader, path)
    if data is None:
        raise ConfigError(reader.problems)
    return _load(reader, data)


def load_config_text(
    text: Union[str, bytes], source: str, base_directory: Optional[str] = None
) -> Config:
    """Parse and validate a tap.conf document read from ``source`` (``etcd:/clbproxy/config``).

    ``source`` starts every problem line and becomes the model's ``path``;
    relative file names in the document (certificates, ``token_file``...) are
    taken from ``base_directory``, by default the working directory.  Raises
    :class:`~clbproxy.config.model.ConfigError` as :func:`~clbproxy.config.loader.load_config` does.
    """
    reader = Reader(source, os.path.abspath(base_directory or os.curdir))
    return _load(reader, text)


def _load(reader: Reader, data: Union[str, bytes]) -> Config:
    """The validated model of a document, its warnings attached, or ``ConfigError``."""
    document = parse_toml(reader, data)
    if document is None:
        raise ConfigError(reader.problems)
    return load_document(reader, document)


def load_document(reader: Reader, document: dict[str, Any]) -> Config:
    """The validated model of a parsed document (a fleet's merged one), or ``ConfigError``."""
    config = _config(reader, document)
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


def _config(reader: Reader, document: dict[str, Any]) -> Optional[Config]:
    """The model of a whole parsed document; problems go to ``reader``."""
    reader.table("", document, key_names(Config))
    groups_value = document.get("target_group", {})
    group_names: list[str] = []
    if isinstance(groups_value, dict):
        group_names = list(groups_value)
    else:
        reader.problem(
            "target_group",
            "expected a table of target groups ([target_group.NAME]), "
            f"got {type_name(groups_value)}",
        )

    listeners = []
    if reader.required("", document, "listener", " (at least one [[listener]])"):
        for item_path, item in reader.tables("listener", document["listener"], "[[listener]]"):
            listeners.append((item_path, item, listener(reader, item_path, item, group_names)))

    target_groups = []
    for name in group_names:
        item_path = key_path("target_group", name)
        target_groups.append(target_group(reader, item_path, name, groups_value[name]))

    demo_backends = []
    if "demo_backend" in document:
        for item_path, item in reader.tables(
            "demo_backend", document["demo_backend"], "[[demo_backend]]"
        ):
            demo_backends.append((item_path, item, demo_backend(reader, item_path, item)))

    top: dict[str, Any] = {}
    if "access_log" in document:
        top["access_log"] = access_log(reader, "access_log", document["access_log"])
    admins = []
    if "admin" in document:
        model = admin(reader, "admin", document["admin"])
        if model is not None:
            admins.append(("admin", document["admin"], model))

    _check_unique(reader, listeners, "name", "name")
    _check_unique(reader, demo_backends, "name", "name")
    _check_unique(reader, listeners + demo_backends + admins, "bind", "bind string")
    read_keys(reader, "", document, Config, top)

    if reader.problems:
        return None
    return Config(
        **top,
        path=reader.source,
        listeners=tuple(model for _, _, model in listeners if model is not None),
        target_groups=tuple(model for model in target_groups if model is not None),
        demo_backends=tuple(model for _, _, model in demo_backends if model is not None),
        admin=admins[0][2] if admins else None,
    )


def _check_unique(
    reader: Reader, items: list[tuple[str, dict[str, Any], object]], key: str, what: str
) -> None:
    """Report each table whose string ``key`` repeats an earlier table's."""
    seen: dict[str, str] = {}
    for path, table, _ in items:
        value = table.get(key)
        if not isinstance(value, str):
            continue
        if value in seen:
            reader.problem(key_path(path, key), f"duplicate {what} {value!r} (also {seen[value]})")
        else:
            seen[value] = path


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
    for index, served in enumerate(config.listeners):
        for cidr in served.trusted_proxies:
            network = ipaddress.ip_network(cidr)
            if network.prefixlen >= _WIDEST_TRUSTED_PREFIX[network.version]:
                continue
            span = "every address" if network.prefixlen == 0 else "a very wide range"
            warnings.append(
                f"{config.path}: listener[{index}].trusted_proxies: listener "
                f"{served.name!r}: {cidr} trusts {span}: any client there can claim any "
                "address in X-Forwarded-For (and is exempt from max_connections_per_ip); "
                "list only your own proxies' addresses"
            )
    return warnings
