"""Drive a listener connection over given bytes and record what it makes of them.

:func:`connection_outcome` runs a
:class:`~clbproxy.listener.connection.ListenerConnection` on a chosen parser
back end (over a ``StringTransport``) and gives its *outcome*: the requests
accepted, in order, each as ``("request", method, target, fields, body,
trailers)`` (fields grouped by lower-case name, values in order, which is what
twisted.web's ``Headers`` keeps), then at most one ``("refused", status,
detail)``.  Each request is answered once its body is in, so the connection
goes on to the next one when the previous one was persistent.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.server import NOT_DONE_YET

from clbproxy.config import ListenerConfig
from clbproxy.http.server import HTTPLimits
from clbproxy.listener.connection import ListenerConnection, ListenerSite


def grouped(fields: Iterable[tuple[bytes, bytes]]) -> tuple:
    """Fields as twisted.web's ``Headers`` keeps them: lower-case name -> values in order."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        found.setdefault(name.lower(), []).append(value)
    return tuple(sorted((name, tuple(values)) for name, values in found.items()))


class _Collector:
    def __init__(self) -> None:
        self.data: List[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)


class _Recorder:
    """A root resource: records each request once its body is in, answers it."""

    def __init__(self, outcome: list) -> None:
        self.outcome = outcome

    def render(self, request):
        body = request.body
        collector = _Collector()

        def done(_=None):
            fields = [
                (name, value)
                for name, values in request.requestHeaders.getAllRawHeaders()
                for value in values
            ]
            trailers = list(body.trailers) if body is not None else []
            self.outcome.append(
                (
                    "request",
                    request.method,
                    request.uri,
                    grouped(fields),
                    b"".join(collector.data),
                    trailers,
                )
            )
            request.write(b"ok")
            request.finish()

        if body is None:
            done()
        else:
            body.startProducing(collector).addCallbacks(done, lambda failure: None)
        return NOT_DONE_YET


class _RecordingConnection(ListenerConnection):
    def reject(self, status: int, detail: str) -> None:
        if not self._rejected:
            self.factory.outcome.append(("refused", status, detail))
        super().reject(status, detail)

    def _answer_star(self, request) -> None:
        # The connection answers ``*`` itself; it was parsed like any other target.
        self.factory.resource.render(request)


def connection_outcome(chunks: Sequence[bytes], limits: HTTPLimits, backend: str) -> list:
    """What a listener connection parsing with ``backend`` makes of a client sending ``chunks``."""
    outcome: list = []
    listener = ListenerConfig(
        name="parity",
        bind="tcp:0",
        rules=(),
        max_request_line=limits.max_request_line,
        max_header_size=limits.max_header_size,
        max_body_size=limits.max_body_size,
    )
    site = ListenerSite(_Recorder(outcome), listener, MemoryReactorClock(), backend=backend)
    site.protocol = _RecordingConnection
    site.outcome = outcome
    connection = site.buildProtocol(None)
    transport = StringTransport()
    connection.makeConnection(transport)
    for chunk in chunks:
        if transport.disconnecting:
            break
        connection.dataReceived(chunk)
    return outcome


def cuts(data: bytes, how: str) -> list[bytes]:
    """``data`` whole, byte by byte, or in pieces of 7 bytes."""
    if how == "whole":
        return [data]
    size = 1 if how == "bytes" else 7
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]
