"""The admin listener: status page, JSON API with runtime actions, Prometheus metrics.

- ``GET /``: the status page (it refreshes itself);
- ``GET /api/status``: listeners, rules, target groups and backends as JSON;
- ``GET /api/series``: the last 15 minutes of traffic per listener and backend, in
  5-second buckets (:mod:`clbproxy.observability.series`); ``?raw=1``: as counts and
  latency histograms (what a worker gives its supervisor to merge);
- ``POST /api/backends/GROUP/ADDRESS/drain|disable|enable``: a backend's runtime state;
  a drain may end: ``{"close_after": S, "spread": S}`` relieves its sessions after
  a grace, spread over some seconds;
- ``POST /api/backends/GROUP/ADDRESS/weight`` with ``{"weight": N}``: its weight (0-100);
- ``POST /api/backends/GROUP/ADDRESS/shed`` with ``{"share": 0-1, "over": S}``:
  relieve that share of its WebSocket sessions, evenly over ``over`` seconds;
- ``GET <metrics_path>``: Prometheus text format.

``ADDRESS`` is the backend's ``host:port`` as written in tap.conf (percent-encode
an IPv6 address's brackets and colons if the client needs to).  Every answer of
the API is JSON; mistakes get 400 ``{"error": ...}``, an unknown target group or
backend 404, a wrong method 405.  POSTs must be ``Content-Type:
application/json`` and, when the browser sends ``Origin``, come from the admin
page's own origin, so another web page cannot drive the API through a browser.

A browser is also kept out by name: every path answers only requests whose
``Host`` is an IP address, ``localhost`` (or ``*.localhost``) or a name in
``[admin] allowed_hosts``; any other Host gets 403 (as webpack-dev-server, Vite
and Jupyter answer).  A page on an attacker's domain can make its name resolve to
this address (DNS rebinding) and so become "same-origin" with the admin site, but
its requests still say the attacker's name in ``Host``.  No answer may be framed
(``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``), so no other page can
overlay the status page's buttons.  With ``token_file``, the API and the metrics
also need ``Authorization: Bearer TOKEN`` (401 without it); the page itself holds
no data and asks for the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
from typing import Any, Optional, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from clbproxy.config import AdminConfig
from clbproxy.observability import series as charts
from clbproxy.observability.livestate import LiveState
from clbproxy.upstream.balancer import DRAIN, MAINT, READY, UnknownBackend

log = Logger()

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "admin_static")

#: Largest request body the API reads.
MAX_BODY = 4096

_STATE_ACTIONS = {"drain": DRAIN, "disable": MAINT, "enable": READY}

#: The runtime actions on a backend.
ACTIONS = (*_STATE_ACTIONS, "weight", "shed")

#: Longest grace, spread or shedding time an action may ask for (seconds).
MAX_ACTION_SECONDS = 86400.0

UNKNOWN_ACTION = "unknown action {!r}; use drain, disable, enable, weight or shed"


#: Where the status page is.
PAGE_PATHS = ("/", "/index.html")

#: Set on every answer that has no fuller policy (the page has its own, which says the same).
NO_FRAMING = b"default-src 'none'; frame-ancestors 'none'"

#: The status page's policy: inline script and style, requests to its own origin only.
PAGE_POLICY = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; "
    b"form-action 'none'"
)

_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?\Z")
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\Z")


def host_allowed(host: Optional[str], allowed_hosts: Sequence[str] = ()) -> bool:
    """Whether the admin site answers a request with this ``Host`` header value.

    IP literals (IPv6 in brackets) and the localhost names are always fine: DNS
    rebinding needs a name whose address the attacker controls, and browsers
    resolve ``localhost`` and ``*.localhost`` to loopback themselves.  Any other
    name must be in ``allowed_hosts`` (lower case, no final dot).  The port, if
    any, does not matter; a missing, empty or malformed Host is refused.
    """
    match = _HOST.match(host or "")
    if match is None:
        return False
    name = match.group(1)
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return False
        return True
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return True
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not _NAME.match(name) or ".." in name:
        return False
    return name == "localhost" or name.endswith(".localhost") or name in allowed_hosts


class APIError(Exception):
    """A request the API refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_answer(request: Request, status: int, data: Any) -> bytes:
    """Answer ``request`` with ``data`` as JSON (never cached): the API's only body format."""
    body = json.dumps(data, indent=1).encode("utf-8") + b"\n"
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return body


def backend_action(groups, group_name: str, address: str, action: str, body: Any):
    """Apply one runtime action to a backend and log it; its new control state and details.

    Returns ``(control, details)``: details is a dict to add to the answer
    (``shedding``: how many sessions a ``shed`` relieves).  Raises
    :class:`APIError` for an unknown group, backend or action, or a bad body.
    The admin API calls it, and so does a worker started after actions were taken.
    """
    group = groups.get(group_name)
    if group is None:
        raise APIError(404, f"unknown target group {group_name!r}")
    if action not in ACTIONS:
        raise APIError(404, UNKNOWN_ACTION.format(action))
    body = body if isinstance(body, dict) else {}
    details: dict[str, Any] = {}
    try:
        if action == "weight":
            weight = body.get("weight")
            if weight is None:
                raise APIError(400, 'the body must be a JSON object like {"weight": 10}')
            try:
                control = group.set_weight(address, weight)
            except ValueError as error:
                raise APIError(400, str(error)) from None
        elif action == "shed":
            share = _number(body, "share", 0.0, 1.0, None, '{"share": 0.25, "over": 60}')
            over = _number(body, "over", 0.0, MAX_ACTION_SECONDS, 0.0)
            control = group.control(address)
            details["shedding"] = group.rebalancer.shed(address, share, over)
        else:
            ends = action == "drain" and ("close_after" in body or "spread" in body)
            if ends:
                close_after = _number(body, "close_after", 0.0, MAX_ACTION_SECONDS, 0.0)
                spread = _number(body, "spread", 0.0, MAX_ACTION_SECONDS, 0.0)
            control = group.set_state(address, _STATE_ACTIONS[action])
            if ends:
                group.rebalancer.drain(address, close_after, spread)
                details.update(close_after=close_after, spread=spread)
            elif action == "drain":
                group.rebalancer.cancel_drain(address)
    except UnknownBackend:
        raise APIError(404, f"no backend {address!r} in target group {group_name!r}") from None
    log.info(
        "admin: backend {backend} of {group}: {action} (state {state}, weight {weight}){details}",
        backend=address,
        group=group_name,
        action=action,
        state=control.state,
        weight=control.weight,
        details="".join(f", {key} {value}" for key, value in details.items()),
    )
    return control, details


def _number(
    body: dict, key: str, low: float, high: float, default: Optional[float], example: str = ""
) -> float:
    """A number of the action's body, checked; ``default`` None: it is required."""
    value = body.get(key, default)
    if value is None:
        raise APIError(400, f"the body must be a JSON object like {example}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise APIError(400, f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


class AdminResource(Resource):
    """The whole admin site: one dispatcher, so every path gets a JSON or page answer."""

    isLeaf = True

    def __init__(
        self,
        live: Optional[LiveState],
        registry: CollectorRegistry,
        admin: AdminConfig,
        series: Optional[charts.SeriesStore] = None,
    ) -> None:
        super().__init__()
        self.live = live
        self.registry = registry
        self.series = series
        self.configure(admin)
        with open(os.path.join(STATIC, "status.html"), "rb") as page:
            self._page = page.read()

    def configure(self, admin: AdminConfig) -> None:
        """Take the settings of ``admin`` that need no new socket (on start and reload)."""
        self.metrics_path = admin.metrics_path
        self.allowed_hosts = frozenset(admin.allowed_hosts)
        self._token = None if admin.token is None else admin.token.encode("ascii")

    def render(self, request: Request) -> bytes:
        path = urlsplit(request.uri).path.decode("latin-1")
        method = request.method.decode("latin-1")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"X-Frame-Options", b"DENY")
        policy = PAGE_POLICY if path in PAGE_PATHS else NO_FRAMING
        request.setHeader(b"Content-Security-Policy", policy)
        try:
            self._check_host(request)
            if self._token is not None and (
                path == self.metrics_path or path == "/api" or path.startswith("/api/")
            ):
                self._check_token(request)
            return self._route(request, method, path)
        except APIError as error:
            return json_answer(request, error.status, {"error": error.message})

    def _check_host(self, request: Request) -> None:
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
        if host_allowed(host, self.allowed_hosts):
            return
        log.warn(
            "admin: refused a request for Host {host!r} from {peer}; "
            "add the name to [admin] allowed_hosts if it is yours",
            host=host if len(hosts) < 2 else hosts,
            peer=getattr(request.getClientAddress(), "host", None),
        )
        raise APIError(
            403,
            "this Host is not allowed here: use an IP address, localhost, "
            "or a name in [admin] allowed_hosts",
        )

    def _check_token(self, request: Request) -> None:
        scheme, _, given = (request.getHeader(b"authorization") or b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(b" "), self._token):
            return
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="clbproxy admin"')
        raise APIError(401, "this API needs Authorization: Bearer <the token in token_file>")

    def _route(self, request: Request, method: str, path: str) -> bytes:
        if path == self.metrics_path:
            self._allow(request, method, "GET")
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            return generate_latest(self.registry)
        if path in PAGE_PATHS:
            self._allow(request, method, "GET")
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            return self._page
        if path == "/api/status":
            self._allow(request, method, "GET")
            return json_answer(request, 200, self.live.snapshot())
        if path == "/api/series" and self.series is not None:
            self._allow(request, method, "GET")
            self.series.sample()
            raw = self.series.raw()
            answer = raw if wants_raw_series(request) else charts.render(raw)
            return json_answer(request, 200, answer)
        if path.startswith("/api/backends/"):
            parts = path[len("/api/backends/") :].split("/")
            if len(parts) != 3 or not all(parts):
                raise APIError(
                    404, "use /api/backends/GROUP/ADDRESS/(drain|disable|enable|weight|shed)"
                )
            group, address, action = (unquote(part) for part in parts)
            self._allow(request, method, "POST")
            return self._backend_action(request, group, address, action)
        raise APIError(404, f"no such page: {path}")

    def _allow(self, request: Request, method: str, allowed: str) -> None:
        if method == allowed or (allowed == "GET" and method == "HEAD"):
            return
        request.setHeader(b"Allow", allowed.encode("ascii"))
        raise APIError(405, f"{method} is not allowed here; use {allowed}")

    def _backend_action(self, request: Request, group_name: str, address: str, action: str):
        if action not in ACTIONS:
            raise APIError(404, UNKNOWN_ACTION.format(action))
        body = self._body(request)
        control, details = backend_action(self.live.groups, group_name, address, action, body)
        return json_answer(
            request,
            200,
            {
                "group": group_name,
                "address": control.address,
                "state": control.state,
                "weight": control.weight,
                "configured_weight": control.configured_weight,
                **details,
            },
        )

    def _body(self, request: Request) -> Any:
        """The POST body as JSON (``{}`` when empty), after the cross-site checks."""
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip()
        if content_type.lower() != b"application/json":
            raise APIError(400, "POST requests must have Content-Type: application/json")
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host")
        if origin is not None and urlsplit(origin).netloc != host:
            raise APIError(403, "cross-origin requests are not allowed")
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            raise APIError(400, f"the body is larger than {MAX_BODY} bytes")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as error:
            raise APIError(400, f"the body is not JSON: {error}") from None


def wants_raw_series(request: Request) -> bool:
    """``?raw=1``: the series as counts and histograms, for a supervisor to merge."""
    return parse_qs(urlsplit(request.uri).query).get(b"raw", [b""])[0] in (b"1", b"true")


def admin_site(
    live: LiveState,
    registry: CollectorRegistry,
    admin: AdminConfig,
    reactor,
    series: Optional[charts.SeriesStore] = None,
) -> Site:
    """The admin listener's site."""
    site = Site(AdminResource(live, registry, admin, series), reactor=reactor)
    site.displayTracebacks = False
    return site
