"""Drive today's listener channel and the new request parsers over the same bytes.

Both give an *outcome*: the requests accepted, in order, each as ``("request",
method, target, fields, body, trailers)`` (fields grouped by lower-case name,
values in order, which is what twisted.web's ``Headers`` keeps), then at most
one ``("refused", status, detail)``.  A connection goes on to the next
request when the previous one was persistent by twisted.web's rule, as
today's listener does.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clbproxy.http.parsers import request_parser
from clbproxy.http.server import HTTPLimits, ProxyChannel, ProxyRequest, ProxySite


def grouped(fields: Iterable[tuple[bytes, bytes]]) -> tuple:
    """Fields as twisted.web's ``Headers`` keeps them: lower-case name -> values in order."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        found.setdefault(name.lower(), []).append(value)
    return tuple(sorted((name, tuple(values)) for name, values in found.items()))


def persistent(version: bytes, fields: Sequence[tuple[bytes, bytes]]) -> bool:
    """twisted.web's ``checkPersistence``: HTTP/1.1, no ``close`` in the first Connection value."""
    values = [value for name, value in fields if name.lower() == b"connection"]
    tokens = [token.lower() for token in values[0].split(b" ")] if values else []
    return version in (b"1.1", b"HTTP/1.1") and b"close" not in tokens


class _Collector:
    def __init__(self) -> None:
        self.data: List[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)


class _Recorder(Resource):
    """Records each request once its body is in, answers it, and lets the next one come."""

    isLeaf = True

    def __init__(self, outcome: list) -> None:
        super().__init__()
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


class _RecordingChannel(ProxyChannel):
    def reject(self, status: int, detail: str) -> None:
        if not self._rejected:
            self.factory.outcome.append(("refused", status, detail))
        super().reject(status, detail)


class _RecordingRequest(ProxyRequest):
    def _handleStar(self) -> None:
        # twisted.web answers ``*`` itself; it was parsed like any other target.
        self.render(self.site.resource)


def listener_outcome(chunks: Sequence[bytes], limits: HTTPLimits) -> list:
    """What today's listener (``ProxyChannel``) makes of a connection sending ``chunks``."""
    outcome: list = []
    site = ProxySite(_Recorder(outcome), limits=limits, reactor=MemoryReactorClock())
    site.protocol = _RecordingChannel
    site.requestFactory = _RecordingRequest
    site.outcome = outcome
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    for chunk in chunks:
        if transport.disconnecting:
            break
        channel.dataReceived(chunk)
    return outcome


class ParserOutcome:
    """A request parser's handler that records the outcome the way :func:`listener_outcome` does.

    It enforces ``max_body_size`` on streamed bodies, as a listener connection will.
    """

    def __init__(self, limits: HTTPLimits, backend: Optional[str] = None) -> None:
        self.limits = limits
        self.outcome: list = []
        self.parser = request_parser(self, limits, backend=backend)
        self.head = None
        self.body: List[bytes] = []
        self.stopped = False

    def request_head(self, head) -> None:
        self.head = head
        self.body = []

    def body_data(self, data: bytes) -> None:
        self.body.append(data)
        limit = self.limits.max_body_size
        if limit and self.parser.body_received > limit:
            self.outcome.append(("refused", 413, f"the request body is larger than {limit} bytes"))
            self.stopped = True
            self.parser.pause()

    def message_complete(self, trailers) -> None:
        head = self.head
        self.outcome.append(
            (
                "request",
                head.method,
                head.target,
                grouped(head.headers),
                b"".join(self.body),
                list(trailers),
            )
        )
        if persistent(head.version, head.headers):
            self.parser.resume()
        else:
            self.stopped = True

    def parse_error(self, status: int, detail: str) -> None:
        self.outcome.append(("refused", status, detail))
        self.stopped = True


def parser_outcome(chunks: Sequence[bytes], limits: HTTPLimits, backend: str) -> list:
    """What a new request parser makes of a connection sending ``chunks``."""
    handler = ParserOutcome(limits, backend)
    for chunk in chunks:
        if handler.stopped:
            break
        handler.parser.feed(chunk)
    return handler.outcome


def cuts(data: bytes, how: str) -> list[bytes]:
    """``data`` whole, byte by byte, or in pieces of 7 bytes."""
    if how == "whole":
        return [data]
    size = 1 if how == "bytes" else 7
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]
