"""Validation of the tables around the proxy: ``[admin]``, ``[access_log]``, demo backends."""

from __future__ import annotations

import re
from typing import Any, Optional

from clbproxy.config.keys import key_names, read_keys, read_record
from clbproxy.config.machine import AccessLogConfig, AdminConfig, DemoBackendConfig
from clbproxy.config.reader import Reader
from clbproxy.config.text import key_path

#: A name ``allowed_hosts`` may list: DNS labels (underscores tolerated), no port.
_ALLOWED_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?\Z")

#: What a bearer token may be made of (RFC 6750's b64token).
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*\Z")


def demo_backend(reader: Reader, path: str, data: dict[str, Any]) -> Optional[DemoBackendConfig]:
    """The model of one ``[[demo_backend]]``, or ``None`` after reporting its problems."""
    return read_record(reader, path, data, DemoBackendConfig)


def access_log(reader: Reader, path: str, value: object) -> Optional[AccessLogConfig]:
    """The model of an ``[access_log]`` table (top-level or a listener's)."""
    before = len(reader.problems)
    data = reader.table(path, value, key_names(AccessLogConfig))
    if data is None:
        return None
    fields: dict[str, Any] = {}
    if reader.required(path, data, "path", ' (a file, or "-" for stdout)'):
        log_path = reader.string(key_path(path, "path"), data["path"])
        if log_path == "":
            reader.problem(key_path(path, "path"), 'must not be empty; use "-" for stdout')
        fields["path"] = log_path
    read_keys(reader, path, data, AccessLogConfig, fields)
    if len(reader.problems) > before:
        return None
    return AccessLogConfig(**fields)


def admin(reader: Reader, path: str, value: object) -> Optional[AdminConfig]:
    """The model of the ``[admin]`` table, its token read from ``token_file``."""
    before = len(reader.problems)
    data = reader.table(path, value, key_names(AdminConfig))
    if data is None:
        return None
    fields: dict[str, Any] = {}
    read_keys(
        reader,
        path,
        data,
        AdminConfig,
        fields,
        {"metrics_path": _metrics_path, "allowed_hosts": _allowed_hosts},
    )
    if "token_file" in data:
        key = key_path(path, "token_file")
        token_file = reader.file(key, data["token_file"])
        if token_file is not None:
            fields["token_file"] = token_file
            fields["token"] = _read_token(reader, key, token_file)
    if len(reader.problems) > before:
        return None
    return AdminConfig(**fields)


def _metrics_path(reader: Reader, path: str, value: object) -> Optional[str]:
    metrics_path = reader.string(path, value)
    if metrics_path is not None and (
        not metrics_path.startswith("/")
        or metrics_path == "/"
        or metrics_path.startswith("/api/")
        or any(char in "?#" or char.isspace() for char in metrics_path)
    ):
        reader.problem(
            path,
            f"{metrics_path!r} must be a path like '/metrics' "
            "(not '/' or under '/api/', no query or spaces)",
        )
    return metrics_path


def _allowed_hosts(reader: Reader, path: str, value: object) -> tuple[str, ...]:
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


def _read_token(reader: Reader, path: str, token_file: str) -> Optional[str]:
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
