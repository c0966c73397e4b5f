"""A quick A/B of the proxy CPU a WebSocket handshake (or a GET) costs, between checkouts.

    bench/ab_cpu.py NAME=CHECKOUT NAME=CHECKOUT ... [--mode handshake|http] [--rounds 5]
                    [--seconds 4] [--python .venv/bin/python]

Each CHECKOUT (a git worktree) runs as its own clbproxy process under twistd, with
that checkout first on ``PYTHONPATH``, in front of one echo backend (``load.js
server``), with the bench's configuration (``bench/run.py``'s ``CLBPROXY_CONF``).
Every round runs the same load against each proxy in turn (the order rotates
from round to round): ``load.js handshake URL 50 SECONDS`` (connect, one 64 B
echo, close) or ``wrk`` keep-alive GETs, and reads the proxy's CPU time from
the scheduler's nanosecond counters.  It prints handshakes (or requests) per
proxy CPU-second, per round and the median, and each row against the first.

A CHECKOUT may be several directories joined by ``:`` (a ``PYTHONPATH``), and
``--row-listener-extra NAME=TOML`` adds listener keys to one row: request IDs and series
on against off, on the same checkout (issue 24), is

    bench/ab_cpu.py on=WT on2=WT off=WT/bench/series_off:WT \\
        --row-listener-extra 'off=request_id_header = ""'

(``bench/series_off/sitecustomize.py`` takes the status page's series off the
access events; ``request_id_header = ""`` turns request IDs off.)

Far cheaper than ``bench/run.py`` (no nginx, HAProxy or calibration rows), and
meant for bisecting a commit range; ``bench/run.py --also-python`` is the run
to publish.  Take the bench lock around it (``flock /tmp/clbproxy-bench.lock``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import (
    LOAD,
    LOAD_CPU,
    NODE,
    PROXY_CPU,
    clbproxy_argv,
    cpu_seconds_fine,
    free_port,
    pinned,
    start,
    wait_port,
)

CONF = """\
workers = 1
[[listener]]
name = "bench"
protocol = "http"
bind = "tcp:{port}:interface=127.0.0.1:backlog=4096"
max_body_size = "2MiB"
{listener_extra}
  [[listener.rule]]
  path = "/"
  target_group = "echo"

[target_group.echo]
backends = ["127.0.0.1:{backend}"]
"""


def spawn_proxy(tmp: Path, name: str, checkout: str, python: str, backend: int, extra: str):
    port = free_port()
    conf = tmp / f"{name}.conf"
    conf.write_text(CONF.format(port=port, backend=backend, listener_extra=extra))
    argv = clbproxy_argv(python, conf, tmp / f"{name}-twistd.log")
    env = {**os.environ, "PYTHONPATH": checkout}
    proc = subprocess.Popen(
        pinned(PROXY_CPU, argv),
        stdout=open(tmp / f"{name}.out", "wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=tmp,
        env=env,
        start_new_session=True,
    )
    wait_port(port)
    return proc, port


def handshakes(pid: int, port: int, seconds: float) -> tuple[int, float]:
    argv = pinned(
        LOAD_CPU, [NODE, LOAD, "handshake", f"ws://127.0.0.1:{port}/", "50", str(seconds)]
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu0 = cpu1 = 0.0
    result = None
    for line in proc.stdout:
        line = line.strip()
        if line == "window-start":
            cpu0 = cpu_seconds_fine(pid)
        elif line == "window-end":
            cpu1 = cpu_seconds_fine(pid)
        elif line.startswith("{"):
            result = json.loads(line)
    proc.wait()
    if result is None:
        raise RuntimeError(proc.stderr.read())
    return result["handshakes"], cpu1 - cpu0


def requests(pid: int, port: int, seconds: float) -> tuple[int, float]:
    argv = pinned(
        LOAD_CPU, ["wrk", "-t1", "-c50", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}/"]
    )
    cpu0 = cpu_seconds_fine(pid)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu1 = cpu_seconds_fine(pid)
    return int(re.search(r"(\d+) requests in", out).group(1)), cpu1 - cpu0


def profile(pid: int, out: Path, args: argparse.Namespace) -> subprocess.Popen:
    """py-spy over one measured window (``bench/profsummary.py`` reads its output)."""
    spy = shutil.which("py-spy") or str(Path(args.python).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--nonblocking", "--format", "raw"]
    argv += ["--duration", str(int(args.seconds)), "-o", str(out)]
    return subprocess.Popen(
        pinned(LOAD_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkouts", nargs="+", help="NAME=CHECKOUT")
    parser.add_argument("--mode", choices=("handshake", "http"), default="handshake")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--listener-extra", default="", help="TOML lines for every listener")
    parser.add_argument(
        "--row-listener-extra",
        action="append",
        default=[],
        metavar="NAME=TOML",
        help="TOML lines for row NAME's listener only (e.g. rate limits on in one row)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record each row's first measured round with py-spy (raw) to DIR/NAME-MODE.txt",
    )
    args = parser.parse_args(argv)
    rows = [c.split("=", 1) for c in args.checkouts]
    row_extra = dict(e.split("=", 1) for e in args.row_listener_extra)
    measure = handshakes if args.mode == "handshake" else requests
    procs = []
    with tempfile.TemporaryDirectory(prefix="clbproxy-ab-") as name:
        tmp = Path(name)
        try:
            backend = free_port()
            procs.append(start(pinned(LOAD_CPU, [NODE, LOAD, "server", str(backend)]), tmp / "b"))
            wait_port(backend)
            proxies = []
            for row, checkout in rows:
                extra = f"{args.listener_extra}\n{row_extra.get(row, '')}"
                proc, port = spawn_proxy(tmp, row, checkout, args.python, backend, extra)
                procs.append(proc)
                proxies.append((row, proc.pid, port))
                measure(proc.pid, port, 1)  # warm-up
            results: dict[str, list[float]] = {row: [] for row, _ in rows}
            for r in range(args.rounds):
                order = proxies[r % len(proxies) :] + proxies[: r % len(proxies)]
                for row, pid, port in order:
                    spy = None
                    if args.profile and r == 0:
                        spy = profile(pid, Path(args.profile) / f"{row}-{args.mode}.txt", args)
                    count, cpu = measure(pid, port, args.seconds)
                    if spy is not None:
                        spy.wait(timeout=60)
                    results[row].append(count / cpu)
                    time.sleep(0.5)
                print(
                    f"round {r + 1}: "
                    + "  ".join(f"{row} {results[row][-1]:.1f}" for row, _ in rows),
                    flush=True,
                )
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)
    first = statistics.median(results[rows[0][0]])
    unit = "handshakes" if args.mode == "handshake" else "requests"
    print(f"\n{unit} per proxy CPU-s, median of {args.rounds} rounds:")
    for row, _ in rows:
        values = results[row]
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median
        print(f"  {row:12s} {median:8.1f}  {median / first - 1:+6.1%}  spread {spread:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
