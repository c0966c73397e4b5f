"""Redirects the proxy answers itself: one mechanism for ``redirect_to_https`` and rules.

301 for GET and HEAD, 308 for every other method (so a POST stays a POST, as
browsers only keep the method and body for 307/308), the way a cloud
balancer's HTTP-to-HTTPS redirect behaves.
"""

from __future__ import annotations

from typing import Optional

from twisted.web.resource import Resource
from twisted.web.server import Request

from clbproxy.http.responses import error_page
from clbproxy.http.server import origin_form

#: Methods a 301 may be followed with; others get 308 so the method and body are kept.
_SAFE_METHODS = frozenset({b"GET", b"HEAD", "GET", "HEAD"})


def redirect_status(method: bytes | str) -> int:
    """301 for GET/HEAD, 308 otherwise."""
    return 301 if method in _SAFE_METHODS else 308


def redirect_response(
    location: str, method: bytes | str, status: Optional[int] = None
) -> tuple[int, list[tuple[str, str]]]:
    """``(status, headers)`` redirecting to ``location``; the status defaults by method."""
    return status or redirect_status(method), [("Location", location)]


#: Characters that would make a Host value change a URL's authority, path or
#: query (``https://good.test@evil.example/``), besides controls and non-ASCII.
_NOT_IN_AUTHORITY = frozenset("/\\@?#%")


def redirect_host(host: Optional[str], fallback: str, *, keep_port: bool = False) -> str:
    """The client's Host as the authority of a URL the proxy redirects to.

    The port is dropped unless ``keep_port``.  An empty Host, or one with a
    character that could move the URL's authority elsewhere (``@``, ``/``,
    ``\\``, ``?``, ``#``, ``%``, whitespace, a control character, non-ASCII), gives
    ``fallback`` instead: a redirect never sends a client to a host that the
    Host header smuggled in.  Shared by ``redirect_to_https`` and rules'
    ``$host``.
    """
    name = (host or "").strip()
    if not keep_port:
        if name.startswith("["):
            name = name[: name.find("]") + 1] if "]" in name else name
        else:
            name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    if not name or any(char in _NOT_IN_AUTHORITY or not "!" <= char <= "~" for char in name):
        return fallback
    return name


def local_host(request: Request) -> str:
    """The listening address of ``request``'s connection, as a URL host (``[::1]``)."""
    fallback = getattr(request.getHost(), "host", None) or "localhost"
    return f"[{fallback}]" if ":" in fallback else fallback


def https_location(host: Optional[bytes], target: bytes, port: int, fallback_host: str) -> bytes:
    """``https://host[:port]/path?query`` for a request's Host (port dropped) and target.

    The Host header's own port is replaced by ``port``; 443 is left out.  An
    absolute-form target keeps its path and query (its authority is already the
    request's Host on a listener, see :func:`clbproxy.http.server.request_host`).
    """
    name = redirect_host((host or b"").decode("latin-1"), fallback_host)
    authority = name if port == 443 else f"{name}:{port}"
    target = origin_form(target) or b"/"
    return f"https://{authority}".encode("latin-1") + target


def render_redirect(request: Request, location: bytes) -> bytes:
    """Answer ``request`` with a redirect to ``location``; returns the body."""
    status = redirect_status(request.method)
    body = error_page(status, "moved to " + location.decode("latin-1"))
    request.setResponseCode(status)
    request.setHeader(b"Location", location)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    return body


class RedirectToHTTPS(Resource):
    """An HTTP listener's root with ``redirect_to_https``: every request, upgrades included."""

    isLeaf = True

    def __init__(self, https_port: int) -> None:
        super().__init__()
        self.https_port = https_port

    def render(self, request: Request) -> bytes:
        location = https_location(
            request.getHeader(b"host"), request.uri, self.https_port, local_host(request)
        )
        return render_redirect(request, location)
