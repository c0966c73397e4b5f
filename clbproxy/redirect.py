"""The one redirect every part of the proxy answers with (rule redirects, HTTP to HTTPS)."""

from __future__ import annotations

from typing import Optional

#: Methods a 301 may be followed with; others get 308 so the method and body are kept.
_SAFE_METHODS = frozenset({b"GET", b"HEAD", "GET", "HEAD"})


def redirect_response(
    request_or_parts: object, location: str, method, status: Optional[int] = None
) -> tuple[int, list[tuple[str, str]]]:
    """``(status, headers)`` redirecting to ``location``: 301 for GET/HEAD, 308 otherwise.

    ``request_or_parts`` is accepted for callers that pass the request; only
    ``method`` decides the status unless ``status`` is given.
    """
    if status is None:
        status = 301 if method in _SAFE_METHODS else 308
    return status, [("Location", location)]
