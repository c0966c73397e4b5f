"""A proxy and its backend in a process of their own, for the hostile-input catalogue.

Run as ``python -m tests.hostile.fixture JSON``: ``JSON`` holds ``listener`` (keyword
arguments of :class:`ListenerConfig`, ``bind`` defaulting to an ephemeral
127.0.0.1 port, plus ``rules``: a list of :class:`RuleConfig`
keyword arguments, a ``fixed_response`` as a dict, and ``tls``: keyword arguments
of :class:`TLSConfig` whose ``certificates`` are :class:`CertificateConfig` keyword
arguments) and ``group``
(keyword arguments of :class:`TargetGroupConfig`).
The process starts an Autobahn echo backend and a WebSocket echo-capable HTTP
backend on ephemeral 127.0.0.1 ports, then the proxy's listener in front of them,
and prints one JSON line ``{"proxy": PORT, "backend": PORT}``.  As in
``twistd clbproxy``, the listener's connections are held to the process's
descriptor budget.  It logs to stderr and exits when its stdin closes, so it
never outlives the test run.
"""

from __future__ import annotations

import json
import sys

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, stdio
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site

from clbproxy.config import (
    BackendConfig,
    CertificateConfig,
    FixedResponseConfig,
    ListenerConfig,
    RedirectConfig,
    RuleConfig,
    TargetGroupConfig,
    TLSConfig,
)
from clbproxy.listener.limits import ConnectionGate
from clbproxy.listener.service import listener_service
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.ws.deflate import accept_first_deflate_offer

log = Logger()


class EchoProtocol(WebSocketServerProtocol):
    """Echoes every message; ``/close`` closes with the code in the message (text)."""

    def onMessage(self, payload, isBinary):
        if self.http_request_uri.startswith("/close") and not isBinary:
            self.sendClose(int(payload), "bye")
        else:
            self.sendMessage(payload, isBinary)


class _Plain(Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"plain " + request.uri


class _Root(Resource):
    """WebSocket upgrades to the echo, anything else a plain answer."""

    isLeaf = True

    def __init__(self, websocket):
        super().__init__()
        self._websocket = websocket
        self._plain = _Plain()

    def render(self, request):
        if request.getHeader(b"upgrade"):
            return self._websocket.render(request)
        return self._plain.render(request)


class _Stdin(Protocol):
    def __init__(self, reactor):
        self._reactor = reactor

    def connectionLost(self, reason):
        self._reactor.stop()


@defer.inlineCallbacks
def start(reactor, spec: dict):
    ws = WebSocketServerFactory()
    ws.protocol = EchoProtocol
    # The backend takes permessage-deflate offers, which the proxy passes on end to end.
    ws.setProtocolOptions(
        failByDrop=False,
        closeHandshakeTimeout=1,
        allowNullOrigin=True,
        perMessageCompressionAccept=accept_first_deflate_offer,
    )
    backend = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(_Root(WebSocketResource(ws)))
    )
    backend_port = backend.getHost().port
    listener_spec = dict(spec.get("listener", {}))
    rules = tuple(_rule(rule) for rule in listener_spec.pop("rules", [{}]))
    if "tls" in listener_spec:
        tls = dict(listener_spec.pop("tls"))
        tls["certificates"] = tuple(CertificateConfig(**c) for c in tls.get("certificates", ()))
        listener_spec["tls"] = TLSConfig(**tls)
    bind = listener_spec.pop("bind", "tcp:0:interface=127.0.0.1")
    listener = ListenerConfig(name="hostile", bind=bind, rules=rules, **_tuples(listener_spec))
    group = TargetGroupConfig(
        name="pool",
        backends=(BackendConfig("127.0.0.1", backend_port),),
        **spec.get("group", {}),
    )
    gate = ConnectionGate.for_process()
    service = listener_service(listener, {"pool": TargetGroup(group)}, reactor, gate)
    service.startService()
    port = yield service._waitingForPort
    print(json.dumps({"proxy": port.getHost().port, "backend": backend_port}), flush=True)


def _rule(options: dict) -> RuleConfig:
    """A rule to the backend pool, or answering ``fixed_response`` or ``redirect`` (dicts)."""
    options = _tuples(options)
    if "fixed_response" in options:
        return RuleConfig(
            **{**options, "fixed_response": FixedResponseConfig(**options["fixed_response"])}
        )
    if "redirect" in options:
        return RuleConfig(**{**options, "redirect": RedirectConfig(**options["redirect"])})
    return RuleConfig(**{"target_group": "pool", **options})


def _tuples(options: dict) -> dict:
    """JSON lists become the tuples the frozen config records hold."""
    return {
        key: tuple(value) if isinstance(value, list) else value for key, value in options.items()
    }


def serve(argv: list[str], starter=None) -> None:
    """Run a fixture process: ``starter(reactor, spec)`` with the JSON spec of ``argv[1]``.

    It logs to stderr and stops when its stdin closes, so it never outlives the
    test run.  ``starter`` defaults to this module's :func:`start`.
    """
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    spec = json.loads(argv[1]) if len(argv) > 1 else {}
    stdio.StandardIO(_Stdin(reactor), stdout=sys.stderr.fileno())
    d = (starter or start)(reactor, spec)
    d.addErrback(lambda failure: (log.failure("fixture start failed", failure), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    serve(sys.argv)
