"""Forwarding rules: which target group serves a request, by Host and path.

Matching follows the cloud balancer's model: a host is an exact name, a leading
wildcard (``*.example.com``) or any host; exact beats wildcard, wildcard beats
"any".  Within the chosen host the longest path prefix wins.  Host matching is
case-insensitive and ignores the port.
"""

from __future__ import annotations

from typing import Optional

import attrs

from clbproxy.config import RuleConfig


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


def _host_rank(pattern: Optional[str], host: str) -> Optional[int]:
    """How well ``pattern`` matches ``host``: 0 exact, 1 wildcard, 2 any; None for no match."""
    if pattern is None:
        return 2
    pattern = pattern.lower()
    if pattern.startswith("*."):
        return 1 if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1 else None
    return 0 if host == pattern else None


@attrs.frozen
class Router:
    """Chooses the rule for a request among a listener's rules."""

    rules: tuple[RuleConfig, ...]

    def match(self, host: Optional[str], path: str) -> Optional[RuleConfig]:
        """The rule serving ``host`` and ``path``, or ``None`` (answered with 404)."""
        name = normalize_host(host)
        candidates = []
        for rule in self.rules:
            rank = _host_rank(rule.host, name)
            if rank is not None:
                candidates.append((rank, rule))
        if not candidates:
            return None
        best_rank = min(rank for rank, _ in candidates)
        best: Optional[RuleConfig] = None
        for rank, rule in candidates:
            if rank != best_rank or not path.startswith(rule.path):
                continue
            if best is None or len(rule.path) > len(best.path):
                best = rule
        return best
