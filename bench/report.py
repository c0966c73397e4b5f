"""Turn benchmark results (bench/out/LABEL.json) into the tables of bench/RESULTS.md.

.venv/bin/python bench/report.py before after      # prints Markdown, one section per label
.venv/bin/python bench/report.py --png docs/_static/bench round18-new round17
    # writes ratios.png and scale.png (bench/charts.py, needs matplotlib: the bench extra);
    # each scenario is taken from the first label that has it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import charts

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


def _spread(r: dict) -> str:
    """How far a row's rounds were apart: (max - min) / median of their figure of merit."""
    rounds = sorted(r.get("rounds") or [])
    if len(rounds) < 2 or not rounds[len(rounds) // 2]:
        return "-"
    return f"{(rounds[-1] - rounds[0]) / rounds[(len(rounds) - 1) // 2]:.0%}"


def _eff(r: Optional[dict], amount=lambda r: r["rate"]) -> Optional[float]:
    """Amount per proxy CPU-second of a wrk row (wrk's whole run is the window)."""
    share = r.get("proxy_cpu_share") if r else None
    return amount(r) / share if share else None


def http_table(rows: dict) -> list[str]:
    lines = [
        "| | requests/s | proxy CPU share | requests per proxy CPU-s | per CPU-s vs nginx "
        "| per CPU-s vs calib-http | p99 ms | rounds' spread |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nginx_eff, floor = _eff(rows.get("nginx")), _eff(rows.get("calib-http"))
    for name, r in rows.items():
        share = r.get("proxy_cpu_share")
        eff = _eff(r)
        lines.append(
            f"| {name} | {_fmt(r['rate'])} | {f'{share:.0%}' if share is not None else '-'} "
            f"| {_fmt(eff)} | {_ratio(eff, nginx_eff)} | {_ratio(eff, floor)} "
            f"| {_fmt(r.get('p99_ms'), 2)} | {_spread(r)} |"
        )
    return lines


def _mb(r: dict) -> float:
    return r["mb_s"]


def post_table(rows: dict) -> list[str]:
    lines = [
        "| | MB/s | requests/s | proxy CPU share | MB per proxy CPU-s | per CPU-s vs nginx "
        "| p99 ms | rounds' spread |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nginx_eff = _eff(rows.get("nginx"), _mb)
    for name, r in rows.items():
        share = r.get("proxy_cpu_share")
        eff = _eff(r, _mb)
        lines.append(
            f"| {name} | {_fmt(r['mb_s'])} | {_fmt(r['rate'])} "
            f"| {f'{share:.0%}' if share is not None else '-'} | {_fmt(eff)} "
            f"| {_ratio(eff, nginx_eff)} | {_fmt(r.get('p99_ms'), 2)} | {_spread(r)} |"
        )
    return lines


#: The WSS handshake scenario's cells (bench/wss.py) and the share a resumed cell needs.
WSS_CELLS = ("rsa-full", "rsa-resumed", "ecdsa-full", "ecdsa-resumed")
RESUMED_FLOOR = 0.95


def _handshakes_eff(r: Optional[dict]) -> Optional[float]:
    return _per_cpu(r["handshakes"], r) if r else None


def _resumed_failure(r: dict) -> Optional[str]:
    """Why a resumed cell did not measure resumption (None: it did)."""
    share = r.get("reused_share_min", r.get("reused_share", 0.0))
    return None if share >= RESUMED_FLOOR else f"FAILED: {share:.0%} resumed"


def wss_table(scenarios: dict) -> list[str]:
    """Handshakes per proxy CPU-s per cell, each proxy's ratio to nginx beside its ws:// one."""
    rows, plain = scenarios["wss_handshake"], scenarios.get("handshake", {})
    proxies = []
    for name in rows:
        proxy = name.rsplit("-", 2)[0]
        if proxy not in proxies:
            proxies.append(proxy)
    head = ["ws:// vs nginx"] + [f"{cell} per CPU-s | vs nginx" for cell in WSS_CELLS]
    lines = [f"| | {' | '.join(head)} |", "|---|" + "---|" * (1 + 2 * len(WSS_CELLS))]
    plain_nginx = _handshakes_eff(plain.get("nginx"))
    for proxy in proxies:
        cells = [_ratio(_handshakes_eff(plain.get(proxy)), plain_nginx)]
        for cell in WSS_CELLS:
            r, base = rows.get(f"{proxy}-{cell}"), rows.get(f"nginx-{cell}")
            if r is None:
                cells += ["-", "-"]
                continue
            failure = _resumed_failure(r) if cell.endswith("resumed") else None
            eff = _handshakes_eff(r)
            cells += [failure or _fmt(eff), _ratio(eff, _handshakes_eff(base))]
        lines.append(f"| {proxy} | {' | '.join(cells)} |")
    protocols = sorted({p for r in rows.values() for p in r.get("protocols", {})})
    resumed = [
        f"{name} {r.get('reused_share_min', r.get('reused_share', 0)):.0%}"
        for name, r in rows.items()
        if name.endswith("resumed")
    ]
    return [
        *lines,
        "",
        f"Negotiated: {', '.join(protocols) or '-'}.  Resumed connections (the lowest "
        f"round): {', '.join(resumed)}.",
    ]


#: HTTP/2 per proxy CPU-s against the same proxy's HTTPS HTTP/1.1 (issue 22).
H2_RATIO = 0.8


def h2_table(rows: dict) -> list[str]:
    """h2load rows: each ``<proxy>-h2`` against its own ``<proxy>-h1`` and nginx's HTTP/2."""
    lines = [
        "| | protocol | requests/s | proxy CPU share | requests per proxy CPU-s "
        "| per CPU-s vs its HTTPS HTTP/1.1 | per CPU-s vs nginx-h2 | failed | rounds' spread |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    nginx_eff = _eff(rows.get("nginx-h2"))
    for name, r in rows.items():
        share = r.get("proxy_cpu_share")
        eff = _eff(r)
        own = _eff(rows.get(name[:-3] + "-h1")) if name.endswith("-h2") else None
        lines.append(
            f"| {name} | {r.get('protocol', '-')} | {_fmt(r['rate'])} "
            f"| {f'{share:.0%}' if share is not None else '-'} | {_fmt(eff)} "
            f"| {_ratio(eff, own)} | {_ratio(eff, nginx_eff)} | {r.get('failed', 0)} "
            f"| {_spread(r)} |"
        )
    mine, h1 = _eff(rows.get("clbproxy-h2")), _eff(rows.get("clbproxy-h1"))
    if mine is not None and h1:
        lines += [
            "",
            f"clbproxy HTTP/2 / HTTPS HTTP/1.1 per proxy CPU-s: {mine / h1:.2f} "
            f"(target >= {H2_RATIO}): {_verdict(mine, H2_RATIO * h1)}.",
        ]
    return lines


def _verdict(value: Optional[float], floor: Optional[float]) -> str:
    if value is None or floor is None:
        return "not measured"
    return "pass" if value >= floor else "FAIL"


def target_table(scenarios: dict) -> list[str]:
    """Issue 19's targets, each with the row's ratio to its floor and to nginx."""
    lines = [
        "| target | row | measured | needed | vs nginx | verdict |",
        "|---|---|---|---|---|---|",
    ]

    def line(target, row, mine, floor, needed, nginx, failure=None):
        ratio = mine / floor if mine and floor else None
        verdict = failure or _verdict(ratio, needed)
        shown = f"{ratio:.2f}x" if ratio is not None else "-"
        lines.append(
            f"| {target} | {row} | {shown} | {needed:.2f}x | {_ratio(mine, nginx)} | {verdict} |"
        )

    http = scenarios.get("http")
    if http:
        floor, nginx = _eff(http.get("calib-http")), _eff(http.get("nginx"))
        for row, what in (("clbproxy", "access log off"), ("clbproxy-log", "access log on")):
            line(
                f"HTTP keep-alive, {what} (vs calib-http)",
                row,
                _eff(http.get(row)),
                floor,
                0.55,
                nginx,
            )
    plain = scenarios.get("handshake")
    if plain:
        floor, nginx = (
            _handshakes_eff(plain.get("calib-splice")),
            _handshakes_eff(plain.get("nginx")),
        )
        line(
            "WS handshakes (vs calib-splice)",
            "clbproxy",
            _handshakes_eff(plain.get("clbproxy")),
            floor,
            0.6,
            nginx,
        )
    post = scenarios.get("post")
    if post:
        nginx = _eff(post.get("nginx"), _mb)
        line(
            "1 MiB POST MB (vs nginx)",
            "clbproxy",
            _eff(post.get("clbproxy"), _mb),
            nginx,
            0.5,
            nginx,
        )
    rows = scenarios.get("wss_handshake")
    if rows and plain:
        plain_nginx = _handshakes_eff(plain.get("nginx"))
        needed = _handshakes_eff(plain.get("clbproxy"))
        needed = needed / plain_nginx if needed and plain_nginx else None
        for cell in WSS_CELLS:
            r, base = rows.get(f"clbproxy-{cell}"), rows.get(f"nginx-{cell}")
            failure = None
            if cell.endswith("resumed"):
                failure = next(
                    (_resumed_failure(x) for x in (r, base) if x and _resumed_failure(x)), None
                )
            if needed is None:
                continue
            mine, nginx = _handshakes_eff(r), _handshakes_eff(base)
            line(
                f"WSS {cell} (vs nginx, >= the ws:// ratio)",
                "clbproxy",
                mine,
                nginx,
                needed,
                nginx,
                failure,
            )
    return lines if len(lines) > 2 else []


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


def _scale_windows(scale: dict) -> str:
    """How the scale curve's CPU was read (runs before ``scale-r20`` had one window, no warm-up)."""
    if "windows" not in scale:
        return ""
    settle_start, settle_step = scale["settle_s"]
    return (
        f", the median of {scale['windows']} windows; {scale['warm_sessions_per_worker']} "
        f"warm-up sessions per worker held throughout; {settle_start:.0f} s of settling "
        f"before the 0-session row, {settle_step:.0f} s after each step opened"
    )


def scale_tables(scale: dict) -> list[str]:
    """The scale curve: one table per worker count, its verdicts, the skipped steps."""
    soft, hard = scale["rlimit_nofile"]
    out = [
        f"One clbproxy instance, `websocket_ping_interval = {scale['ping_interval']}`; "
        f"RLIMIT_NOFILE {soft} (hard {hard}): a descriptor budget of "
        f"{scale['budget_per_process']} sessions per process; CPU window "
        f"{scale['window_s']:.0f} s per step{_scale_windows(scale)}; ephemeral port range "
        f"{scale['port_range']} ports.",
        "",
    ]
    for key, curve in scale["curves"].items():
        workers, _, row = key.partition(" ")
        shown = f"`workers = {workers}`" + (f", `{row}`" if row else "")
        out += [
            f"{shown} ({curve['minutes']:.1f} min):",
            "",
            "| sessions | opened in s | sessions/s opened | proxy RSS MiB | KiB marginal "
            "| KiB per session | idle CPU | idle CPU windows' spread "
            "| idle CPU-us/s per session | probe p50 ms | probe p99 ms | lost |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in curve["rows"]:
            cpu = r.get("idle_cpu_per_s")
            windows = r.get("idle_cpu_windows") or []
            spread = max(windows) / min(windows) - 1 if len(windows) > 1 and min(windows) else None
            out.append(
                f"| {r['sessions']} | {_fmt(r.get('open_s'), 2)} | {_fmt(r.get('opened_per_s'))} "
                f"| {r['rss'] / 2**20:.1f} | {_fmt(r.get('kib_marginal'), 2)} "
                f"| {_fmt(r.get('kib_per_session'), 2)} "
                f"| {'-' if cpu is None else f'{cpu:.2%}'} "
                f"| {'-' if spread is None else f'{spread:.0%}'} "
                f"| {_fmt(r.get('idle_us_per_session'), 2)} | {_fmt(r.get('probe_p50_ms'), 2)} "
                f"| {_fmt(r.get('probe_p99_ms'), 2)} | {r.get('lost', '-')} |"
            )
        v = curve["verdicts"]
        baseline = next(
            (r["baseline_cpu_per_s"] for r in curve["rows"] if "baseline_cpu_per_s" in r), None
        )
        if baseline is not None:
            out += [
                "",
                f"Idle CPU baseline (the median of the `0` and `0 again` rows' windows): "
                f"{baseline:.2%}.",
            ]
        out += [
            "",
            "| target | measured | verdict |",
            "|---|---|---|",
            f"| marginal RSS per session within 20 % across steps (max/min - 1) "
            f"| {v['rss_spread']:.1%} | {'pass' if v['rss_pass'] else 'FAIL'} |",
            f"| idle CPU per session within 20 % of the largest step's (worst step) "
            f"| {v['cpu_off_largest']:.1%} | {'pass' if v['cpu_pass'] else 'FAIL'} |",
            f"| probe p99 at the largest step within 2x of 1 k's "
            f"| {v['p99_factor']:.2f}x | {'pass' if v['p99_pass'] else 'FAIL'} |",
            "",
        ]
    for skip in scale["skipped"]:
        out.append(
            f"- Skipped: {skip['sessions']} sessions, `workers = {skip['workers']}`: "
            f"{skip['reason']}."
        )
    return out


HOW = {
    "http": "wrk (1 thread, 50 keep-alive connections) GETs the echo backend's 33-byte "
    "answer through each proxy; `clbproxy-log` is clbproxy writing a plain access log "
    "line per request to a file (access events never go to twistd's own log); "
    "`calib-http` is the bare Twisted + "
    "httptools keep-alive proxy of `bench/calibration.py` (no routing, header rewriting or "
    "logging).  The window is wrk's whole run.",
    "post": "wrk (16 connections, a Lua script) POSTs 1 MiB bodies (Content-Length); the "
    "backend reads and discards them, then answers a short 200.  nginx has "
    "`proxy_request_buffering off` and `client_max_body_size 2m`, clbproxy "
    '`max_body_size = "2MiB"`; HAProxy streams by default.  MB = 10^6 bytes of request body.',
    "wss": "nginx, HAProxy and clbproxy terminate TLS with the same self-signed certificate "
    "(RSA-2048, then ECDSA P-256, one process each); Node's client (50 at a time) does TLS + "
    "WebSocket handshakes, one 64 B echo, close.  `full`: no session offered; `resumed`: "
    "every connect offers the newest session ticket, and `isSessionReused()` is counted "
    "(a resumed cell under 95 % resumed in any round is shown as FAILED).  The first column "
    "is the same run's ws:// handshake ratio, the bar each cell's ratio has to reach.",
    "h2": "h2load (1 thread, 10 connections, `-m 10`: 10 streams in flight per connection "
    "on HTTP/2, 10 pipelined requests on HTTP/1.1) GETs the echo backend's 33-byte answer "
    "through TLS listeners that offer `h2` and `http/1.1` (the bench's ECDSA certificate): "
    "`<proxy>-h2` over HTTP/2, `<proxy>-h1` the same process with `--h1`.  nginx: "
    "`listen ... ssl http2`; clbproxy: `http2 = true`.  The window is h2load's whole run.",
    "scale": "Idle WebSocket sessions opened in steps through one clbproxy and held by one "
    "Node process on the load CPU (`bench/scale.py`).  KiB marginal: RSS added by the step "
    "per new session; idle CPU: the proxy's CPU per second over a window of one ping "
    "interval with no traffic but pings (every session pinged once on each hop; the median "
    "of the windows, where there are several), per session less the 0-session row's; "
    "probe: 600 sequential 64 B echoes on a new session, in 30 bursts spread over one more "
    "ping interval after the CPU windows, each burst's first (wake-up) echo not counted "
    "(up to run `scale-r23`: 200 echoes in 10 bursts during the CPU windows, their CPU in "
    "every window; before run `scale-r20`: back to back after the window).  The `cold` row is "
    "the process before the warm-up sessions (held to the end; its KiB marginal is what "
    "they cost, one-time growth included); the 0-session row is measured with them.",
}


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
        f"Window {results['settings']['seconds']} s per row"
        + (
            f"; each row the median of {results['settings']['rounds']} rounds."
            if results["settings"].get("rounds", 1) > 1
            else "."
        )
        + (
            " Minutes per scenario: "
            + ", ".join(f"{k} {v:.1f}" for k, v in results["settings"]["minutes"].items())
            + "."
            if results["settings"].get("minutes")
            else ""
        ),
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
            lambda: [HOW["http"], "", *http_table(s["http"])],
        ),
        (
            "post",
            "### (7) 1 MiB POST bodies, streamed (wrk, 16 connections)",
            lambda: [HOW["post"], "", *post_table(s["post"])],
        ),
        (
            "wss_handshake",
            "### (8) WSS handshakes: TLS + WebSocket, one echo, close (50 in parallel)",
            lambda: [HOW["wss"], "", *wss_table(s)],
        ),
        (
            "h2",
            "### (10) HTTP/2 small GETs against HTTPS HTTP/1.1 (h2load -m 10)",
            lambda: [HOW["h2"], "", *h2_table(s["h2"])],
        ),
    ]
    for key, title, table in parts:
        present = any(k.startswith("idle") for k in s) if key == "idle" else key in s
        if present:
            out += [title, "", *table(), ""]
    targets = target_table(s)
    if targets:
        rounds = results["settings"].get("rounds", 1)
        out += [
            "### Against issue 19's targets (per proxy CPU-s, same run, "
            f"median of {rounds} round{'s' if rounds > 1 else ''})",
            "",
            *targets,
            "",
        ]
    if "scale" in results:
        out += [
            "### (9) The scale curve: idle sessions through one instance",
            "",
            HOW["scale"],
            "",
            *scale_tables(results["scale"]),
            "",
        ]
    against = baseline_table(s)
    if against:
        out += ["### Against the framework baselines (bench/calibration.py)", "", *against, ""]
    return "\n".join(out)


#: The pictures' scenarios: (key, title, amount of work per proxy CPU-second of a row).
CHART_SCENARIOS = (
    ("msg64", "64 B messages, 100 sessions", lambda r: _per_cpu(r["msgs"], r)),
    ("msg64k", "64 KiB messages, 16 sessions", lambda r: _per_cpu(r["bytes"], r)),
    ("handshake", "WebSocket handshakes", _handshakes_eff),
    ("http", "HTTP keep-alive GETs", _eff),
    ("post", "1 MiB POST bodies (MB)", lambda r: _eff(r, _mb)),
)


def chart_rows(runs: list[tuple[str, dict]]) -> list[tuple[str, dict[str, float]]]:
    """``(title [label], {proxy: per CPU-s vs nginx})``; a scenario from the first run with it."""
    rows = []

    def add(title: str, label: str, cells: dict, amount) -> None:
        nginx = amount(cells["nginx"]) if "nginx" in cells else None
        if not nginx:
            return
        ratios = {}
        for proxy in ("haproxy", "clbproxy"):
            mine = amount(cells[proxy]) if proxy in cells else None
            if mine is not None:
                ratios[proxy] = mine / nginx
        rows.append((f"{title} [{label}]", ratios))

    for key, title, amount in CHART_SCENARIOS:
        found = next(((lb, r["scenarios"][key]) for lb, r in runs if key in r["scenarios"]), None)
        if found is not None:
            add(title, found[0], found[1], amount)
    found = next(((lb, r) for lb, r in runs if "wss_handshake" in r["scenarios"]), None)
    if found is not None:
        label, results = found
        cells = results["scenarios"]["wss_handshake"]
        for cell in WSS_CELLS:
            per_proxy = {p: cells[f"{p}-{cell}"] for p in ("nginx", "haproxy", "clbproxy")
                         if f"{p}-{cell}" in cells}  # fmt: skip
            add(f"WSS handshakes, {cell}", label, per_proxy, _handshakes_eff)
    return rows


def write_pngs(directory: Path, labels: list[str]) -> list[Path]:
    """ratios.png and scale.png of these runs into ``directory``; the paths written."""
    runs = [(label, json.loads((OUT / f"{label}.json").read_text())) for label in labels]
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    rows = chart_rows(runs)
    if rows:
        titles = " ".join(title for title, _ in rows)
        used = [(lb, r["machine"]["date"]) for lb, r in runs if f"[{lb}]" in titles]
        path = directory / "ratios.png"
        charts.ratios_chart(rows, used, path)
        written.append(path)
    scaled = next(((lb, r) for lb, r in runs if "scale" in r), None)
    if scaled is not None:
        label, results = scaled
        path = directory / "scale.png"
        charts.scale_chart(results["scale"], label, results["machine"]["date"], path)
        written.append(path)
    return written


def main(labels: list[str]) -> int:
    if labels and labels[0] == "--png":
        if len(labels) < 3:
            print("usage: report.py --png DIRECTORY LABEL [LABEL ...]", file=sys.stderr)
            return 2
        for path in write_pngs(Path(labels[1]), labels[2:]):
            print(path)
        return 0
    if any(label.startswith("-") for label in labels):
        print(
            "usage: report.py [LABEL ...] (a run in bench/out/LABEL.json, default latest)\n"
            "       report.py --png DIRECTORY LABEL [LABEL ...]",
            file=sys.stderr,
        )
        return 2
    missing = [label for label in labels if not (OUT / f"{label}.json").exists()]
    if missing:
        print(
            f"report.py: no run {missing[0]!r}: {OUT / (missing[0] + '.json')} does not exist",
            file=sys.stderr,
        )
        return 2
    print("\n".join(section(label) for label in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["latest"]))
