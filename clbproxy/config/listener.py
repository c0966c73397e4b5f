"""Validation of a ``[[listener]]`` table: its socket, limits, timeouts, TLS and rules."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from clbproxy.config.admin import access_log
from clbproxy.config.keys import key_names, read_keys
from clbproxy.config.model import MAX_HTTP2_WINDOW, ListenerConfig
from clbproxy.config.reader import Reader
from clbproxy.config.rules import check_rules_distinct, default_domain, rule
from clbproxy.config.text import key_path, tail
from clbproxy.config.tls import tls


def listener(
    reader: Reader, path: str, data: dict[str, Any], group_names: Sequence[str]
) -> Optional[ListenerConfig]:
    """The model of one listener, or ``None`` after reporting its problems."""
    before = len(reader.problems)
    reader.table(path, data, key_names(ListenerConfig))
    fields: dict[str, Any] = {}
    read_keys(reader, path, data, ListenerConfig, fields, {"access_log": access_log})
    _listener_tls(reader, path, data, fields)
    _http2_needs_tls(reader, path, data, fields)
    rules = []
    # A listener that redirects everything to HTTPS needs no rules.
    if ("rule" in data or not fields.get("redirect_to_https")) and reader.required(
        path, data, "rule", " (at least one [[listener.rule]])"
    ):
        for rule_path, table in reader.tables(
            key_path(path, "rule"), data["rule"], "[[listener.rule]]"
        ):
            rules.append((rule_path, rule(reader, rule_path, table, group_names)))
    check_rules_distinct(reader, rules)
    _tunnels_count_no_messages(reader, path, fields, rules)
    fields["rules"] = tuple(model for _, model in rules)
    if "default_domain" in data:
        fields["default_domain"] = default_domain(
            reader, key_path(path, "default_domain"), data["default_domain"], rules
        )
    if len(reader.problems) > before:
        return None
    return ListenerConfig(**fields)


def _listener_tls(reader: Reader, path: str, data: dict[str, Any], fields: dict[str, Any]) -> None:
    """``tls`` and ``redirect_to_https`` of a listener, checked against its protocol."""
    https = data.get("protocol") == "https"
    tls_path = key_path(path, "tls")
    if "tls" in data:
        if https:
            fields["tls"] = tls(reader, tls_path, data["tls"])
        elif fields.get("protocol", "http") == "http":
            reader.problem(tls_path, 'only HTTPS listeners have TLS settings (protocol = "https")')
    elif https:
        reader.problem(
            path,
            "an HTTPS listener needs a [listener.tls] table with certificates "
            "(or self_signed = true)",
        )
    if "redirect_to_https" in data:
        key = key_path(path, "redirect_to_https")
        redirect = reader.boolean(key, data["redirect_to_https"])
        if redirect and https:
            reader.problem(key, "is for HTTP listeners; this listener is already HTTPS")
        fields["redirect_to_https"] = redirect


def _http2_needs_tls(
    reader: Reader, path: str, data: dict[str, Any], fields: dict[str, Any]
) -> None:
    """HTTP/2 is offered by ALPN in the TLS handshake: only HTTPS listeners have one."""
    if fields.get("http2") and data.get("protocol") != "https":
        reader.problem(
            key_path(path, "http2"),
            'is for HTTPS listeners (protocol = "https"): cleartext HTTP/2 (h2c) is not offered',
        )
    if fields.get("websocket_over_http2"):
        key = key_path(path, "websocket_over_http2")
        if not fields.get("http2"):
            reader.problem(key, "needs http2 = true (WebSocket over HTTP/2 is a stream of one)")
        elif fields.get("websocket_deflate") == "per_hop":
            reader.problem(
                key,
                'needs websocket_deflate = "end_to_end": per_hop sessions are not carried '
                "over HTTP/2",
            )
    window = fields.get("http2_connection_window")
    if window is not None and window > MAX_HTTP2_WINDOW:
        reader.problem(
            key_path(path, "http2_connection_window"),
            f"must be at most {MAX_HTTP2_WINDOW} bytes (HTTP/2 windows are 31-bit)",
        )


def _tunnels_count_no_messages(
    reader: Reader, path: str, fields: dict[str, Any], rules: list
) -> None:
    """A ``tunnel`` rule reads no frames: a message rate on it could never be held."""
    inherited = fields.get("websocket_message_rate") or 0.0
    for rule_path, model in rules:
        if model is None or model.relay != "tunnel":
            continue
        own = model.websocket_message_rate
        if own:
            reader.problem(
                key_path(rule_path, "websocket_message_rate"),
                'a relay = "tunnel" rule reads no messages; limit its bytes '
                "(websocket_byte_rate) instead",
            )
        elif own is None and inherited:
            reader.problem(
                key_path(path, "websocket_message_rate"),
                f'applies to {tail(rule_path)}, a relay = "tunnel" rule, which reads no '
                "messages: set websocket_message_rate = 0 on that rule (or limit bytes)",
            )
