"""Validation of an HTTPS listener's ``[listener.tls]`` table and its certificates."""

from __future__ import annotations

from typing import Any, Optional

from clbproxy.config.keys import key_names, read_keys, read_record
from clbproxy.config.model import CertificateConfig, TLSConfig
from clbproxy.config.reader import Reader
from clbproxy.config.text import key_path


def tls(reader: Reader, path: str, value: object) -> Optional[TLSConfig]:
    """The model of a ``[listener.tls]`` table, or ``None`` after reporting its problems."""
    before = len(reader.problems)
    table = reader.table(path, value, key_names(TLSConfig))
    if table is None:
        return None
    fields: dict[str, Any] = {}
    read_keys(
        reader, path, table, TLSConfig, fields, {"certificates": _certificates, "ciphers": _ciphers}
    )
    if bool(fields.get("certificates")) == bool(fields.get("self_signed")):
        reader.problem(path, "give either certificates = [...] or self_signed = true")
    if "client_auth" in table and "client_ca" not in table:
        reader.problem(
            key_path(path, "client_auth"), "needs client_ca, the CAs that sign client certificates"
        )
    if len(reader.problems) > before:
        return None
    return TLSConfig(**fields)


def _certificates(reader: Reader, path: str, value: object) -> tuple[CertificateConfig, ...]:
    certificates = [
        _certificate(reader, item_path, item)
        for item_path, item in reader.tables(path, value, "certificate table")
    ]
    defaults = [c for c in certificates if c is not None and c.default]
    if len(defaults) > 1:
        reader.problem(path, "more than one certificate has default = true")
    return tuple(certificates)  # type: ignore[arg-type]  # any None fails the table


def _certificate(reader: Reader, path: str, data: dict[str, Any]) -> Optional[CertificateConfig]:
    return read_record(reader, path, data, CertificateConfig)


def _ciphers(reader: Reader, path: str, value: object) -> Optional[str]:
    ciphers = reader.string(path, value)
    if ciphers is not None and not ciphers.strip():
        reader.problem(path, "must not be empty")
    return ciphers
