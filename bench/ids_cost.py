"""What request IDs and the status page's series cost per request, in memory (issue 24).

    PYTHONPATH=WT python bench/ids_cost.py [--mode http|handshake] [--measure time|opcodes|marks]
                                           [--rows on,off] [-n 2000] [--samples 15]

One process drives the real listener (:func:`clbproxy.listener.service.listener_service`
with :class:`~clbproxy.observability.service.Observability`'s access observers)
over in-memory transports (``tests.support.transports.Connection`` on a
``MemoryReactorClock``), with the bench's configuration (``bench/ab_cpu.py``'s),
once per row: ``on`` (as shipped), ``ids`` (request IDs only), ``series`` (the
series only) and ``off`` (``request_id_header = ""`` and the series off, as
``bench/series_off`` makes them); a name again with a digit (``on2``) is one more
proxy of that kind, for an A/A pair.  ``http`` is keep-alive GETs on one
connection, ``handshake`` a WebSocket session through the pass-through
(upgrade, 101, one 64 B message each way, close), as ``load.js handshake``.

``--measure time``: microseconds of CPU (``time.process_time``) per request,
rows alternating, minimum and median of the samples.  ``--measure opcodes``:
Python bytecodes run per request, by function, each row against ``off``
(deterministic: where the difference is).  ``--measure marks``: calls
``os.getppid()`` between segments of ``-n`` requests per row, for callgrind,
whose instruction counts are deterministic to 0.1 %::

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=/tmp/cg.out \\
        python bench/ids_cost.py --measure marks --rows on,off -n 1000
    grep -h '^summary:' /tmp/cg.out.*   # segment k+1 is the k-th row's, over n requests

Run from a checkout with ``tests/`` on the path (``PYTHONPATH=WT``).
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import statistics
import sys
import time

# This file's directory comes first on the path, and its h2.py (the HTTP/2 load)
# would stand for the h2 package clbproxy imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
sys.path.append(os.path.join(_HERE, "series_off"))  # metrics_only (not its sitecustomize)

import metrics_only  # noqa: E402  (bench/series_off)
import txaio  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import MemoryReactorClock  # noqa: E402

from clbproxy.config.loader import load_config_text  # noqa: E402
from clbproxy.listener.service import listener_service  # noqa: E402
from clbproxy.observability.service import Observability  # noqa: E402
from clbproxy.upstream.balancer import TargetGroup  # noqa: E402
from tests.support.relay import frame, switching_protocols  # noqa: E402
from tests.support.transports import Connection  # noqa: E402

CONF = """\
workers = 1
[[listener]]
name = "bench"
protocol = "http"
bind = "tcp:8080:interface=127.0.0.1:backlog=4096"
max_body_size = "2MiB"
{extra}
  [[listener.rule]]
  path = "/"
  target_group = "echo"

[target_group.echo]
backends = ["127.0.0.1:9000"]
"""

#: What wrk sends, and what load.js's echo backend (node's http) answers.
GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BODY = b"hello from the benchmark backend\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Date: Sat, 05 Dec 2026 16:00:00 GMT\r\nConnection: keep-alive\r\n"
    b"Keep-Alive: timeout=5\r\n\r\n%s" % (len(BODY), BODY)
)
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
PAYLOAD = b"x" * 64

#: Rows: (request IDs on, series on).
ROWS = {"on": (True, True), "ids": (True, False), "series": (False, True), "off": (False, False)}


def _masked(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload


class Proxy:
    """One listener and its observers, in memory, with IDs and series on or off."""

    def __init__(self, ids: bool, series: bool) -> None:
        extra = "" if ids else 'request_id_header = ""'
        config = load_config_text(CONF.format(extra=extra), "bench.conf")
        clock = self.clock = MemoryReactorClock()
        txaio.config.loop = clock  # Autobahn's timers
        groups = {group.name: TargetGroup(group, clock) for group in config.target_groups}
        if not series:
            metrics_only.patch()  # as bench/series_off does for a process
        try:
            observability = Observability(config, groups, clock)
        finally:
            metrics_only.unpatch()
        observability.startService()
        listener = config.listeners[0]
        self.service = listener_service(
            listener,
            groups,
            clock,
            endpoint_for=lambda bind: None,
            access=observability.access_events,
        )
        observability.watch_listener(listener, self.service)
        self._peers = 0

    def client(self) -> Connection:
        self._peers += 1
        peer = IPv4Address("TCP", "127.0.0.1", 10000 + self._peers % 50000)
        connection = Connection(self.clock, peer=peer, host=IPv4Address("TCP", "127.0.0.1", 8080))
        protocol = self.service.limiter.buildProtocol(peer)
        connection.protocol = protocol
        protocol.makeConnection(connection)
        return connection

    def backend(self) -> Connection:
        host, port, factory, *_ = self.clock.tcpClients.pop()
        peer = IPv4Address("TCP", host, port)
        connection = Connection(self.clock, peer=peer, host=IPv4Address("TCP", "127.0.0.1", 41000))
        protocol = factory.buildProtocol(peer)
        connection.protocol = protocol
        protocol.makeConnection(connection)
        return connection


class KeepAlive(Proxy):
    """GETs one after the other on one kept-alive client and backend connection."""

    def __init__(self, ids: bool, series: bool) -> None:
        super().__init__(ids, series)
        self._client = self.client()
        self._client.receive(GET)
        self._backend = self.backend()
        self._backend.receive(RESPONSE)
        assert self._client.value().startswith(b"HTTP/1.1 200 OK"), self._client.value()
        self.sample = (self._backend.value(), self._client.value())
        self._client.clear()
        self._backend.clear()

    def run(self, n: int) -> None:
        client, backend = self._client, self._backend
        for _ in range(n):
            client.protocol.dataReceived(GET)
            backend.protocol.dataReceived(RESPONSE)
            client.clear()
            backend.clear()


class Handshakes(Proxy):
    """WebSocket sessions: upgrade, 101, one 64 B message each way, close."""

    def __init__(self, ids: bool, series: bool) -> None:
        super().__init__(ids, series)
        self.run(1)

    def run(self, n: int) -> None:
        for _ in range(n):
            client = self.client()
            client.receive(UPGRADE)
            backend = self.backend()
            request = backend.value()
            backend.clear()
            backend.receive(switching_protocols(request))
            assert client.value().startswith(b"HTTP/1.1 101"), client.value()
            self.sample = (request, client.value())
            client.clear()
            client.receive(_masked(1, PAYLOAD))
            backend.receive(frame(1, PAYLOAD))
            client.receive(_masked(8, b"\x03\xe8"))
            backend.receive(frame(8, b"\x03\xe8"))
            backend.peer_closes()
            client.peer_closes()
            self.clock.advance(0)


def measure_time(proxies: dict, n: int, samples: int) -> None:
    results: dict[str, list[float]] = {name: [] for name in proxies}
    gc.collect()
    gc.disable()
    try:
        for i in range(samples):
            order = list(proxies.items())
            order = order[i % len(order) :] + order[: i % len(order)]
            for name, proxy in order:
                start = time.process_time()
                proxy.run(n)
                results[name].append((time.process_time() - start) / n * 1e6)
            gc.collect()
    finally:
        gc.enable()
    against = "off" if "off" in results else next(iter(results))
    base = min(results[against])
    for name, values in results.items():
        print(
            f"{name:8s} min {min(values):8.2f}  median {statistics.median(values):8.2f}"
            f"  us/request  (min against {against}: {min(values) - base:+.2f})"
        )


def measure_opcodes(proxies: dict, n: int) -> None:
    counts = {}
    for name, proxy in proxies.items():
        counted: collections.Counter = collections.Counter()

        def tracer(frame, event, arg, counted=counted):
            frame.f_trace_opcodes = True
            if event == "opcode":
                code = frame.f_code
                where = os.path.basename(code.co_filename)
                counted[(where, code.co_firstlineno, code.co_name)] += 1
            return tracer

        sys.settrace(tracer)
        try:
            proxy.run(n)
        finally:
            sys.settrace(None)
        counts[name] = counted
    off = counts.get("off", collections.Counter())
    for name, counted in counts.items():
        print(f"{name}: {sum(counted.values()) / n:.1f} bytecodes per request")
        if name == "off":
            continue
        rows = sorted(
            ((counted[k] - off[k]) / n, k) for k in set(counted) | set(off) if counted[k] != off[k]
        )
        for difference, (path, line, function) in sorted(rows, key=lambda r: -abs(r[0])):
            if abs(difference) >= 0.5:
                print(f"  {difference:+7.1f}  {path}:{line} {function}")


def measure_marks(proxies: dict, n: int) -> None:
    # As a running proxy does (clbproxy.util.gcfreeze): what exists before the
    # rows is frozen, so each row's closing collection walks only what the row
    # left, not the whole heap (a sixth of a GET's instructions otherwise).
    gc.collect()
    gc.freeze()
    gc.disable()
    for proxy in proxies.values():
        gc.collect()
        os.getppid()
        proxy.run(n)
    gc.collect()
    os.getppid()
    print("segments:", ",".join(proxies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("http", "handshake"), default="http")
    parser.add_argument("--measure", choices=("time", "opcodes", "marks"), default="time")
    parser.add_argument("--rows", default="on,ids,series,off")
    parser.add_argument("-n", type=int, default=2000, help="requests per sample or segment")
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    kind = KeepAlive if args.mode == "http" else Handshakes
    # A row named again with a digit (``on2``) is another proxy of that kind: an A/A pair.
    proxies = {name: kind(*ROWS[name.rstrip("0123456789")]) for name in args.rows.split(",")}
    for proxy in proxies.values():
        proxy.run(max(50, args.n // 10))  # warm: pools, caches, the ID buffer
    if args.measure == "time":
        measure_time(proxies, args.n, args.samples)
    elif args.measure == "opcodes":
        measure_opcodes(proxies, min(args.n, 200))
    else:
        measure_marks(proxies, args.n)


if __name__ == "__main__":
    main()
