"""CPU per GET or per WebSocket session of several checkouts, in memory, run alternately.

    bench/mem_ab.py NAME=CHECKOUT NAME=CHECKOUT ... [--mode http|handshake] [--rounds 3]
                    [-n 2000] [--cpu 0] [--python .venv/bin/python]

Each round runs ``bench/ids_cost.py --measure time --rows on`` (the real listener
over memory transports: no sockets, no load generator) once per checkout, in
turn, pinned to one CPU, and reads its minimum microseconds per request.  It
prints each checkout's minimum over the rounds and every round's figure, and
each row against the first.

Why this and not a count of bytecodes: a cut that swaps a Python loop for
chains of ``map``, ``zip`` or ``itemgetter`` runs fewer bytecodes and can take
more CPU (their iterators, tuples and allocations); two such cuts were taken out
again in round 25 (``bench/RESULTS.md``).  In memory the noise between runs is a
few percent, far below the socket benchmarks' on this machine, so a change of a
microsecond per GET shows here first; ``bench/ab_cpu.py`` and ``bench/run.py``
then measure it on sockets.  The checkouts share this file's ``ids_cost.py``, so
every row is measured the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def one_run(checkout: str, args: argparse.Namespace) -> float:
    """The minimum microseconds per request of one ``ids_cost.py`` run of ``checkout``."""
    argv = ["taskset", "-c", args.cpu, args.python, os.path.join(_HERE, "ids_cost.py")]
    argv += ["--mode", args.mode, "--measure", "time", "--rows", "on", "--samples", "15"]
    argv += ["-n", str(args.n)]
    env = {**os.environ, "PYTHONPATH": checkout}
    out = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, check=True)
    # "on       min    44.00  median    45.12  us/request  (...)"
    return float(out.stdout.strip().splitlines()[-1].split()[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkouts", nargs="+", help="NAME=CHECKOUT")
    parser.add_argument("--mode", choices=("http", "handshake"), default="http")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=2000, help="requests per sample")
    parser.add_argument("--cpu", default="0", help="the CPU every run is pinned to")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    rows = [spec.split("=", 1) for spec in args.checkouts]
    figures: dict[str, list[float]] = {name: [] for name, _ in rows}
    for number in range(1, args.rounds + 1):
        for name, checkout in rows:
            figures[name].append(one_run(checkout, args))
        line = "  ".join(f"{name} {figures[name][-1]:.2f}" for name, _ in rows)
        print(f"round {number}: {line}", flush=True)
    unit = "GET" if args.mode == "http" else "session"
    print(f"\nCPU us per {unit} in memory, minimum of {args.rounds} rounds:")
    first = min(figures[rows[0][0]])
    for name, _ in rows:
        best = min(figures[name])
        every = " ".join(f"{value:.2f}" for value in figures[name])
        print(f"  {name:12s} {best:8.2f}  {100 * (best / first - 1):+6.1f}%  ({every})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
