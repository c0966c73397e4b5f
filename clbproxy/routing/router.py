"""Forwarding rules: which rule serves a request, by Host and path.

Matching is in two steps, as on a cloud balancer (and in nginx): the Host picks
one *domain*, then the path picks one rule among that domain's rules.  A
request never falls through to another domain: when no path of the chosen
domain matches, the answer is 404.

Domains (case-insensitive, the port in Host ignored), in order of precedence:

1. exact name;
2. the longest matching leading wildcard (``*.example.com``);
3. the longest matching trailing wildcard (``www.example.*``);
4. the first matching regular expression, in the order written;
5. otherwise the listener's default domain: ``default_domain`` if set, else
   the rules without a ``host`` (they take any host), else the first domain in
   the order the rules are written, as nginx's first ``server`` block and
   CLB's default domain.

Paths, exactly as nginx's ``location``: an exact ``= /p`` match wins; else the
longest matching prefix (``^~`` and plain alike) is remembered; if it is a
``^~`` prefix it wins; else the regexes (``~``, ``~*``) are tried in the order
written and the first match wins; else the remembered plain prefix wins.

Paths are matched in their normalised form, as nginx matches ``location``
(:func:`normalize_path`): percent-escapes decoded (``%2F`` too, which then
counts as a ``/``), ``.`` and ``..`` segments resolved, runs of slashes merged.
So ``/%61dmin``, ``//admin`` and ``/x/../admin`` all match the rules of
``/admin``.  A path that climbs above the root, an invalid percent-escape or
an encoded NUL is refused (:class:`BadPath`, answered 400).  The request
target sent to the backend is not changed by this (unless a rule rewrites it,
see :func:`clbproxy.routing.actions.rewrite_target`).

Everything is compiled when the router is built; a match is dictionary
look-ups, a walk over the domain's prefixes and, when reached, its regexes.
A router also remembers the rule of each (Host, path) it matched lately
(:meth:`Router.match_target`): most requests repeat one of a few, and their
answer is then one look-up.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Pattern, Sequence, Tuple

from clbproxy.config import RuleConfig
from clbproxy.config.patterns import (
    HOST_EXACT,
    HOST_LEADING,
    HOST_REGEX,
    HOST_TRAILING,
    PATH_EXACT,
    PATH_PREFERRED,
    PATH_PREFIX,
    parse_host,
    parse_path,
)
from clbproxy.util.octets import NUL


class BadPath(ValueError):
    """A request path that cannot be normalised; the message says why (answered 400)."""


_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _percent_decode(raw: bytes) -> bytes:
    if b"%" not in raw:
        return raw
    parts = raw.split(b"%")
    decoded = bytearray(parts[0])
    for part in parts[1:]:
        if len(part) < 2 or not _ESCAPE.match(b"%" + part[:2]):
            raise BadPath("the path has an invalid percent-escape")
        decoded.append(int(part[:2], 16))
        decoded += part[2:]
    return bytes(decoded)


def normalize_path(path: str) -> str:
    """The path a rule is matched against, as nginx normalises a URI before ``location``.

    ``path`` is the request target's path as received (its bytes as latin-1
    characters, no query).  Percent-escapes are decoded once (``%252F`` stays
    ``%2F``), the bytes read as UTF-8 (invalid sequences become characters no
    rule can contain), then ``.`` segments dropped, ``..`` segments remove the one
    before, and empty segments merged; a trailing ``/``, ``/.`` or ``/..`` leaves
    the result ending in ``/``.  A path not starting with ``/`` (``*``) is only
    decoded.  Raises :class:`BadPath` for an invalid percent-escape, an encoded
    NUL, or a ``..`` above the root.
    """
    if path.isascii() and "%" not in path and "//" not in path and "/." not in path:
        return path
    decoded = _percent_decode(path.encode("latin-1"))
    if NUL in decoded:
        raise BadPath("the path has an encoded NUL")
    text = decoded.decode("utf-8", "surrogateescape")
    if not text.startswith("/"):
        return text
    segments = text.split("/")[1:]
    kept: List[str] = []
    trailing = False
    for segment in segments:
        trailing = segment in ("", ".", "..")
        if segment == "..":
            if not kept:
                raise BadPath("the path goes above the root")
            kept.pop()
        elif not trailing:
            kept.append(segment)
    return "/" + "/".join(kept) + ("/" if trailing and kept else "")


def normalize_host(host: Optional[str]) -> str:
    """The Host header's name part, lower-cased, without port or IPv6 brackets."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end != -1 else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class Domain:
    """The rules of one domain, compiled for path matching."""

    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        self._exact: Dict[str, RuleConfig] = {}
        prefixes: List[Tuple[str, bool, RuleConfig]] = []
        self._regexes: List[Tuple[Pattern[str], RuleConfig]] = []
        for rule in rules:
            pattern = parse_path(rule.path)
            if pattern.kind == PATH_EXACT:
                self._exact.setdefault(pattern.value, rule)
            elif pattern.kind in (PATH_PREFERRED, PATH_PREFIX):
                prefixes.append((pattern.value, pattern.kind == PATH_PREFERRED, rule))
            else:
                self._regexes.append((pattern.compiled(), rule))
        # Longest first; at equal length a ^~ prefix before a plain one (nginx
        # refuses the duplicate; this keeps the choice stable).
        prefixes.sort(key=lambda item: (-len(item[0]), not item[1]))
        self._prefixes = tuple(prefixes)

    def match(self, path: str) -> Optional[RuleConfig]:
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        longest: Optional[RuleConfig] = None
        for prefix, preferred, candidate in self._prefixes:
            if path.startswith(prefix):
                if preferred:
                    return candidate
                longest = candidate
                break
        for regex, candidate in self._regexes:
            if regex.search(path):
                return candidate
        return longest


#: (Host, path) pairs a router remembers the rule of, at most; clients choose
#: both, so when full it starts again rather than grow.
MAX_REMEMBERED_ROUTES = 4096
#: Characters of Host and path together, at most, of a pair remembered: a longer
#: one is matched afresh each time (so the memory stays under a few MiB).
MAX_REMEMBERED_LENGTH = 512

_UNKNOWN = object()


class Router:
    """Chooses the rule for a request among a listener's rules.

    ``default_domain`` is the host pattern (as written in the rules) of the
    domain that takes requests whose Host matches no domain; without it, the
    rules without a host take them, or with none such the first domain written.
    """

    def __init__(self, rules: Sequence[RuleConfig], default_domain: Optional[str] = None) -> None:
        self.rules = tuple(rules)
        by_domain: Dict[Optional[str], List[RuleConfig]] = {}
        for rule in self.rules:
            key = None if rule.host is None else parse_host(rule.host).text
            by_domain.setdefault(key, []).append(rule)
        domains = {key: Domain(group) for key, group in by_domain.items()}
        self._exact: Dict[str, Domain] = {}
        self._leading: Dict[str, Domain] = {}
        self._trailing: Dict[str, Domain] = {}
        self._regexes: List[Tuple[Pattern[str], Domain]] = []
        for key, domain in domains.items():
            if key is None:
                continue
            pattern = parse_host(key)
            if pattern.kind == HOST_EXACT:
                self._exact[pattern.value] = domain
            elif pattern.kind == HOST_LEADING:
                self._leading[pattern.value] = domain
            elif pattern.kind == HOST_TRAILING:
                self._trailing[pattern.value] = domain
            elif pattern.kind == HOST_REGEX:
                self._regexes.append((pattern.compiled(), domain))
        self._default: Optional[Domain] = None
        if default_domain is not None:
            self._default = domains[parse_host(default_domain).text]
        elif None in domains:
            self._default = domains[None]
        elif domains:
            # Domains are kept in the order their first rule is written.
            self._default = next(iter(domains.values()))
        #: (Host as received, path as received) -> its rule or None (no rule: 404).
        self._remembered: Dict[Tuple[Optional[str], str], Optional[RuleConfig]] = {}

    def domain(self, host: Optional[str]) -> Optional[Domain]:
        """The domain serving ``host`` (a Host header value, port allowed)."""
        name = normalize_host(host)
        if name:
            domain = self._exact.get(name)
            if domain is not None:
                return domain
            if self._leading:
                dot = name.find(".", 1)
                while dot != -1:
                    domain = self._leading.get(name[dot:])
                    if domain is not None:
                        return domain
                    dot = name.find(".", dot + 1)
            if self._trailing:
                dot = name.rfind(".")
                while dot > 0:
                    domain = self._trailing.get(name[: dot + 1])
                    if domain is not None:
                        return domain
                    dot = name.rfind(".", 0, dot)
            for regex, domain in self._regexes:
                if regex.search(name):
                    return domain
        return self._default

    def match(self, host: Optional[str], path: str) -> Optional[RuleConfig]:
        """The rule serving ``host`` and ``path`` (as received), or ``None`` (404).

        The path is normalised first (:func:`normalize_path`; :class:`BadPath`).
        """
        domain = self.domain(host)
        return domain.match(normalize_path(path)) if domain is not None else None

    def match_target(self, host: Optional[str], target: str) -> Optional[RuleConfig]:
        """The rule for a request target in origin form (path and query) as received.

        The answer for a (Host, path) matched lately is remembered (at most
        :data:`MAX_REMEMBERED_ROUTES` of them, each of at most
        :data:`MAX_REMEMBERED_LENGTH` characters): the rules never change during
        a router's life (a reload builds a new one).  A :class:`BadPath` is
        raised again each time, never remembered.
        """
        path = target.partition("?")[0] or "/"
        key = (host, path)
        remembered = self._remembered
        rule = remembered.get(key, _UNKNOWN)
        if rule is _UNKNOWN:
            rule = self.match(host, path)
            if len(path) + (len(host) if host else 0) <= MAX_REMEMBERED_LENGTH:
                if len(remembered) >= MAX_REMEMBERED_ROUTES:
                    remembered.clear()
                remembered[key] = rule
        return rule
