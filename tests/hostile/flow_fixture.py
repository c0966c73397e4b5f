"""A proxy with an echo backend and a sink backend in a process of their own, for flow abuse.

Run as ``python -m tests.hostile.flow_fixture JSON``: ``JSON`` holds ``listener``
(keyword arguments of :class:`ListenerConfig`).  Requests for ``/sink`` go to
the sink: a backend that accepts a WebSocket upgrade (and any permessage-deflate
offer, without context takeover) and then reads and drops every byte without
looking at it, so whatever CPU a client's frames cost is the proxy's own.
Everything else goes to the Autobahn echo of :mod:`tests.hostile.fixture`.  It
prints one JSON line ``{"proxy": PORT}``, logs to stderr and exits when its stdin
closes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.listener.limits import ConnectionGate
from clbproxy.listener.service import listener_service
from clbproxy.upstream.balancer import TargetGroup
from tests.hostile.fixture import EchoProtocol, serve

log = Logger()

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Sink(Protocol):
    """Answers the upgrade with 101, then drops everything."""

    _head = b""
    _open = False

    def dataReceived(self, data: bytes) -> None:
        if self._open:
            return
        self._head += data
        if b"\r\n\r\n" not in self._head:
            return
        self._open = True
        key = b""
        deflate = False
        for line in self._head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
            elif name.strip().lower() == b"sec-websocket-extensions":
                deflate = b"permessage-deflate" in value
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        answer = [
            b"HTTP/1.1 101 Switching Protocols",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Accept: " + accept,
        ]
        if deflate:
            answer.append(
                b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover"
            )
        self.transport.write(b"\r\n".join(answer) + b"\r\n\r\n")


@defer.inlineCallbacks
def start(reactor, spec: dict):
    ws = WebSocketServerFactory()
    ws.protocol = EchoProtocol
    ws.setProtocolOptions(failByDrop=False, closeHandshakeTimeout=1, allowNullOrigin=True)
    echo = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(ws)
    sink = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Sink)
    )
    listener = ListenerConfig(
        name="flow",
        bind="tcp:0:interface=127.0.0.1",
        rules=(RuleConfig(target_group="sink", path="/sink"), RuleConfig(target_group="echo")),
        **spec.get("listener", {}),
    )
    groups = {
        name: TargetGroup(
            TargetGroupConfig(
                name=name, backends=(BackendConfig("127.0.0.1", port.getHost().port),)
            )
        )
        for name, port in (("echo", echo), ("sink", sink))
    }
    service = listener_service(listener, groups, reactor, ConnectionGate.for_process())
    service.startService()
    port = yield service._waitingForPort
    print(json.dumps({"proxy": port.getHost().port}), flush=True)


if __name__ == "__main__":
    serve(sys.argv, start)
