"""The scale curve: what idle WebSocket sessions cost one clbproxy instance as they grow.

``bench/run.py --scenario scale`` (it takes about a quarter of an hour; nothing else runs
with it).  One clbproxy instance (``websocket_ping_interval = 30``, the defaults
otherwise) in front of the echo backend; one load generator process (``load.js hold``,
on the load CPU) opens idle sessions in steps and keeps them all open.  Before the
first step, :data:`WARM_SESSIONS` sessions per worker are opened and kept open for the
whole curve (the warm-up, below); the 0-session row is measured with them.  At each
step:

- ``open_s``: how long opening the step's new sessions took (200 connects at a time);
- ``kib_marginal``: the proxy's RSS (process tree) added by the step, per new session,
  read after the CPU windows (so buffers the pings touched are in it);
- ``idle_cpu_per_s``: the proxy's CPU seconds per second (the scheduler's nanosecond
  counters: clock ticks are too coarse here), the median of :data:`WINDOWS` windows
  of one full ping interval each (so every session is pinged on both hops once per
  window), with no traffic but the proxy's pings; ``idle_cpu_windows``
  holds every window's figure.  ``idle_us_per_session``: the same less the baseline,
  per session, in CPU microseconds per second; the baseline is the median of the
  windows of the 0-session row and of the ``0 again`` row, measured the same way
  once the steps' sessions are closed at the end of the curve;
- ``probe_p50_ms``/``probe_p99_ms``: a probe session's :data:`PROBE_ECHOES` 64 B
  echoes, back to back in :data:`PROBE_BURSTS` bursts spread evenly over one more
  ping interval after the CPU windows (each burst's first echo is not counted: below).

How it measures, and why (changed after run ``round18-new``, whose 1 k steps failed the
spread targets; ``bench/RESULTS.md``, run ``scale-r20``, has the experiments):

- The warm-up.  The one-time growth of a process that takes its first WebSocket
  sessions used to land in the 1 k step: the memory of a batch of 200 handshakes in
  flight at once (the client opens 200 at a time), which later batches reuse, and
  with ``workers = 2`` a worker's first relay (the one probe made before the
  baseline reached one worker).  In a smoke run of this code, the first 200 sessions
  cost 8.3 KiB each (9.5 with two workers) and the next ones 4.1-5.9; after a warm-up
  of one batch, the first 200 cost 4.6 (4.5) like the rest.  So one batch of
  :data:`WARM_SESSIONS` sessions per worker is opened first (as the steps open
  theirs, so every worker takes some) and held to the end, so that no step reuses
  memory it freed.  The table keeps the cold numbers: the ``cold`` row is the
  process before the warm-up, and the warm-up row's KiB marginal is what the first
  sessions cost, one-time growth included.  The steps' session counts do not
  include the warm-up's.
- Settling.  The window used to start 1 s after the process started (the baseline)
  and 1 s after a step's sessions opened; a worker's start-up and the end of the
  opening burst kept it busy for several seconds more (in runs of the ``round18-new``
  code, 3-14 ms/s for 15 s after start, against 0.6 ms/s later), which went into the
  0-session row (subtracted from every step, so weighing most at 1 k) or into the
  1 k step's few pings.  Now :data:`SETTLE_START` and :data:`SETTLE_STEP` seconds
  pass first.
- The median of :data:`WINDOWS` windows.  At 1 k sessions a window holds about
  0.2 CPU-seconds of pings; on a shared machine consecutive windows of the same step
  differed by up to 30 %.  The median of three (each shown) is what the target reads.
- The baseline twice.  Every step subtracts the 0-session figure, and at 1 k
  sessions that figure is two thirds of the step's own: the ``scale-r21`` curves
  failed the CPU-spread target on its noise alone (a 1 k step read above the
  largest in one run and below it in the next).  So the 0-session windows are
  measured again after the last step (``0 again``: the steps' sessions closed, the
  warm-up's still open, one ping interval later), and the baseline is
  the median of both rows' windows, which also cancels a drift of the machine's
  speed over the curve.
- The probe in bursts.  200 back-to-back echoes after the window took 0.1 s at one
  point of the ping cycle: right after the newest step's ping burst (at the 1 k and
  5 k steps, a quiet time), but across other steps' bursts where a step took long to
  open; so steps were sampled at different phases.  In bursts spread over the
  windows, every step's probe meets the pings as often as a real message would.
  The first echo of a burst wakes the load generator and the proxy from sleep:
  on this virtual machine that alone takes a few ms (evenly paced single echoes had a
  p50 of 3-4 ms through an idle proxy, against 0.3 ms back to back), so it is sent
  but not counted.
- The probe after the CPU windows, and three times as long.  Up to run ``scale-r23``
  the probe (200 echoes in 10 bursts) ran through the CPU windows, on the reasoning
  that its CPU, in every row, cancels in ``idle_us_per_session``.  Its mean does;
  its noise does not.  Measured at 200 idle sessions: 0.1 ms/s of CPU between the
  ping bursts, 0.7 ms/s with them, and 1.8-2.0 ms/s more with the probe (each echo
  wakes the sleeping proxy twice: about 0.25 ms of CPU an echo, against 0.015 ms a
  message under load).  So the probe was most of the 0-session row's figure, and
  its spread (windows 14-81 % apart) decided the 1 k step's verdict, whose own
  signal is about 4 ms/s.  And the p99 of its 180 counted echoes was their
  second-largest: one slow echo decided the p99 target.  Now the CPU windows hold
  nothing but the pings, and the probe runs over one ping interval of its own
  after them (so it still meets every session's ping burst once), with
  :data:`PROBE_ECHOES` echoes: the p99 is the sixth-largest of 600.

Steps: 1 k, 5 k and the largest the descriptor budget allows
(:func:`clbproxy.net.descriptors.connection_budget` of the soft ``RLIMIT_NOFILE``
run.py raised to the hard limit, per worker process, less room for the probe and
the warm-up), then the same with ``workers = 2`` (both workers on the proxy CPU).
50 k and 100 k run only where the hard limit allows them, else the reason is printed
and recorded.  ``--quick``: one window of 10 s per step, 2 s of settling.  With
``--also-python NAME=PYTHON`` (a wrapper putting another checkout first), each worker
count's curve is run for that proxy too, in the same invocation (curve ``"1 clbproxy-NAME"``
beside ``"1"``), the order alternating between worker counts; ``--scale-workers 1``
runs only the given worker counts.

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
import statistics
import subprocess
import time
from pathlib import Path

from procs import LOAD, LOAD_CPU, NODE, cpu_seconds_fine, free_port, pinned, rss_bytes

from clbproxy.net.descriptors import DESCRIPTORS_PER_CONNECTION, connection_budget

PING_INTERVAL = 30
STEPS = (1000, 5000)
LARGE_STEPS = (50_000, 100_000)
PROBE_ECHOES = 600
#: The probe's echoes come in this many bursts, spread over one ping interval.
PROBE_BURSTS = 30
#: CPU windows (of one ping interval each) per step; the median is the step's figure.
WINDOWS = 3
#: Sessions per worker opened before the baseline and held through the curve (one batch).
WARM_SESSIONS = 200
#: Seconds between the process's start (and warm-up) and the baseline's windows.
SETTLE_START = 10.0
#: Seconds between the end of a step's opening and its windows.
SETTLE_STEP = 5.0
#: Sessions left out of the budget besides the warm-up's: the probe, and a little slack.
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
    fits = min(budget, soft - NODE_OVERHEAD) - SLACK - WARM_SESSIONS * workers
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


class Probe:
    """A probe session's echoes in bursts over ``seconds`` (``load.js probe``), in the background.

    With ``seconds`` 0, the echoes go back to back at once (the warm-up's).
    """

    def __init__(self, url: str, seconds: float) -> None:
        bursts = PROBE_BURSTS if seconds else 0
        gap_ms = seconds * 1000 / PROBE_BURSTS
        argv = [NODE, LOAD, "probe", url, str(PROBE_ECHOES), f"{gap_ms:.0f}", str(bursts)]
        self.proc = subprocess.Popen(
            pinned(LOAD_CPU, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.seconds = seconds

    def result(self) -> dict:
        out, err = self.proc.communicate(timeout=self.seconds + 120)
        if self.proc.returncode:
            raise RuntimeError(f"load.js probe: {err}")
        return json.loads(out.strip().splitlines()[-1])


def cpu_per_second(pid: int, window: float) -> float:
    cpu0, t0 = cpu_seconds_fine(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds_fine(pid) - cpu0) / (time.monotonic() - t0)


def measure(pid: int, url: str, window: float, windows: int) -> dict:
    """``windows`` CPU windows with nothing but the pings, then a paced probe over one more."""
    cpu = [cpu_per_second(pid, window) for _ in range(windows)]
    echo = Probe(url, window).result()
    return {
        "idle_cpu_per_s": statistics.median(cpu),
        "idle_cpu_windows": cpu,
        "probe_p50_ms": echo["p50_ms"],
        "probe_p99_ms": echo["p99_ms"],
    }


def settling(bench) -> tuple[float, float]:
    """Seconds of settling before the 0-session row and after each step opened."""
    return (2.0, 2.0) if bench.args.quick else (SETTLE_START, SETTLE_STEP)


def one_curve(
    bench, workers: int, steps: list[int], window: float, windows: int, python: str = ""
) -> list[dict]:
    """Open ``steps`` sessions in turn through one clbproxy with ``workers`` processes."""
    settle_start, settle_step = settling(bench)
    ranges = math.ceil(max(steps) / (port_range() - 1000))
    backends = [bench.start_backend() for _ in range(ranges)]
    ports = [free_port() for _ in range(ranges)]
    target = bench.spawn_clbproxy(
        f"clbproxy-scale-{workers}",
        config(workers, ports, backends),
        ports[0],
        python or bench.args.python,
    )
    urls = ",".join(f"ws://127.0.0.1:{port}/" for port in ports)
    time.sleep(2.0 if workers == 1 else 4.0)
    rows = [{"sessions": "cold", "rss": rss_bytes(target.pid)}]
    # The warm-up: sessions on every worker (opened at once), held to the end.
    warm = Client(urls)
    warm_s, _, _ = warm.open(WARM_SESSIONS * workers)
    Probe(target.url, 0).result()  # and the echo path
    time.sleep(settle_start)
    rss = rss_bytes(target.pid)
    rows.append(
        {
            "sessions": "warm-up",
            "added": WARM_SESSIONS * workers,
            "open_s": warm_s,
            "rss": rss,
            "kib_marginal": (rss - rows[0]["rss"]) / (WARM_SESSIONS * workers) / 1024,
        }
    )
    base = {"sessions": 0, **measure(target.pid, target.url, window, windows)}
    base["rss"] = rss = rss_bytes(target.pid)
    rows.append(base)
    client = Client(urls)
    try:
        held = 0
        for n in steps:
            open_s, alive, lost = client.open(n - held)
            added, held = n - held, n
            time.sleep(settle_step)
            measured = measure(target.pid, target.url, window, windows)
            alive, lost = client.count()
            after = rss_bytes(target.pid)
            cpu = measured["idle_cpu_per_s"]
            row = {
                "sessions": n,
                "added": added,
                "open_s": open_s,
                "opened_per_s": added / open_s if open_s else None,
                "rss": after,
                "kib_marginal": (after - rss) / added / 1024,
                "kib_per_session": (after - base["rss"]) / n / 1024,
                **measured,
                "idle_us_per_session": (cpu - base["idle_cpu_per_s"]) / n * 1e6,
                "alive": alive,
                "lost": lost,
            }
            rss = after
            rows.append(row)
            shown = {
                k: [round(x, 4) for x in v]
                if isinstance(v, list)
                else round(v, 3)
                if isinstance(v, float)
                else v
                for k, v in row.items()
            }
            print(f"  scale workers={workers} {shown}", flush=True)
        # The 0-session row again, the steps' sessions closed (the warm-up's held):
        # every step subtracts the baseline, so it is the median of both rows' windows.
        client.close()
        time.sleep(max(settle_start, window))  # the closes' work, and one ping cycle, done
        again = {"sessions": "0 again", **measure(target.pid, target.url, window, windows)}
        again["rss"] = rss_bytes(target.pid)
        rows.append(again)
        baseline = statistics.median(base["idle_cpu_windows"] + again["idle_cpu_windows"])
        for row in rows:
            if isinstance(row["sessions"], int) and row["sessions"]:
                row["idle_us_per_session"] = (
                    (row["idle_cpu_per_s"] - baseline) / row["sessions"] * 1e6
                )
        base["baseline_cpu_per_s"] = baseline
        print(f"  scale workers={workers} 0 again: {again['idle_cpu_windows']}", flush=True)
    finally:
        client.close()
        warm.close()
        bench.stop_all()
    return rows


def verdicts(rows: list[dict]) -> dict:
    """The issue's three targets for one curve (rows after the 0-session baseline)."""
    steps = [r for r in rows if isinstance(r["sessions"], int) and r["sessions"]]
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
    windows = 1 if bench.args.quick else WINDOWS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = {
        "ping_interval": PING_INTERVAL,
        "window_s": window,
        "windows": windows,
        "warm_sessions_per_worker": WARM_SESSIONS,
        "settle_s": list(settling(bench)),
        "rlimit_nofile": [soft, hard],
        "budget_per_process": connection_budget(soft),
        "port_range": port_range(),
        "curves": {},
        "skipped": [],
    }
    print("scale:", flush=True)
    proxies = [("clbproxy", bench.args.python)]
    for other in bench.args.also_python:
        label, _, python = other.rpartition("=")
        proxies.append((f"clbproxy-{label or 'other'}", python))
    for workers in getattr(bench.args, "scale_workers", (1, 2)):
        steps, skipped = plan(workers)
        for skip in skipped:
            print(f"  scale workers={workers}: {skip['sessions']} skipped: {skip['reason']}")
        result["skipped"] += skipped
        # With --also-python, each worker count's curves come in turn, in the opposite
        # order for the next count, so that no proxy always runs first.
        for row, python in proxies if workers % 2 else proxies[::-1]:
            t0 = time.monotonic()
            print(f"  scale workers={workers}: {row}", flush=True)
            rows = one_curve(bench, workers, steps, window, windows, python)
            key = str(workers) if row == "clbproxy" else f"{workers} {row}"
            result["curves"][key] = {
                "row": row,
                "rows": rows,
                "verdicts": verdicts(rows),
                "minutes": (time.monotonic() - t0) / 60,
            }
    return result
