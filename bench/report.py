"""Turn benchmark results (bench/out/LABEL.json) into the tables of bench/RESULTS.md.

.venv/bin/python bench/report.py before after      # prints Markdown, one section per label
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

OUT = Path(__file__).resolve().parent / "out"


def _fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value / 1000:.{digits}f} k"
    return f"{value:.{digits}f}"


def _ratio(value: Optional[float], base: Optional[float]) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def _per_cpu(amount: float, result: dict) -> Optional[float]:
    cpu = result.get("proxy_cpu_s")
    return amount / cpu if cpu else None


#: Rows whose clients and backend negotiate permessage-deflate through the proxy.
E2E = "-deflate-e2e"


def throughput_table(rows: dict, unit: str, amount) -> list[str]:
    """rate, rate per proxy CPU-s, ratios to nginx (per CPU-s) and to direct (rate)."""
    lines = [
        f"| | {unit}/s | proxy CPU share | {unit} per proxy CPU-s | per CPU-s vs nginx "
        f"| rate vs direct | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def baselines(suffix: str):
        direct, nginx = rows.get("direct" + suffix), rows.get("nginx" + suffix)
        nginx_eff = _per_cpu(amount(nginx) * nginx["seconds"], nginx) if nginx else None
        return (amount(direct) if direct else None), nginx_eff

    plain, end_to_end = baselines(""), baselines(E2E)
    for name, r in rows.items():
        # Rows with deflate end to end compare with nginx and direct doing the same.
        direct_rate, nginx_eff = end_to_end if name.endswith(E2E) else plain
        rate = amount(r)
        eff = _per_cpu(rate * r["seconds"], r) if "proxy_cpu_s" in r else None
        share = r.get("proxy_cpu_share")
        lines.append(
            f"| {name} | {_fmt(rate)} | {f'{share:.0%}' if share is not None else '-'} "
            f"| {_fmt(eff)} | {_ratio(eff, nginx_eff) if not name.startswith('direct') else '-'} "
            f"| {_ratio(rate, direct_rate)} | {_fmt(r.get('p50_ms'), 2)} "
            f"| {_fmt(r.get('p99_ms'), 2)} |"
        )
    return lines


def latency_table(rows: dict, rate: int) -> list[str]:
    lines = [
        f"Fixed rate {rate} msgs/s (half of the slowest proxy's closed-loop rate), 100 sessions.",
        "",
        "| | p50 ms | p99 ms | added p50 ms | added p99 ms | proxy CPU share |",
        "|---|---|---|---|---|---|",
    ]
    direct = rows.get("direct", {})
    for name, r in rows.items():
        add50 = r["p50_ms"] - direct["p50_ms"] if direct and name != "direct" else None
        add99 = r["p99_ms"] - direct["p99_ms"] if direct and name != "direct" else None
        share = r.get("proxy_cpu_share")
        lines.append(
            f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{'-' if add50 is None else f'{add50:+.2f}'} | "
            f"{'-' if add99 is None else f'{add99:+.2f}'} | "
            f"{f'{share:.0%}' if share is not None else '-'} |"
        )
    return lines


def idle_table(results: dict) -> list[str]:
    """KiB of proxy RSS per idle session, WS and (from the ``<name>-wss`` rows) WSS side by side.

    Each WSS figure is compared with nginx's WSS figure, as the issue asks.
    """
    scenarios = results["scenarios"]
    sizes = sorted(int(k[4:]) for k in scenarios if k.startswith("idle"))
    names: list[str] = []
    for n in sizes:
        names += [name for name in scenarios[f"idle{n}"] if name not in names]
    wss = any(name.endswith("-wss") for name in names)
    rows = [name for name in names if not (name.endswith("-wss") and name[:-4] in names)]

    def second_half(name: str, n: int) -> Optional[float]:
        r = scenarios[f"idle{n}"].get(name)
        return r.get("kib_marginal") if r else None

    def per_session(name: str, n: int) -> Optional[float]:
        # Freed memory is not always returned to the OS, so every size is measured from
        # the RSS before the first idle run (not the RSS left over by the previous one).
        runs = [scenarios[f"idle{m}"].get(name) for m in sizes]
        runs = [r for r in runs if r]
        r = scenarios[f"idle{n}"].get(name)
        if not r or not runs:
            return None
        baseline = min(run["rss_before"] for run in runs)
        return (r["rss_after"] - baseline) / n / 1024

    def cells(name: str, base: str) -> list[str]:
        values = [per_session(name, n) for n in sizes]
        halves = [second_half(name, n) for n in sizes]
        return (
            [_fmt(v) for v in values]
            + [_fmt(h) for h in halves]
            + [_ratio(values[-1], per_session(base, sizes[-1]))]
        )

    head = (
        [f"KiB/session at {n}" for n in sizes] + [f"2nd half of {n}" for n in sizes] + ["vs nginx"]
    )
    if wss:
        head += (
            [f"WSS at {n}" for n in sizes]
            + [f"WSS 2nd half of {n}" for n in sizes]
            + ["WSS vs nginx WSS"]
        )
    lines = [f"| | {' | '.join(head)} |", "|---|" + "---|" * len(head)]
    for name in rows:
        row = cells(name, "nginx")
        if wss:
            row += cells(f"{name}-wss", "nginx-wss")
        lines.append(f"| {name} | {' | '.join(row)} |")
    if not wss:
        lines += ["", "WSS: not measured in this run (`--no-wss`, or a run before the WSS rows)."]
    return lines


def http_table(rows: dict) -> list[str]:
    lines = [
        "| | requests/s | proxy CPU share | requests per proxy CPU-s | per CPU-s vs nginx |",
        "|---|---|---|---|---|",
    ]
    nginx = rows.get("nginx")
    nginx_eff = nginx["rate"] / nginx["proxy_cpu_share"] if nginx else None
    for name, r in rows.items():
        share = r.get("proxy_cpu_share")
        eff = r["rate"] / share if share else None
        lines.append(
            f"| {name} | {_fmt(r['rate'])} | {f'{share:.0%}' if share is not None else '-'} "
            f"| {_fmt(eff)} | {_ratio(eff, nginx_eff) if share else '-'} |"
        )
    return lines


_EVERY = ("msg64", "msg64k", "handshake")

#: (row, its framework baseline, the scenarios where the pair compares like with like).
BASELINES = (
    ("clbproxy", "calib-splice", _EVERY),
    ("clbproxy-tunnel", "calib-splice", _EVERY),
    ("clbproxy-deflate", "calib-autobahn-deflate", _EVERY),
    # Both do Autobahn's two handshakes; after them clbproxy leaves Autobahn.
    ("clbproxy", "calib-autobahn", ("handshake",)),
    ("calib-splice", "calib-splice-stock", _EVERY),
)


def baseline_table(scenarios: dict) -> list[str]:
    """clbproxy per proxy CPU-second as a ratio to the framework baselines of the same run.

    The ratio to nginx says where clbproxy stands; this one says how much of the
    distance is clbproxy's own work and how much the framework's (Twisted's
    reactor, Autobahn's handshakes and framing).  The baselines dispatch events
    as clbproxy does; the last row is what that dispatch gains a bare splice
    over Twisted's own.
    """
    units = (
        ("msg64", "64 B msgs", lambda r: r["msgs"]),
        ("msg64k", "64 KiB MB", lambda r: r["bytes"] / 1e6),
        ("handshake", "handshakes", lambda r: r["handshakes"]),
    )
    present = [(key, title, amount) for key, title, amount in units if key in scenarios]
    lines = []
    for row, base, comparable in BASELINES:
        cells = []
        for key, _, amount in present:
            if key not in comparable:
                cells.append("-")
                continue
            rows = scenarios[key]
            mine, theirs = rows.get(row), rows.get(base)
            if not mine or not theirs or not theirs.get("proxy_cpu_s"):
                cells.append("-")
                continue
            cells.append(_ratio(_per_cpu(amount(mine), mine), _per_cpu(amount(theirs), theirs)))
        if any(cell != "-" for cell in cells):
            lines.append(f"| {row} / {base} | {' | '.join(cells)} |")
    if not lines:
        return []
    head = " | ".join(title for _, title, _ in present)
    return [f"| per proxy CPU-s | {head} |", "|---|" + "---|" * len(present), *lines]


def section(label: str) -> str:
    results = json.loads((OUT / f"{label}.json").read_text())
    s = results["scenarios"]
    m = results["machine"]
    out = [
        f"## Run `{label}` ({m['date']})",
        "",
        f"{m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}; {m['nginx']}; "
        f"{m['haproxy'].split(' - ')[0]}; {m['wrk']}; node {m['node']}; "
        f"clbproxy on Python/Twisted/Autobahn {m['python_twisted_autobahn']}. "
        f"Load average before/after: {' '.join(m['loadavg_before'])} / "
        f"{' '.join(m.get('loadavg_after', []))}. "
        f"Window {results['settings']['seconds']} s per row.",
        "",
    ]
    parts = [
        (
            "msg64",
            "### (1) 100 sessions, 64 B text, closed loop (a message = one round trip)",
            lambda: throughput_table(s["msg64"], "msgs", lambda r: r["msgs"] / r["seconds"]),
        ),
        (
            "msg64k",
            "### (2) 16 sessions, 64 KiB binary, closed loop (MB echoed back)",
            lambda: throughput_table(s["msg64k"], "MB", lambda r: r["bytes"] / r["seconds"] / 1e6),
        ),
        (
            "half_load",
            "### (3) Added latency at half load",
            lambda: latency_table(s["half_load"], results["half_load_rate"]),
        ),
        (
            "handshake",
            "### (4) Connect + one echo + close, 50 in parallel",
            lambda: throughput_table(
                s["handshake"], "handshakes", lambda r: r["handshakes"] / r["seconds"]
            ),
        ),
        ("idle", "### (5) Idle sessions: proxy RSS per session", lambda: idle_table(results)),
        (
            "http",
            "### (6) HTTP small GETs, keep-alive (wrk, 50 connections)",
            lambda: http_table(s["http"]),
        ),
    ]
    for key, title, table in parts:
        present = any(k.startswith("idle") for k in s) if key == "idle" else key in s
        if present:
            out += [title, "", *table(), ""]
    against = baseline_table(s)
    if against:
        out += ["### Against the framework baselines (bench/calibration.py)", "", *against, ""]
    return "\n".join(out)


def main(labels: list[str]) -> int:
    print("\n".join(section(label) for label in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["latest"]))
