"""The text of a rule's ``host`` and ``path``: parsed once, validated, compiled.

Host patterns, as on a cloud balancer (and nginx's ``server_name``)::

    www.example.com             exact
    *.example.com               leading wildcard (any depth of subdomain)
    www.example.*               trailing wildcard
    ~ ^api[0-9]+\\.example\\.com$ regular expression (case-insensitive)

Path patterns, as nginx's ``location`` (the space after a marker is optional)::

    = /login        exact
    ^~ /static/     preferred prefix (beats regexes)
    ~ ^/v[0-9]+/    regex, case-sensitive
    ~* \\.php$       regex, case-insensitive
    /api/           plain prefix

Every function here raises ``ValueError`` with a message meant for the user.
"""

from __future__ import annotations

import re
from typing import Pattern

import attrs

HOST_EXACT = "exact"
HOST_LEADING = "leading"
HOST_TRAILING = "trailing"
HOST_REGEX = "regex"

PATH_EXACT = "="
PATH_PREFERRED = "^~"
PATH_REGEX = "~"
PATH_REGEX_CI = "~*"
PATH_PREFIX = ""

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_GROUP_REFERENCE = re.compile(r"\\(?:(\d+)|g<([^>]*)>)")


@attrs.frozen
class HostPattern:
    """A parsed host pattern; ``value`` is the name, the wildcard's fixed part, or the regex."""

    kind: str
    value: str

    @property
    def text(self) -> str:
        """The canonical text, as written back in messages and compared for duplicates."""
        if self.kind == HOST_LEADING:
            return f"*{self.value}"
        if self.kind == HOST_TRAILING:
            return f"{self.value}*"
        if self.kind == HOST_REGEX:
            return f"~ {self.value}"
        return self.value

    def compiled(self) -> Pattern[str]:
        return re.compile(self.value, re.IGNORECASE)


@attrs.frozen
class PathPattern:
    """A parsed path pattern: a marker (``=``, ``^~``, ``~``, ``~*`` or none) and its operand."""

    kind: str
    value: str

    @property
    def text(self) -> str:
        return f"{self.kind} {self.value}" if self.kind else self.value

    def compiled(self) -> Pattern[str]:
        return re.compile(self.value, re.IGNORECASE if self.kind == PATH_REGEX_CI else 0)


def compile_regex(text: str, flags: int = 0) -> Pattern[str]:
    """``text`` compiled, or a ``ValueError`` saying what is wrong with it."""
    if not text:
        raise ValueError("the regular expression after '~' is empty")
    try:
        return re.compile(text, flags)
    except (re.error, OverflowError) as e:  # OverflowError: a{4294967296}
        raise ValueError(f"invalid regular expression {text!r}: {e}") from None
    except RecursionError:
        raise ValueError(
            f"invalid regular expression {text[:40]!r}...: nested too deeply"
        ) from None


def parse_host(text: str) -> HostPattern:
    """A rule's host pattern; names are lower-cased, a port is refused."""
    stripped = text.strip()
    if stripped.startswith("~"):
        regex = stripped[1:].strip()
        compile_regex(regex, re.IGNORECASE)
        return HostPattern(HOST_REGEX, regex)
    name = stripped.lower()
    if not name:
        raise ValueError("must not be empty; leave host out to match any host")
    if name.startswith("*."):
        if all(char in "0123456789." for char in name[2:]):
            raise ValueError(f"{text!r}: a wildcard needs a DNS name, like '*.example.com'")
        _check_labels(text, name[2:])
        return HostPattern(HOST_LEADING, name[1:])
    if name.endswith(".*"):
        _check_labels(text, name[:-2])
        return HostPattern(HOST_TRAILING, name[:-1])
    if "*" in name:
        raise ValueError(
            f"{text!r}: '*' is only allowed as the whole first or last label, "
            "like '*.example.com' or 'www.example.*'"
        )
    return HostPattern(HOST_EXACT, name)


def _check_labels(text: str, name: str) -> None:
    if "*" in name or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(
            f"{text!r}: a wildcard needs DNS labels around one '*', "
            "like '*.example.com' or 'www.example.*'"
        )


def parse_path(text: str) -> PathPattern:
    """A rule's path pattern; regexes are compiled to be checked."""
    for marker in (PATH_PREFERRED, PATH_REGEX_CI, PATH_EXACT, PATH_REGEX):
        if text.startswith(marker):
            operand = text[len(marker) :].strip()
            if marker in (PATH_REGEX, PATH_REGEX_CI):
                compile_regex(operand, re.IGNORECASE if marker == PATH_REGEX_CI else 0)
                return PathPattern(marker, operand)
            _check_plain_path(operand)
            return PathPattern(marker, operand)
    _check_plain_path(text)
    return PathPattern(PATH_PREFIX, text)


def _check_plain_path(text: str) -> None:
    if not text.startswith("/"):
        raise ValueError(f"{text!r} must start with '/' (or a marker: '= ', '^~ ', '~ ', '~* ')")
    if any(char in "?#" or char.isspace() or not char.isprintable() for char in text):
        raise ValueError(f"{text!r}: a path has no query, fragment, spaces or control characters")


def check_replacement(pattern: Pattern[str], replacement: str) -> None:
    """Refuse a replacement that names a group the pattern does not have."""
    for number, name in _GROUP_REFERENCE.findall(replacement):
        if number and int(number) > pattern.groups:
            raise ValueError(
                f"replacement {replacement!r} refers to group {number}, "
                f"but the pattern has {pattern.groups}"
            )
        if (
            name
            and not (name.isdigit() and int(name) <= pattern.groups)
            and (name not in pattern.groupindex)
        ):
            raise ValueError(f"replacement {replacement!r} refers to unknown group {name!r}")
