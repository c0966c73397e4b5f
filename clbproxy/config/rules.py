"""Validation of forwarding rules (``[[listener.rule]]``) and what a rule answers or changes."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Optional, Sequence

from clbproxy.config.endpoints import canonical_host
from clbproxy.config.keys import key_names, read_keys
from clbproxy.config.model import FixedResponseConfig, RedirectConfig, RewriteConfig, RuleConfig
from clbproxy.config.patterns import (
    HOST_EXACT,
    check_replacement,
    compile_regex,
    parse_host,
    parse_path,
)
from clbproxy.config.reader import Reader
from clbproxy.config.text import key_path, show_name, tail, type_name

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_FRAMING_HEADERS = frozenset(
    {"connection", "content-length", "transfer-encoding", "upgrade", "keep-alive", "te", "trailer"}
)


def rule(
    reader: Reader, path: str, data: dict[str, Any], group_names: Sequence[str]
) -> Optional[RuleConfig]:
    """The model of one rule, whose ``target_group`` must be one of ``group_names``."""
    before = len(reader.problems)
    reader.table(path, data, key_names(RuleConfig))
    fields: dict[str, Any] = {}
    actions = [key for key in ("target_group", "fixed_response", "redirect") if key in data]
    if not actions:
        reader.problem(
            path, "missing required key 'target_group' (or 'fixed_response' or 'redirect')"
        )
    elif len(actions) > 1:
        reader.problem(path, f"give only one of {', '.join(map(repr, actions))}")

    def target_group(reader: Reader, group_path: str, value: object) -> Optional[str]:
        group = reader.string(group_path, value)
        if group is not None and group not in group_names:
            defined = ", ".join(map(show_name, group_names)) if group_names else "none"
            reader.problem(group_path, f"unknown target group {group!r} (defined: {defined})")
        return group

    parsers = {
        "target_group": target_group,
        "host": rule_host,
        "path": _rule_path,
        "rewrite": _rewrite,
        "fixed_response": _fixed_response,
        "redirect": _redirect,
        "set_headers": _set_headers,
        "remove_headers": _remove_headers,
    }
    read_keys(reader, path, data, RuleConfig, fields, parsers)
    if len(reader.problems) > before:
        return None
    return RuleConfig(**fields)


def check_rules_distinct(reader: Reader, rules: list[tuple[str, Optional[RuleConfig]]]) -> None:
    """Report a rule matching the same host and path as an earlier one: it could never win."""
    seen: dict[tuple[Optional[str], str], str] = {}
    for path, rule in rules:
        if rule is None:
            continue
        key = (rule.host, rule.path)
        if key in seen:
            host = "any host" if rule.host is None else f"host {rule.host!r}"
            reader.problem(path, f"{tail(seen[key])} already matches {host} and path {rule.path!r}")
        else:
            seen[key] = path


def rule_host(reader: Reader, path: str, value: object) -> Optional[str]:
    """A rule's host pattern in canonical text: lower-cased names, IPv6 without brackets."""
    text = reader.string(path, value)
    if text is None:
        return None
    if not text:
        reader.problem(path, "must not be empty; leave host out to match any host")
        return None
    try:
        pattern = parse_host(text)
    except ValueError as e:
        reader.problem(path, str(e))
        return None
    if pattern.kind != HOST_EXACT:
        return pattern.text
    name = pattern.value
    if ":" in name or name.startswith("["):
        try:
            return str(ipaddress.IPv6Address(name.strip("[]")))
        except ValueError:
            pass
        if ":" in name and not name.endswith("]"):
            reader.problem(path, f"{text!r}: a host must not include a port")
        else:
            reader.problem(path, f"{text!r} is not an IPv6 address")
        return None
    try:
        return canonical_host(name)
    except ValueError as e:
        reader.problem(path, str(e))
        return None


def _rule_path(reader: Reader, path: str, value: object) -> Optional[str]:
    """A rule's path pattern in canonical text: ``= /x``, ``^~ /x``, ``~ re``, ``/x``..."""
    text = reader.string(path, value)
    if text is None:
        return None
    try:
        return parse_path(text).text
    except ValueError as e:
        reader.problem(path, str(e))
        return None


def default_domain(
    reader: Reader, path: str, value: object, rules: list[tuple[str, Optional[RuleConfig]]]
) -> Optional[str]:
    """The default domain: the host of some rule, in canonical text."""
    host = rule_host(reader, path, value)
    if host is None:
        return None
    hosts = [rule.host for _, rule in rules if rule is not None]
    if host not in hosts:
        shown = ", ".join(repr(h) for h in dict.fromkeys(hosts) if h is not None) or "none"
        reader.problem(path, f"{host!r} is not the host of any rule (hosts: {shown})")
        return None
    if None in hosts:
        reader.problem(
            path,
            "rules without 'host' already take requests for any other host; "
            "give them a host or leave default_domain out",
        )
        return None
    return host


def _rewrite(reader: Reader, path: str, value: object) -> Optional[RewriteConfig]:
    table = reader.table(path, value, key_names(RewriteConfig))
    if table is None:
        return None
    if ("strip_prefix" in table) == ("pattern" in table):
        reader.problem(path, "give exactly one of 'strip_prefix' or 'pattern' (with 'replacement')")
        return None
    if "strip_prefix" in table:
        prefix = reader.string(key_path(path, "strip_prefix"), table["strip_prefix"])
        if prefix is not None and not prefix.startswith("/"):
            reader.problem(key_path(path, "strip_prefix"), f"{prefix!r} must start with '/'")
            return None
        if "replacement" in table:
            reader.problem(key_path(path, "replacement"), "only goes with 'pattern'")
            return None
        return None if prefix is None else RewriteConfig(strip_prefix=prefix)
    pattern_path = key_path(path, "pattern")
    pattern = reader.string(pattern_path, table["pattern"])
    replacement = reader.string(key_path(path, "replacement"), table.get("replacement", ""))
    if pattern is None or replacement is None:
        return None
    try:
        compiled = compile_regex(pattern)
    except ValueError as e:
        reader.problem(pattern_path, str(e))
        return None
    try:
        check_replacement(compiled, replacement)
    except ValueError as e:
        reader.problem(key_path(path, "replacement"), str(e))
        return None
    return RewriteConfig(pattern=pattern, replacement=replacement)


def _fixed_response(reader: Reader, path: str, value: object) -> Optional[FixedResponseConfig]:
    table = reader.table(path, value, key_names(FixedResponseConfig))
    if table is None or not reader.required(path, table, "status"):
        return None
    status = reader.integer(key_path(path, "status"), table["status"], 200, 599)
    body = reader.string(key_path(path, "body"), table.get("body", ""))
    content_type = reader.string(
        key_path(path, "content_type"), table.get("content_type", "text/plain; charset=utf-8")
    )
    if content_type is not None and not _header_value_ok(content_type):
        reader.problem(key_path(path, "content_type"), f"{content_type!r} is not a header value")
        return None
    if status is None or body is None or content_type is None:
        return None
    return FixedResponseConfig(status=status, body=body, content_type=content_type)


def _redirect(reader: Reader, path: str, value: object) -> Optional[RedirectConfig]:
    if isinstance(value, str):
        value = {"location": value}
    table = reader.table(path, value, key_names(RedirectConfig))
    if table is None or not reader.required(path, table, "location"):
        return None
    location = reader.string(key_path(path, "location"), table["location"])
    if location is not None and (not location or not _header_value_ok(location)):
        reader.problem(key_path(path, "location"), f"{location!r} is not a usable Location")
        return None
    status = None
    if "status" in table:
        status = reader.choice(
            key_path(path, "status"),
            str(table["status"]),
            ("301", "302", "303", "307", "308"),
            "redirect status",
        )
        if status is None:
            return None
    if location is None:
        return None
    return RedirectConfig(location=location, status=int(status) if status else None)


def _set_headers(reader: Reader, path: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        reader.problem(
            path, f'expected a table like {{ "X-Env" = "prod" }}, got {type_name(value)}'
        )
        return ()
    headers = []
    for name, header_value in value.items():
        item_path = key_path(path, name)
        text = reader.string(item_path, header_value)
        if not _TOKEN.match(name):
            reader.problem(item_path, f"{name!r} is not a header name")
        elif name.lower() in _FRAMING_HEADERS:
            reader.problem(item_path, f"{name!r} describes one hop or the body; it cannot be set")
        elif text is not None and not _header_value_ok(text):
            reader.problem(item_path, f"{text!r} is not a header value (no control characters)")
        elif text is not None:
            headers.append((name, text))
    return tuple(headers)


def _remove_headers(reader: Reader, path: str, value: object) -> tuple[str, ...]:
    names = []
    for item_path, name in reader.strings(path, value):
        if not _TOKEN.match(name):
            reader.problem(item_path, f"{name!r} is not a header name")
        else:
            names.append(name.lower())
    return tuple(names)


def _header_value_ok(text: str) -> bool:
    return all(
        char == "\t" or 0x20 <= ord(char) < 0x7F or 0xA0 <= ord(char) <= 0xFF for char in text
    )
