"""Microseconds per backend request: the lean client (upstream_client) vs Twisted's Agent.

One keep-alive connection to a backend on 127.0.0.1 (an asyncio server in a
child process answering every GET with 100 bytes), one request at a time:
send the head, receive the response, complete.  Reported per request: wall
time and this process's CPU time (what the proxy would spend; the backend's
CPU is in the other process).  The Agent path is what the forwarder used
before round 19: Twisted's ``Agent`` over a keep-alive ``HTTPConnectionPool``
(then wrapped as ``clbproxy.http.backend_client``, since removed), the body
read with a minimal protocol.  Run::

    python bench/upstream_client.py [requests]

On the 2-core development machine (CPython 3.11, other sessions running,
5000 requests, two rounds each): lean 60-68 us CPU / 138-145 us wall per
request, Agent 167-190 us CPU / 370-431 us wall: about 2.7x less CPU.  A
profile of the lean loop puts most of what is left in the kernel (the
loopback ``send``); the client alone, fed in memory (a fake transport, no
sockets), takes about 15 us a request.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from twisted.internet import defer, protocol, reactor
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.http.upstream_client import UpstreamPool
from clbproxy.net.tls_client import BackendConnector

BACKEND = r"""
import asyncio, sys
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
RESPONSE += b"x" * 100
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.t.write(RESPONSE * n)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

HEAD = (
    b"GET /bench HTTP/1.1\r\nHost: backend\r\nUser-Agent: bench\r\n"
    b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
)


class Sink:
    def __init__(self, done) -> None:
        self.done = done

    def connected(self, exchange) -> None:
        pass

    def interim(self, status, fields) -> None:
        pass

    def response_head(self, head) -> None:
        pass

    def response_data(self, data) -> None:
        pass

    def response_complete(self, trailers) -> None:
        self.done()

    def response_failed(self, status, reason, retryable) -> None:
        raise SystemExit(f"failed: {status} {reason}")

    def body_paused(self) -> None:
        pass

    def body_resumed(self) -> None:
        pass


def lean(group, backend, count: int) -> defer.Deferred:
    connector = BackendConnector(reactor)
    pool = UpstreamPool(reactor, group, lambda b: connector.endpoint(b, group))
    finished = defer.Deferred()
    left = [count]

    def one() -> None:
        if left[0] == 0:
            pool.close()
            finished.callback(None)
            return
        left[0] -= 1
        pool.send(backend, HEAD, sink, method=b"GET", body=False, response_timeout=30)

    sink = Sink(one)
    one()
    return finished


class _Drain(protocol.Protocol):
    def __init__(self, done) -> None:
        self.done = done

    def connectionLost(self, reason) -> None:
        self.done.callback(None)


@defer.inlineCallbacks
def agent(group, backend, count: int):
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = group.http_pool_max_idle
    client = Agent(reactor, pool=pool)
    url = b"http://127.0.0.1:%d/bench" % backend.port
    headers = Headers(
        {
            b"Host": [b"backend"],
            b"User-Agent": [b"bench"],
            b"X-Forwarded-For": [b"127.0.0.1"],
            b"X-Forwarded-Proto": [b"http"],
        }
    )
    for _ in range(count):
        response = yield client.request(b"GET", url, headers)
        done = defer.Deferred()
        response.deliverBody(_Drain(done))
        yield done
    yield pool.closeCachedConnections()


@defer.inlineCallbacks
def main(count: int):
    child = subprocess.Popen([sys.executable, "-c", BACKEND], stdout=subprocess.PIPE)
    try:
        port = int(child.stdout.readline())
        backend = BackendConfig("127.0.0.1", port)
        group = TargetGroupConfig("bench", (backend,))
        rows = []
        for name, run in (("lean", lean), ("agent", agent), ("lean", lean), ("agent", agent)):
            yield run(group, backend, 200)  # warm up
            wall, cpu = time.perf_counter(), time.process_time()
            yield run(group, backend, count)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append((name, wall / count * 1e6, cpu / count * 1e6))
        print(f"{count} sequential GETs over one keep-alive loopback connection, pid {os.getpid()}")
        for name, wall, cpu in rows:
            print(f"  {name:6s} {wall:7.1f} us wall  {cpu:7.1f} us CPU per request")
    finally:
        child.terminate()
        child.wait()
        reactor.stop()


if __name__ == "__main__":
    reactor.callWhenRunning(main, int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
    reactor.run()
