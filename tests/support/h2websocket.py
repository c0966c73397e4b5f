"""WebSocket over HTTP/2 in memory: an ``h2`` client, a whole listener, backends on demand.

:class:`H2WebSocketHarness` puts an
:class:`~clbproxy.http2.connection.H2ServerConnection` in front of a
:class:`~tests.support.listener.ListenerHarness`'s resource, so an extended
CONNECT goes through the listener's rules, admission and relay exactly as on a
TLS connection that chose ``h2``; tests speak bytes to both ends.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.testing import MemoryReactorClock

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.http2.connection import H2Limits, H2ServerConnection
from clbproxy.upstream.balancer import TargetGroup
from tests.support.h2client import H2Client
from tests.support.listener import ListenerHarness
from tests.support.relay import switching_protocols

BACKEND = BackendConfig("10.0.0.1", 8001)
RULES = (RuleConfig(target_group="pool", host="a.example.com"),)


def connect_fields(
    path: bytes = b"/chat", protocol: bytes = b"websocket", authority: bytes = b"a.example.com"
) -> list[tuple[bytes, bytes]]:
    """An extended CONNECT's pseudo-headers (RFC 8441 4)."""
    return [
        (b":method", b"CONNECT"),
        (b":protocol", protocol),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", path),
    ]


class H2WebSocketHarness:
    """One listener, one client HTTP/2 connection to it.  Call :meth:`close` in cleanup."""

    def __init__(
        self,
        connect_protocol: bool = True,
        rules=RULES,
        group_options: Optional[dict] = None,
        limits: Optional[H2Limits] = None,
        checked: bool = True,
        read: bool = True,
        **listener_options,
    ) -> None:
        self.clock = MemoryReactorClock()
        listener_options.setdefault("websocket_ping_interval", 0)
        config = ListenerConfig(name="web", bind="tcp:0", rules=rules, **listener_options)
        group_config = TargetGroupConfig("pool", (BACKEND,), **(group_options or {}))
        group = TargetGroup(group_config, self.clock)
        self.listener = ListenerHarness(config, {"pool": group}, self.clock)
        self.server = H2ServerConnection(
            self.listener.service.site.resource,
            limits or H2Limits(connect_protocol=connect_protocol),
            self.clock,
        )
        self.client = H2Client(self.server, self.clock, checked=checked, read=read)

    def open(self, path: bytes = b"/chat", headers=(), protocol: bytes = b"websocket") -> int:
        """Send an extended CONNECT; its stream ID."""
        h2 = self.client.h2
        stream_id = h2.get_next_available_stream_id()
        h2.send_headers(
            stream_id,
            [*connect_fields(path, protocol), (b"sec-websocket-version", b"13"), *headers],
        )
        self.client.pump()
        return stream_id

    def backend(self, index: int = -1):
        """Accept the proxy's backend connection number ``index``: its side, the upgrade read."""
        connection = self.listener.accept(index)
        self.pump()
        return connection

    def accept(self, backend, extra: bytes = b"") -> bytes:
        """The backend answers the upgrade it got with a valid 101; the upgrade's head."""
        head = backend.take()
        backend.receive(switching_protocols(head, extra))
        self.pump()
        return head

    def open_session(self, path: bytes = b"/chat", headers=()):
        """A WebSocket opened end to end: ``(stream ID, the backend's connection, its head)``."""
        stream_id = self.open(path, headers)
        backend = self.backend()
        head = self.accept(backend)
        return stream_id, backend, head

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """WebSocket bytes from the client on its stream."""
        h2 = self.client.h2
        size = h2.max_outbound_frame_size
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for index, chunk in enumerate(chunks):
            h2.send_data(stream_id, chunk, end_stream=end and index == len(chunks) - 1)
        self.pump()

    def pump(self) -> None:
        """Run what is due now and deliver what each side wrote."""
        for _ in range(10):
            self.clock.advance(0)
            self.client.pump()

    def received(self, stream_id: int) -> bytes:
        """Everything the client got on the stream so far, then forgotten."""
        answer = self.client.answer(stream_id)
        data, answer.body = answer.body, b""
        return data

    def close(self) -> None:
        self.listener.close()
