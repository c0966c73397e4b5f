"""What a forwarding rule does to a request besides choosing a target group.

Path rewrite (strip a prefix, or replace the first match of a regex), request
header changes, and the answers a rule gives itself (a fixed response, a
redirect).  Pure functions over a rule, compiled once per rule and cached.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Optional, Pattern
from urllib.parse import quote

from clbproxy.config import RuleConfig
from clbproxy.http.redirect import redirect_response
from clbproxy.routing.router import normalize_path

#: Characters left as they are when a rewritten path is percent-encoded again
#: (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

#: Stands for a decoded "?" while a path is rewritten (a lone surrogate, which
#: decoding never produces).
_QUESTION = "\udc3f"


@cache
def _compiled(pattern: str) -> Pattern[str]:
    return re.compile(pattern)


def rewrite_target(rule: Optional[RuleConfig], target: str) -> str:
    """The request target (path and query) a backend receives for ``target``.

    Without a rewrite it is ``target`` as the client sent it (nginx's
    ``proxy_pass`` without a URI part).  A rewrite works, as nginx's does, on the
    normalised path the rule matched (:func:`clbproxy.routing.router.normalize_path`),
    which is percent-encoded again for the backend; a ``?`` in a regex
    replacement starts new query arguments, followed by the client's.
    """
    rewrite = rule.rewrite if rule is not None else None
    if rewrite is None:
        return target
    path, question, query = target.partition("?")
    # A "?" the client encoded in its path must not start a query below.
    path = normalize_path(path or "/").replace("?", _QUESTION)
    if rewrite.strip_prefix is not None:
        prefix = rewrite.strip_prefix.rstrip("/")
        if path == prefix or path.startswith(prefix + "/"):
            path = path[len(prefix) :]
    else:
        path = _compiled(rewrite.pattern).sub(rewrite.replacement, path, count=1)
    path, new_question, new_query = path.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    path = _encode(path, _PATH_SAFE)
    if new_question:
        new_query = _encode(new_query, _PATH_SAFE + "?")
        return path + "?" + "&".join(part for part in (new_query, query) if part)
    return path + question + query


def _encode(text: str, safe: str) -> str:
    return quote(text.replace(_QUESTION, "?"), safe=safe, errors="surrogateescape")


def header_changes(rule: Optional[RuleConfig], names: list[str]) -> tuple[set[str], list]:
    """``(lower-case names to drop, (name, value) pairs to add)`` for the backend request.

    ``set_headers`` replace any header of the same name the client sent.
    """
    if rule is None:
        return set(), []
    drop = set(rule.remove_headers) | {name.lower() for name, _ in rule.set_headers}
    return drop, list(rule.set_headers)


_LOCATION_VARIABLE = re.compile(r"\$(request_uri|scheme|host)")


def expand_location(location: str, *, scheme: str, host: str, request_uri: str) -> str:
    """``location`` with ``$scheme``, ``$host`` and ``$request_uri`` replaced.

    One pass over the configured text: a ``$host`` inside the client's own
    request URI stays as the client wrote it.
    """
    values = {"request_uri": request_uri, "scheme": scheme, "host": host}
    return _LOCATION_VARIABLE.sub(lambda match: values[match.group(1)], location)


def rule_redirect(
    rule: RuleConfig, *, method: bytes, scheme: str, host: str, request_uri: str
) -> tuple[int, list[tuple[str, str]]]:
    """The redirect a rule answers: ``(status, headers)``."""
    assert rule.redirect is not None
    location = expand_location(
        rule.redirect.location, scheme=scheme, host=host, request_uri=request_uri
    )
    return redirect_response(location, method, rule.redirect.status)
