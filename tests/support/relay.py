"""The WebSocket relay in memory: a request head in, the bytes each side gets out.

:class:`RelayHarness` builds a listener's :class:`~clbproxy.ws.relay.RelayServerFactory`
on a :class:`~twisted.internet.testing.MemoryReactorClock` whose backend
connector hands out :class:`~twisted.internet.testing.StringTransport`
connections on demand.  Tests speak to it only in bytes (the client's upgrade,
the backend's answer) and read bytes back, so they keep passing whatever
engine sits between the two sockets.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Optional

import txaio
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.routing.settings import ListenerSettings
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.ws.relay import RelayServerFactory, Route
from tests.support.transports import Connection

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The harness's one backend and the rule the listener matched, unless a test says otherwise.
BACKEND = BackendConfig("10.0.0.1", 8001)
RULE = RuleConfig(target_group="pool", host="public.test")


class _Endpoint:
    def __init__(self, backends: FakeBackends, backend: BackendConfig) -> None:
        self._backends = backends
        self._backend = backend

    def connect(self, factory) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._backends.pending.append((self._backend, factory, d))
        return d


class FakeBackends:
    """A backend connector: records each connect, which a test then accepts or refuses."""

    def __init__(self, clock) -> None:
        self._clock = clock
        #: Addresses connected to, in order.
        self.attempts: list[str] = []
        self.pending: list = []

    def __call__(self, backend: BackendConfig, group: TargetGroupConfig) -> _Endpoint:
        self.attempts.append(backend.address)
        return _Endpoint(self, backend)

    def accept(self) -> Connection:
        """The oldest pending connect succeeds: the backend's side of the new connection."""
        backend, factory, d = self.pending.pop(0)
        connection = Connection(
            self._clock,
            peer=IPv4Address("TCP", backend.host, backend.port),
            host=IPv4Address("TCP", "127.0.0.1", 40000 + len(self.attempts)),
        )
        protocol = factory.buildProtocol(connection.getPeer())
        connection.protocol = protocol
        protocol.makeConnection(connection)
        d.callback(protocol)
        return connection

    def refuse(self) -> None:
        """The oldest pending connect fails: connection refused."""
        _, _, d = self.pending.pop(0)
        d.errback(Failure(ConnectionRefusedError()))


def upgrade_head(
    target: bytes = b"/chat", host: bytes = b"public.test", extra: bytes = b""
) -> bytes:
    """A client's WebSocket upgrade request head."""
    return (
        b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def switching_protocols(request: bytes, extra: bytes = b"") -> bytes:
    """A backend's 101 answer to the handshake ``request`` (its key accepted)."""
    key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)\s*$", request).group(1)
    accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n"
    )


def frame(opcode: int, payload: bytes = b"", masked: bool = False) -> bytes:
    """One final WebSocket frame (payload under 126 bytes), masked with a zero key if asked."""
    head = bytes((0x80 | opcode, (0x80 if masked else 0) | len(payload)))
    return head + (b"\x00\x00\x00\x00" if masked else b"") + payload


class RelayHarness:
    """One listener's relay with backends in memory.  Call :meth:`close` in cleanup."""

    def __init__(
        self,
        backends: tuple[BackendConfig, ...] = (BACKEND,),
        rule: RuleConfig = RULE,
        group_options: Optional[dict] = None,
        **listener_options,
    ) -> None:
        self.clock = MemoryReactorClock()
        self._loop = txaio.config.loop
        # Autobahn's timers (handshake and close timeouts) run on txaio's loop.
        txaio.config.loop = self.clock
        listener_options.setdefault("rules", (rule,))
        listener = ListenerConfig(name="web", bind="tcp:0", **listener_options)
        config = TargetGroupConfig("pool", backends, **(group_options or {}))
        self.group = TargetGroup(config, self.clock)
        self.settings = ListenerSettings.from_config(listener, {"pool": self.group})
        self.backends = FakeBackends(self.clock)
        self.factory = RelayServerFactory(self.settings, self.clock, connector=self.backends)
        self.rule = rule

    def client(self, head: bytes, target: Optional[str] = None) -> Connection:
        """A client connection that sends ``head``, routed to the harness's rule."""
        if target is None:
            target = head.split(b" ", 2)[1].decode("latin-1")
        self.factory._route = Route(self.settings, self.rule, target)
        protocol = self.factory.buildProtocol(None)
        self.factory._route = None
        connection = Connection(
            self.clock,
            peer=IPv4Address("TCP", "192.0.2.7", 50000),
            host=IPv4Address("TCP", "10.9.9.9", 8080),
        )
        connection.protocol = protocol
        protocol.makeConnection(connection)
        connection.receive(head)
        return connection

    def close(self) -> None:
        """Cut every connection and run out every timer."""
        for session in list(self.factory.sessions):
            for hop in (session.front, session.backend):
                if hop is not None and hop.transport is not None:
                    hop.transport.abortConnection()
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(60)
        txaio.config.loop = self._loop


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, unmasked payload) of each complete frame in ``data`` (payloads under 64 KiB)."""
    found = []
    while len(data) >= 2:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        masked, at = data[1] & 0x80, 2
        if length == 126:
            length, at = int.from_bytes(data[2:4], "big"), 4
        key = data[at : at + 4] if masked else b""
        at += len(key)
        payload = data[at : at + length]
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        found.append((opcode, payload))
        data = data[at + length :]
    return found
