"""A quick A/B of the proxy CPU a WebSocket handshake (a GET, a 64 B message) costs.

    bench/ab_cpu.py NAME=CHECKOUT NAME=CHECKOUT ... [--mode handshake|http|messages] [--rounds 5]
                    [--seconds 4] [--python .venv/bin/python]

Each CHECKOUT (a git worktree) runs as its own clbproxy process under twistd, with
that checkout first on ``PYTHONPATH``, in front of one echo backend (``load.js
server``), with the bench's configuration (``bench/run.py``'s ``CLBPROXY_CONF``).
Every round runs the same load against each proxy in turn (the order rotates
from round to round): ``load.js handshake URL 50 SECONDS`` (connect, one 64 B
echo, close), ``wrk`` keep-alive GETs, or ``load.js closed URL 100 64 0 SECONDS``
(64 B messages, 100 sessions in a closed loop), and reads the proxy's CPU time
from the scheduler's nanosecond counters.  It prints handshakes (requests,
messages) per proxy CPU-second, per round and the median, and each row against
the first: by medians, and paired round by round (which leaves out the drift of
a shared machine between rounds).

A CHECKOUT may be several directories joined by ``:`` (a ``PYTHONPATH``), and
``--row-listener-extra NAME=TOML`` adds listener keys to one row: request IDs and series
on against off, on the same checkout (issue 24), is

    bench/ab_cpu.py on=WT on2=WT off=WT/bench/series_off:WT \\
        --row-listener-extra 'off=request_id_header = ""'

(``bench/series_off/sitecustomize.py`` takes the status page's series off the
access events; ``request_id_header = ""`` turns request IDs off.)  Rate limits that
no load reaches, on against off (issue 21), with an A/A pair for the noise band:

    bench/ab_cpu.py off=WT off2=WT on=WT --mode messages --rounds 9 \\
        --row-listener-extra 'on=websocket_message_rate = 1000000.0' \\
        --row-listener-extra 'on=websocket_byte_rate = "1GiB"'

(several ``--row-listener-extra`` for one row add up, one line each).

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


def node_load(pid: int, port: int, load: list[str], counted: str) -> tuple[int, float]:
    """Run ``load.js`` (``load`` its mode and arguments after the URL) against the proxy.

    The proxy's CPU time is read at the load's ``window-start`` and ``window-end``
    lines; ``counted`` names the field of its JSON result that is returned.
    """
    mode, *params = load
    argv = pinned(LOAD_CPU, [NODE, LOAD, mode, f"ws://127.0.0.1:{port}/", *params])
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
    return result[counted], cpu1 - cpu0


def handshakes(pid: int, port: int, seconds: float) -> tuple[int, float]:
    """Connect, one 64 B echo, close; 50 in parallel (run.py's ``handshakes``)."""
    return node_load(pid, port, ["handshake", "50", str(seconds)], "handshakes")


def messages(pid: int, port: int, seconds: float) -> tuple[int, float]:
    """64 B text messages, 100 sessions in a closed loop (run.py's ``small_messages``)."""
    return node_load(pid, port, ["closed", "100", "64", "0", str(seconds)], "msgs")


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
    argv += ["--rate", str(args.profile_rate)]
    argv += ["--duration", str(int(args.seconds)), "-o", str(out)]
    return subprocess.Popen(
        pinned(LOAD_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


#: ``--mode``: what one round measures, and what it counts.
MODES = {
    "handshake": (handshakes, "handshakes"),
    "http": (requests, "requests"),
    "messages": (messages, "64 B messages"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkouts", nargs="+", help="NAME=CHECKOUT")
    parser.add_argument("--mode", choices=tuple(MODES), default="handshake")
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
    parser.add_argument(
        "--profile-rate",
        type=int,
        default=100,
        help="py-spy's samples per second for --profile (a 4 s round at 100 gives ~400)",
    )
    args = parser.parse_args(argv)
    rows = [c.split("=", 1) for c in args.checkouts]
    row_extra: dict[str, str] = {}
    for entry in args.row_listener_extra:
        row, line = entry.split("=", 1)
        row_extra[row] = f"{row_extra.get(row, '')}{line}\n"
    measure, unit = MODES[args.mode]
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
    print(summary(results, unit))
    return 0


def summary(results: dict[str, list[float]], unit: str) -> str:
    """Each row's median, and against the first row: the medians and round by round.

    The paired figure (the median of each round's ratio to the first row in that
    round) leaves out the machine's drift from round to round, which on a shared
    machine is larger than the costs looked for; "lower in k of R" is how many
    rounds the row was below the first.
    """
    names = list(results)
    base = results[names[0]]
    rounds = len(base)
    first = statistics.median(base)
    lines = [f"\n{unit} per proxy CPU-s, median of {rounds} rounds:"]
    for row in names:
        values = results[row]
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median
        line = f"  {row:12s} {median:8.1f}  {median / first - 1:+6.1%}  spread {spread:.0%}"
        if row != names[0]:
            ratios = [v / b for v, b in zip(values, base)]
            lower = sum(r < 1 for r in ratios)
            line += (
                f"  paired {statistics.median(ratios) - 1:+6.1%}"
                f" (lower in {lower} of {rounds} rounds)"
            )
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
