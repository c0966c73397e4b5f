"""A whole listener in memory: raw request bytes in, backend and client bytes out.

:class:`ListenerHarness` builds a listener's service with
:func:`clbproxy.listener.service.listener_service` on a
:class:`~twisted.internet.testing.MemoryReactorClock`; client connections are
made through the listener's own connection limiter, and backend connections
are the reactor's recorded ``connectTCP`` calls, accepted on demand.  No
socket is opened and no twisted.web object is touched by the tests.
"""

from __future__ import annotations

from typing import Mapping

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from clbproxy.config import ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.listener.service import listener_service
from clbproxy.upstream.balancer import TargetGroup
from tests.support.transports import Connection


class _NoEndpoint:
    """The listener is never started: connections are made by :meth:`ListenerHarness.client`."""

    def listen(self, factory):
        raise AssertionError("the harness does not listen")


class ListenerHarness:
    """One listener on groups built by the test.  Call :meth:`close` in cleanup."""

    def __init__(self, listener: ListenerConfig, groups: Mapping[str, TargetGroup], clock=None):
        self.clock = clock if clock is not None else MemoryReactorClock()
        self._loop = txaio.config.loop
        # Autobahn's timers (handshake and close timeouts) run on txaio's loop.
        txaio.config.loop = self.clock
        self.service = listener_service(
            listener, groups, self.clock, endpoint_for=lambda bind: _NoEndpoint()
        )
        self._connections: list[Connection] = []
        self._peers = 0

    def client(self, data: bytes = b"", ip: str = "192.0.2.7") -> Connection:
        """A client connection to the listener that sends ``data``."""
        self._peers += 1
        peer = IPv4Address("TCP", ip, 50000 + self._peers)
        connection = Connection(self.clock, peer=peer, host=IPv4Address("TCP", "10.9.9.9", 8080))
        protocol = self.service.limiter.buildProtocol(peer)
        connection.protocol = protocol
        protocol.makeConnection(connection)
        self._connections.append(connection)
        if data:
            connection.receive(data)
        return connection

    def backend_attempts(self) -> list[tuple[str, int]]:
        """Where the proxy connected (or tries to connect), in order."""
        return [(host, port) for host, port, *_ in self.clock.tcpClients]

    def accept(self, index: int = -1) -> Connection:
        """Complete the proxy's connect number ``index``: the backend's side of it."""
        host, port, factory, *_ = self.clock.tcpClients[index]
        peer = IPv4Address("TCP", host, port)
        connection = Connection(self.clock, peer=peer, host=IPv4Address("TCP", "10.9.9.9", 41000))
        protocol = factory.buildProtocol(peer)
        connection.protocol = protocol
        protocol.makeConnection(connection)
        self._connections.append(connection)
        return connection

    def refuse(self, index: int = -1) -> None:
        """The proxy's connect number ``index`` is refused."""
        connector = self.clock.connectors[index]
        _, _, factory, *_ = self.clock.tcpClients[index]
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))

    def close(self) -> None:
        """Cut every connection, close backend pools and run out every timer."""
        for connection in self._connections:
            connection.abortConnection()
        self.service.forwarder.close()
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(60)
        txaio.config.loop = self._loop


def forwarding_listener(test, backends, **group_options) -> ListenerHarness:
    """A listener ``web`` whose one rule sends everything to the group ``pool`` of ``backends``.

    ``group_options`` go to the group's :class:`~clbproxy.config.TargetGroupConfig`;
    the harness is closed when ``test`` ends.
    """
    clock = MemoryReactorClock()
    group = TargetGroup(TargetGroupConfig("pool", tuple(backends), **group_options), clock)
    listener = ListenerConfig(name="web", bind="tcp:0", rules=(RuleConfig(target_group="pool"),))
    harness = ListenerHarness(listener, {"pool": group}, clock)
    test.addCleanup(harness.close)
    return harness
