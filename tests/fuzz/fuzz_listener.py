"""Coverage-guided fuzzing (atheris) of a listener's request path, in memory.

Each input is everything one client connection sends, cut in two at a point the
fuzzer chooses: the request line and header parsing, the listener's limits, the
smuggling defences, the WebSocket handshake checks (Autobahn's and ours),
routing, fixed responses and the forwarder up to its backend connection, which
times out (a ``MemoryReactorClock``), and the proxy's own timeouts fire too.  Run::

    .venv/bin/pip install atheris
    mkdir -p fuzz-corpus
    PYTHONPATH=. .venv/bin/python tests/fuzz/fuzz_listener.py fuzz-corpus -max_total_time=300

(any libFuzzer option works; ``-jobs=2`` for two processes).  A crash prints the
input and writes it as ``crash-*``; replay it with ``fuzz_listener.py crash-...``.

What must hold for every input:

- nothing raises out of the channel, and nothing is logged as a failure
  (a traceback);
- what the proxy writes is empty or starts with an ``HTTP/1.1 NNN`` status line
  (``HTTP/1.0`` for an HTTP/1.0 request), NNN one a listener answers (``101``
  only for a WebSocket handshake).

``tests/unit/http/test_server_fuzz_corpus.py`` runs :func:`check` on a seed corpus (the hostile
HTTP catalogue and WebSocket handshakes), so the harness stays working.
"""

from __future__ import annotations

import sys
from typing import Optional

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, TCPTimedOutError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogBeginner, globalLogPublisher
from twisted.python.failure import Failure

from clbproxy.config import (
    BackendConfig,
    FixedResponseConfig,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
)
from clbproxy.listener.service import listener_service
from clbproxy.upstream.balancer import TargetGroup

#: Statuses a listener may answer with; anything else is a finding.
STATUSES = {101, 200, 301, 308, 400, 403, 404, 405, 408, 411, 413, 414, 426, 429, 431}
STATUSES |= {501, 502, 503, 504, 505}
#: The listener's limits (those of the hostile HTTP catalogue).
LIMITS = {"max_request_line": 1024, "max_header_size": 4096, "max_body_size": 1000}


class Finding(AssertionError):
    """An input broke an invariant."""


class Harness:
    """One in-memory listener; :meth:`check` plays one connection against it."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        listener = ListenerConfig(
            name="fuzz",
            bind="tcp:0:interface=127.0.0.1",
            rules=(
                RuleConfig(target_group="pool"),
                RuleConfig(
                    path="= /fixed", fixed_response=FixedResponseConfig(status=200, body="ok")
                ),
                RuleConfig(host="origin.test", target_group="pool", allowed_origins=("https://a",)),
            ),
            **LIMITS,
        )
        group = TargetGroupConfig(name="pool", backends=(BackendConfig("127.0.0.1", 9),))
        service = listener_service(
            listener, {"pool": TargetGroup(group, self.reactor)}, self.reactor
        )
        self.site = service.site
        self.failures: list[str] = []
        globalLogPublisher.addObserver(self._observe)

    def close(self) -> None:
        globalLogPublisher.removeObserver(self._observe)

    def _observe(self, event: dict) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.failures.append(failure.getTraceback())

    def check(self, data: bytes, split: Optional[int] = None) -> bytes:
        """Send ``data`` (in two writes, cut at ``split``) on one connection; the output.

        Raises :class:`Finding` when an invariant breaks.
        """
        del self.failures[:]
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = self.site.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        transport.protocol = channel  # Autobahn's WebSocketResource looks for it.
        channel.makeConnection(transport)
        cut = len(data) // 2 if split is None else max(0, min(split, len(data)))
        lost = False

        def lose_if_closing() -> bool:
            # A reactor ends a connection soon after loseConnection; StringTransport never does.
            nonlocal lost
            if transport.disconnecting and not lost:
                lost = True
                channel.connectionLost(Failure(ConnectionDone()))
            return lost

        for chunk in (data[:cut], data[cut:]):
            if chunk and not lose_if_closing():
                channel.dataReceived(chunk)
        # Backend connections time out (the memory reactor never does it), and
        # retries too; then the header and idle timeouts fire.
        for _ in range(10):
            lose_if_closing()
            self.reactor.advance(6)
            if not self.reactor.tcpClients:
                break
            pending, self.reactor.tcpClients[:] = list(self.reactor.tcpClients), []
            for _host, _port, factory, _timeout, _bind in pending:
                factory.clientConnectionFailed(None, Failure(TCPTimedOutError()))
        for seconds in (61, 76):
            lose_if_closing()
            self.reactor.advance(seconds)
        if not lost:
            lost = True
            channel.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(1)
        self.reactor.tcpClients.clear()
        output = transport.value()
        self._check_output(data, output)
        if self.failures:
            raise Finding(f"logged a failure for {data[:200]!r}:\n{self.failures[0]}")
        return output

    def _check_output(self, data: bytes, output: bytes) -> None:
        if not output:
            return
        line = output.split(b"\r\n", 1)[0]
        parts = line.split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
            raise Finding(f"not an HTTP status line: {line[:100]!r} for {data[:200]!r}")
        status = int(parts[1])
        if status not in STATUSES:
            raise Finding(f"unexpected status {status} for {data[:200]!r}")
        if status == 101 and b"upgrade" not in data.lower():
            raise Finding(f"101 without a WebSocket handshake: {data[:200]!r}")


def status_of(output: bytes) -> int:
    """The status of the first response in ``output`` (0 when there is none)."""
    parts = output.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def main(argv: list[str]) -> None:
    import atheris

    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    harness = Harness()

    def one_input(data: bytes) -> None:
        if not data:
            return
        harness.check(data[1:], split=data[0] * max(1, len(data)) // 256)

    atheris.instrument_all()  # clbproxy, Twisted and Autobahn: coverage guides the inputs.
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
