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

from clbproxy.balancer import TargetGroup
from clbproxy.config import ListenerConfig
from clbproxy.httpproxy import HTTPForwarder, render_error
from clbproxy.redirect import RedirectToHTTPS
from clbproxy.relay import RelayServerFactory, RelaySettings, request_target
from clbproxy.routing import Router
from clbproxy.tls import BackendConnector, server_tls, tls_factory

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
        self, router: Router, groups: Mapping[str, TargetGroup], websocket, forwarder
    ) -> None:
        super().__init__()
        self._router = router
        self._groups = groups
        self._websocket = websocket
        self._forwarder = forwarder

    def render(self, request: Request):
        if is_websocket_upgrade(request):
            return self._websocket.render(request)
        host = request.getHeader(b"host")
        target = request_target(request.uri.decode("latin-1"))
        rule = self._router.match(host.decode("latin-1") if host else None, target.split("?", 1)[0])
        if rule is None:
            return render_error(request, 404, "no forwarding rule matches this host and path")
        return self._forwarder.forward(request, self._groups[rule.target_group])


class ListenerService(StreamServerEndpointService):
    """Listens on a listener's endpoint; on stop, also closes its backend connections."""

    def __init__(self, endpoint, factory, forwarder: HTTPForwarder) -> None:
        super().__init__(endpoint, factory)
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
    """The service for one ``[[listener]]``, named ``listener:NAME``.

    An HTTPS listener wraps the same site in TLS, inside the bind endpoint, so
    under ``haproxy:`` the PROXY header comes first and the TLS handshake after.
    Its ``tls`` attribute (:class:`clbproxy.tls.ServerTLS`) reloads certificates.
    """
    settings = RelaySettings.from_config(listener, dict(groups))
    connector = BackendConnector(reactor)
    forwarder = HTTPForwarder(
        reactor, scheme=settings.scheme, trusted=settings.trusted, connector=connector
    )
    relay = RelayServerFactory(settings, reactor, connector=connector.endpoint)
    root = ListenerResource(settings.router, groups, WebSocketResource(relay), forwarder)
    if listener.redirect_to_https:
        root = RedirectToHTTPS(listener.https_port)
    site = Site(root, timeout=listener.client_timeout, reactor=reactor)
    site.displayTracebacks = False
    factory = site
    tls = None
    if listener.tls is not None:
        tls = server_tls(listener)
        factory = tls_factory(tls, site)
    service = ListenerService(serverFromString(reactor, listener.bind), factory, forwarder)
    service.setName(f"listener:{listener.name}")
    service.relay = relay
    service.tls = tls
    return service
