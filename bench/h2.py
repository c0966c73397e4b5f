"""The HTTP/2 scenario: small GETs with ``h2load -m 10``, HTTP/2 against HTTPS HTTP/1.1.

Issue 22's yardstick: clbproxy's HTTP/2 listener should serve at least 0.8x the
requests per proxy CPU-second of its own HTTPS HTTP/1.1 (the same process, the
client choosing ``http/1.1`` by ALPN with ``h2load --h1``), with nginx's HTTP/2
listener (``listen ... ssl http2``, nginx 1.22) beside them.  Every row GETs the
echo backend's 33-byte answer through a TLS listener with the bench's
self-signed certificate; h2load (Debian ``nghttp2-client``) runs on the load
CPU with :data:`CONNECTIONS` connections and :data:`STREAMS` requests in
flight on each (``-m``: concurrent streams on HTTP/2, pipelined requests on
HTTP/1.1).  Rows: ``nginx-h2``, ``nginx-h1`` (the same nginx, ``--h1``),
``clbproxy-h2``, ``clbproxy-h1`` (the same clbproxy, ``--h1``), and the same two
for each ``--also-python NAME=PYTHON`` (``clbproxy-NAME-h2``...).  The window is
h2load's whole run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

from procs import LOAD_CPU, Target, cpu_seconds, implementation, pinned, write_certificate

CONNECTIONS = 10
STREAMS = 10
#: The HTTP/2 to HTTPS HTTP/1.1 ratio (per proxy CPU-second) issue 22 asks for.
TARGET_RATIO = 0.8


def start_targets(bench, backend: int) -> list[Target]:
    """nginx and clbproxy, each one TLS listener that offers ``h2`` and ``http/1.1``."""
    if shutil.which("h2load") is None:
        raise RuntimeError("the h2 scenario needs h2load (Debian: apt-get install nghttp2-client)")
    if getattr(bench, "cert", None) is None:
        bench.cert, bench.key = write_certificate(bench.tmp)
    proxies = [bench.start_nginx(backend, "wss", "nginx-h2", http2=True)]
    variants = [("clbproxy", bench.args.python)]
    for other in bench.args.also_python:
        label, _, python = other.rpartition("=")
        variants.append((f"clbproxy-{label or implementation(python)}", python))
    for name, python in variants:
        proxies.append(
            bench.start_clbproxy(backend, "wss", f"{name}-h2", "", 1, python, "http2 = true\n")
        )
    for proxy in proxies:
        proxy.scheme, proxy.ws, proxy.http = "h2", False, False
    return proxies


def h2load(bench, target: Target, h1: bool) -> dict:
    """One h2load run against ``target``: rate, failures, and the proxy's CPU."""
    seconds = max(1, round(bench.args.seconds))
    argv = [
        "h2load",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-m{STREAMS}",
        f"-D{seconds}",
        *(["--h1"] if h1 else []),
        f"https://127.0.0.1:{target.port}/",
    ]
    cpu0 = cpu_seconds(target.pid)
    t0 = time.monotonic()
    out = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - t0
    cpu = cpu_seconds(target.pid) - cpu0
    done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
    failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    protocol = re.search(r"Application protocol: (\S+)", out)
    succeeded = int(done.group(4)) if done else 0
    return {
        "rate": succeeded / seconds,
        "seconds": seconds,
        "requests": succeeded,
        "failed": sum(int(n) for n in failed.groups()) if failed else 0,
        "protocol": protocol.group(1) if protocol else "?",
        "errors": not done or int(done.group(3)) != succeeded,
        "proxy_cpu_s": cpu,
        "proxy_cpu_share": cpu / wall,
    }


def h2(bench, targets: list[Target]) -> None:
    """One round: each TLS listener over HTTP/2, then over HTTP/1.1."""
    for t in targets:
        proxy = t.name[: -len("-h2-wss")] if t.name.endswith("-h2-wss") else t.name
        for h1 in (False, True):
            row = Target(f"{proxy}-{'h1' if h1 else 'h2'}", t.port, t.pid)
            bench.record("h2", row, h2load(bench, t, h1))
