"""The scale curve: what idle WebSocket sessions cost one clbproxy instance as they grow.

``bench/run.py --scenario scale`` (it takes several minutes; nothing else runs with it).
One clbproxy instance (``websocket_ping_interval = 30``, the defaults otherwise) in
front of the echo backend; one load generator process (``load.js hold``, on the load
CPU) opens idle sessions in steps and keeps them all open.  At each step:

- ``open_s``: how long opening the step's new sessions took (200 connects at a time);
- ``kib_marginal``: the proxy's RSS (process tree) added by the step, per new session,
  read after the CPU window (so buffers the pings touched are in it);
- ``idle_cpu_per_s``: the proxy's CPU seconds per second (the scheduler's nanosecond
  counters: clock ticks are too coarse here) over a window with no traffic but the
  proxy's pings (one full ping interval, so every session is pinged
  on both hops once), and ``idle_us_per_session``: the same less the process's CPU
  with no sessions, per session, in CPU microseconds per second;
- ``probe_p50_ms``/``probe_p99_ms``: a new session's 200 sequential 64 B echoes,
  after the window.

Steps: 1 k, 5 k and the largest the descriptor budget allows
(:func:`clbproxy.net.descriptors.connection_budget` of the soft ``RLIMIT_NOFILE``
run.py raised to the hard limit, per worker process, less room for the probe), then
the same with ``workers = 2`` (both workers on the proxy CPU).  50 k and 100 k run
only where the hard limit allows them, else the reason is printed and recorded.
Above one ephemeral port range of connections per destination, the proxy gets one
listener port and the target group one backend port (an echo backend process) per
range, and the client spreads its sessions over the listener ports: each
(source, destination) pair then needs no more than one range of ports.  (Several
source addresses 127.0.0.x, the other way, would not do with a Node client: it
cannot set ``IP_BIND_ADDRESS_NO_PORT``, so every bound source port would be taken
out of the range the proxy's own connections to the backends draw from.)

To run them, as root: raise the hard limit (``prlimit --nofile=240000:240000 --pid $$``
in the shell that starts run.py, or ``LimitNOFILE=240000`` in a systemd unit), check
that ``fs.nr_open`` and ``fs.file-max`` are above it, and widen
``net.ipv4.ip_local_port_range`` (e.g. ``1024 65000``: fewer listener and backend
ports).  Not tried on the machine of ``bench/RESULTS.md``, whose hard limit is 20,000.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import time
from pathlib import Path

from procs import LOAD, LOAD_CPU, NODE, cpu_seconds_fine, free_port, pinned, rss_bytes

from clbproxy.net.descriptors import DESCRIPTORS_PER_CONNECTION, connection_budget

PING_INTERVAL = 30
STEPS = (1000, 5000)
LARGE_STEPS = (50_000, 100_000)
PROBE_ECHOES = 200
#: Sessions left out of the budget: the probe, and a little slack.
SLACK = 50
#: Descriptors a load generator (node) needs besides its sessions.
NODE_OVERHEAD = 200
#: Targets (bench issue 19): spread of marginal RSS, idle CPU vs the largest step, p99.
RSS_SPREAD = 0.20
CPU_SPREAD = 0.20
P99_FACTOR = 2.0


def config(workers: int, ports: list[int], backends: list[int]) -> str:
    """One listener per port, all forwarding to one target group of ``backends``."""
    group = ", ".join(f'"127.0.0.1:{backend}"' for backend in backends)
    listeners = "".join(
        f"""[[listener]]
name = "scale{i}"
bind = "tcp:{port}:interface=127.0.0.1:backlog=4096"
websocket_ping_interval = {PING_INTERVAL}
  [[listener.rule]]
  path = "/"
  target_group = "echo"
"""
        for i, port in enumerate(ports)
    )
    return f"workers = {workers}\n{listeners}[target_group.echo]\nbackends = [{group}]\n"


def port_range() -> int:
    """How many ephemeral ports one (source, destination) pair can use."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(high) - int(low) + 1


def plan(workers: int) -> tuple[list[int], list[dict]]:
    """The steps this machine allows for ``workers`` processes, and the skipped ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = connection_budget(soft) * workers
    # The client and the backend hold one descriptor per session each, in one process.
    fits = min(budget, soft - NODE_OVERHEAD) - SLACK
    largest = fits // 100 * 100
    steps = [n for n in STEPS if n < largest] + [largest]
    skipped = []
    for n in LARGE_STEPS:
        if n <= largest:
            steps.append(n)
            continue
        per_worker = math.ceil(n / workers)
        need = per_worker * DESCRIPTORS_PER_CONNECTION * 8 // 7 + 64
        skipped.append(
            {
                "sessions": n,
                "workers": workers,
                "reason": f"{n} sessions need about {need} descriptors per clbproxy process "
                f"({per_worker} sessions x {DESCRIPTORS_PER_CONNECTION} + the budget's "
                f"reserve of an eighth) and {n + NODE_OVERHEAD} in the load generator; the "
                f"hard RLIMIT_NOFILE here is {hard} (soft {soft}, budget "
                f"{connection_budget(soft)} sessions per process), and raising it needs "
                "CAP_SYS_RESOURCE (prlimit/LimitNOFILE)",
            }
        )
    return sorted(set(steps)), skipped


class Client:
    """The load generator holding the sessions (``load.js hold``)."""

    def __init__(self, urls: str) -> None:
        self.proc = subprocess.Popen(
            pinned(LOAD_CPU, [NODE, LOAD, "hold", urls]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.expect("ready")

    def expect(self, word: str) -> list[str]:
        line = self.proc.stdout.readline().split()
        if not line or line[0] != word:
            self.proc.kill()
            raise RuntimeError(f"load.js hold: expected {word!r}: {self.proc.stderr.read()}")
        return line[1:]

    def open(self, n: int) -> tuple[float, int, int]:
        """Open ``n`` more sessions: (seconds it took, sessions alive, sessions lost)."""
        self.proc.stdin.write(f"open {n}\n")
        self.proc.stdin.flush()
        _, ms, alive, lost = self.expect("opened")
        return float(ms) / 1000, int(alive), int(lost)

    def count(self) -> tuple[int, int]:
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        alive, lost = self.expect("alive")
        return int(alive), int(lost)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def probe(url: str) -> dict:
    out = subprocess.run(
        pinned(LOAD_CPU, [NODE, LOAD, "probe", url, str(PROBE_ECHOES)]),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_per_second(pid: int, window: float) -> float:
    cpu0, t0 = cpu_seconds_fine(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds_fine(pid) - cpu0) / (time.monotonic() - t0)


def one_curve(bench, workers: int, steps: list[int], window: float) -> list[dict]:
    """Open ``steps`` sessions in turn through one clbproxy with ``workers`` processes."""
    ranges = math.ceil(max(steps) / (port_range() - 1000))
    backends = [bench.start_backend() for _ in range(ranges)]
    ports = [free_port() for _ in range(ranges)]
    target = bench.spawn_clbproxy(
        f"clbproxy-scale-{workers}", config(workers, ports, backends), ports[0], bench.args.python
    )
    urls = ",".join(f"ws://127.0.0.1:{port}/" for port in ports)
    time.sleep(2.0 if workers == 1 else 4.0)
    first = probe(target.url)  # the WebSocket path's code and buffers, before the baseline
    base_cpu = cpu_per_second(target.pid, window)
    rss = rss_bytes(target.pid)
    rows = [
        {
            "sessions": 0,
            "rss": rss,
            "idle_cpu_per_s": base_cpu,
            "probe_p50_ms": first["p50_ms"],
            "probe_p99_ms": first["p99_ms"],
        }
    ]
    client = Client(urls)
    try:
        held = 0
        for n in steps:
            open_s, alive, lost = client.open(n - held)
            added, held = n - held, n
            time.sleep(1.0)
            cpu = cpu_per_second(target.pid, window)
            alive, lost = client.count()
            after = rss_bytes(target.pid)
            echo = probe(target.url)
            row = {
                "sessions": n,
                "added": added,
                "open_s": open_s,
                "opened_per_s": added / open_s if open_s else None,
                "rss": after,
                "kib_marginal": (after - rss) / added / 1024,
                "kib_per_session": (after - rows[0]["rss"]) / n / 1024,
                "idle_cpu_per_s": cpu,
                "idle_us_per_session": (cpu - base_cpu) / n * 1e6,
                "probe_p50_ms": echo["p50_ms"],
                "probe_p99_ms": echo["p99_ms"],
                "alive": alive,
                "lost": lost,
            }
            rss = after
            rows.append(row)
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            print(f"  scale workers={workers} {shown}", flush=True)
    finally:
        client.close()
        bench.stop_all()
    return rows


def verdicts(rows: list[dict]) -> dict:
    """The issue's three targets for one curve (rows after the 0-session baseline)."""
    steps = [r for r in rows if r["sessions"]]
    marginal = [r["kib_marginal"] for r in steps]
    largest = steps[-1]
    cpu = [r["idle_us_per_session"] for r in steps]
    one_k = next((r for r in steps if r["sessions"] == STEPS[0]), steps[0])
    spread = max(marginal) / min(marginal) - 1 if min(marginal) > 0 else math.inf
    cpu_off = max(abs(c - cpu[-1]) for c in cpu) / cpu[-1] if cpu[-1] > 0 else math.inf
    p99 = largest["probe_p99_ms"] / one_k["probe_p99_ms"]
    return {
        "rss_spread": spread,
        "rss_pass": spread <= RSS_SPREAD,
        "cpu_off_largest": cpu_off,
        "cpu_pass": cpu_off <= CPU_SPREAD,
        "p99_factor": p99,
        "p99_pass": p99 <= P99_FACTOR,
        "sessions_lost": largest["lost"],
    }


def curve(bench) -> dict:
    """The whole scale scenario: one curve per worker count, with its verdicts."""
    window = 10.0 if bench.args.quick else float(PING_INTERVAL)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = {
        "ping_interval": PING_INTERVAL,
        "window_s": window,
        "rlimit_nofile": [soft, hard],
        "budget_per_process": connection_budget(soft),
        "port_range": port_range(),
        "curves": {},
        "skipped": [],
    }
    print("scale:", flush=True)
    for workers in (1, 2):
        steps, skipped = plan(workers)
        for skip in skipped:
            print(f"  scale workers={workers}: {skip['sessions']} skipped: {skip['reason']}")
        result["skipped"] += skipped
        t0 = time.monotonic()
        rows = one_curve(bench, workers, steps, window)
        result["curves"][str(workers)] = {
            "rows": rows,
            "verdicts": verdicts(rows),
            "minutes": (time.monotonic() - t0) / 60,
        }
    return result
