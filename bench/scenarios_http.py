"""The benchmark's HTTP scenarios: keep-alive GETs and streamed 1 MiB POST bodies (wrk).

Both run against every target that speaks HTTP (``Target.http``): direct (the echo
backend itself), nginx, HAProxy, clbproxy, ``clbproxy-log`` (clbproxy writing an
access log to a file, the only difference) and ``calib-http``, the bare Twisted +
httptools keep-alive proxy of ``bench/calibration.py``, the floor these scenarios'
targets are measured against.  wrk runs on the load CPU; its whole run (connection
set-up included) is the window the proxy's CPU seconds are taken over.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Optional

from procs import LOAD_CPU, cpu_seconds, pinned

#: The request body of the POST scenario.
POST_BYTES = 1024 * 1024
POST_LUA = f"""\
wrk.method = "POST"
wrk.body = string.rep("x", {POST_BYTES})
wrk.headers["Content-Type"] = "application/octet-stream"
"""
#: wrk's connections: 50 for small GETs (as every earlier run), 16 for 1 MiB bodies.
GET_CONNECTIONS = 50
POST_CONNECTIONS = 16

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _latency(out: str, percent: str) -> Optional[float]:
    """A percentile of wrk's ``--latency`` distribution, in ms."""
    found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else None


def wrk(bench, target, connections: int, extra: list[str]) -> dict:
    """One wrk run against ``target``: rate, errors, p50/p99, and the proxy's CPU."""
    url = f"http://127.0.0.1:{target.port}/"
    seconds = max(1, round(bench.args.seconds))
    cpu0 = cpu_seconds(target.pid) if target.pid else None
    t0 = time.monotonic()
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url]
    out = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - t0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    r = {
        "rate": rate,
        "seconds": wall,
        "errors": "Non-2xx" in out or "Socket errors" in out,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sockets.group(1) if sockets else "",
        "p50_ms": _latency(out, "50"),
        "p99_ms": _latency(out, "99"),
    }
    if cpu0 is not None:
        r["proxy_cpu_s"] = cpu_seconds(target.pid) - cpu0
        r["proxy_cpu_share"] = r["proxy_cpu_s"] / wall
    return r


def http(bench, targets: list) -> None:
    """Small GETs on keep-alive connections (the backend's 33-byte answer)."""
    for t in targets:
        bench.record("http", t, wrk(bench, t, GET_CONNECTIONS, []))


def post(bench, targets: list) -> None:
    """1 MiB request bodies streamed to a backend that reads and discards them.

    nginx runs with ``proxy_request_buffering off`` and ``client_max_body_size
    2m`` (run.py's configuration), clbproxy with ``max_body_size = "2MiB"``;
    HAProxy streams bodies unless told otherwise.  ``mb_s`` is request body
    megabytes (10^6 bytes) per second.
    """
    script = Path(bench.tmp) / "post.lua"
    script.write_text(POST_LUA)
    for t in targets:
        r = wrk(bench, t, POST_CONNECTIONS, ["-s", str(script)])
        r["mb_s"] = r["rate"] * POST_BYTES / 1e6
        bench.record("post", t, r)
