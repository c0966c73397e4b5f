"""A listener: one socket, one HTTP/1.1 parser, WebSocket and plain HTTP on the same port.

twisted.web's ``HTTPChannel`` parses every request.  Requests that ask for a
WebSocket upgrade are handed, transport and all, to Autobahn (the relay); all
others are routed by the listener's rules and forwarded to a backend.  No
configuration turns WebSocket on: an HTTP listener carries WS, as on a cloud
balancer.
"""

from __future__ import annotations

from typing import Mapping

from autobahn.twisted.resource import WebSocketResource
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from clbproxy.accesslog import request_record
from clbproxy.actions import rule_redirect
from clbproxy.balancer import TargetGroup
from clbproxy.config import FixedResponseConfig, ListenerConfig
from clbproxy.httpproxy import HTTPForwarder, render_error
from clbproxy.httpserver import HTTPLimits, ProxySite
from clbproxy.relay import RelayServerFactory, RelaySettings, request_target
from clbproxy.routing import Router

log = Logger()


def is_websocket_upgrade(request: Request) -> bool:
    """True when the request asks to switch to WebSocket (``Upgrade: websocket``)."""
    for value in request.requestHeaders.getRawHeaders(b"upgrade", []):
        if any(token.strip().lower() == b"websocket" for token in value.split(b",")):
            return True
    return False


class ListenerResource(Resource):
    """The root of a listener's site: upgrades to the relay, other requests to the forwarder."""

    isLeaf = True

    def __init__(
        self,
        router: Router,
        groups: Mapping[str, TargetGroup],
        websocket,
        forwarder,
        name: str = "-",
    ) -> None:
        super().__init__()
        self._router = router
        self._groups = groups
        self._websocket = websocket
        self._forwarder = forwarder
        self._name = name

    def render(self, request: Request):
        host = request.getHeader(b"host")
        host_text = host.decode("latin-1") if host else None
        target = request_target(request.uri.decode("latin-1"))
        rule = self._router.match(host_text, target.split("?", 1)[0])
        upgrade = is_websocket_upgrade(request)
        if upgrade and request.clientproto != b"HTTP/1.1":
            return render_error(request, 400, "a WebSocket handshake needs HTTP/1.1")
        if rule is None and upgrade:
            # The relay refuses the handshake itself (and closes, as for any refusal).
            return self._websocket.render(request)
        if upgrade and (rule.fixed_response is not None or rule.redirect is not None):
            # A refused upgrade ends the connection, as the relay's refusals do.
            request.setHeader(b"Connection", b"close")
            request.channel.persistent = False
        if not upgrade or rule.fixed_response is not None or rule.redirect is not None:
            forwarder = self._forwarder
            record = request_record(request, self._name, rule, forwarder.reactor, forwarder.trusted)
        if rule is None:
            return render_error(request, 404, "no forwarding rule matches this host and path")
        if rule.fixed_response is not None:
            return render_fixed_response(request, rule.fixed_response)
        if rule.redirect is not None:
            status, headers = rule_redirect(
                rule,
                method=request.method,
                scheme=self._forwarder.scheme,
                host=host_text or "",
                request_uri=target,
            )
            request.setResponseCode(status)
            for name, value in headers:
                request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
            return render_error(request, status, f"moved to {headers[0][1]}")
        if upgrade:
            return self._websocket.render(request)
        return self._forwarder.forward(request, self._groups[rule.target_group], rule, record)


def render_fixed_response(request: Request, fixed: FixedResponseConfig) -> bytes:
    """Answer a rule's fixed response."""
    body = fixed.body.encode("utf-8")
    request.setResponseCode(fixed.status)
    request.setHeader(b"Content-Type", fixed.content_type.encode("latin-1"))
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    return b"" if request.method == b"HEAD" else body


class ListenerService(StreamServerEndpointService):
    """Listens on a listener's endpoint; on stop, also closes its backend connections."""

    def __init__(self, endpoint, site: Site, forwarder: HTTPForwarder) -> None:
        super().__init__(endpoint, site)
        self._forwarder = forwarder
        # Fail start-up on a bind error instead of only logging it.
        self._raiseSynchronously = True

    def stopService(self):
        d = super().stopService()
        d.addBoth(lambda result: self._forwarder.close())
        return d


def listener_service(
    listener: ListenerConfig, groups: Mapping[str, TargetGroup], reactor
) -> ListenerService:
    """The service for one ``[[listener]]``, named ``listener:NAME``."""
    settings = RelaySettings.from_config(listener, dict(groups))
    forwarder = HTTPForwarder(
        reactor, scheme=settings.scheme, trusted=settings.trusted, via=listener.via
    )
    relay = RelayServerFactory(settings, reactor)
    root = ListenerResource(
        settings.router, groups, WebSocketResource(relay), forwarder, listener.name
    )
    limits = HTTPLimits(
        max_request_line=listener.max_request_line,
        max_header_size=listener.max_header_size,
        max_body_size=listener.max_body_size,
    )
    site = ProxySite(root, limits=limits, timeout=listener.client_timeout, reactor=reactor)
    site.displayTracebacks = False
    service = ListenerService(serverFromString(reactor, listener.bind), site, forwarder)
    service.setName(f"listener:{listener.name}")
    service.relay = relay
    return service
