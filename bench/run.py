"""clbproxy's benchmark: direct, nginx, HAProxy and clbproxy side by side, in one run.

Usage (from the repository root, as a user allowed to raise ``ulimit -n``)::

    .venv/bin/python bench/run.py                 # every scenario but scale, 3 rounds each
    .venv/bin/python bench/run.py --quick         # smoke run, one short round
    .venv/bin/python bench/run.py --label after   # keep results under that label
    .venv/bin/python bench/run.py --scenario post --scenario http --rounds 5
    .venv/bin/python bench/run.py --scenario scale   # the scale curve (bench/scale.py)

Scenarios: WebSocket messages, latency at half load, idle RSS and handshakes (here);
HTTP GETs and 1 MiB POSTs (``scenarios_http.py``); WSS handshakes (``wss.py``); HTTP/2
against HTTPS HTTP/1.1 (``h2.py``, h2load; run only when named); the
scale curve (``scale.py``); the framework floors are ``calibration.py``.  Each scenario
runs ``--rounds`` times, rows interleaved (each round starting one row later), and each row
reports its median round.

Needs ``nginx``, ``haproxy``, ``wrk``, ``h2load`` (Debian packages; h2load is in
``nghttp2-client``, for the ``h2`` scenario only) and ``node`` with ``bench/node_modules``
(``cd bench && npm ci``).  Every process listens on 127.0.0.1 on an ephemeral port and runs
in the foreground as the current user from generated configs in a temporary directory (the
system services are never touched).  The proxy under test is pinned to CPU 0 and the echo
backend and load generator to CPU 1 with ``taskset``.

Results go to ``bench/out/<label>.json`` (git-ignored); ``bench/report.py`` turns them into
``bench/RESULTS.md``.  The idle scenario also runs every proxy a second time behind TLS
(rows ``<proxy>-wss``: nginx ``listen ... ssl``, HAProxy ``bind ... ssl crt``, an HTTPS
clbproxy listener, one self-signed certificate; ``--no-wss`` leaves them out).  Every
throughput is also divided by the proxy's CPU seconds in the measured window (utime + stime
from ``/proc/PID/stat``, summed over the process and its children), because on a 2-core
machine the load generator saturates its core first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import h2
import scale
import scenarios_http
import wss
from procs import (
    CALIBRATION,
    HERE,
    LOAD,
    LOAD_CPU,
    NODE,
    PROXY_CPU,
    REPO,
    Target,
    absolute,
    clbproxy_argv,
    cpu_seconds,
    free_port,
    implementation,
    pinned,
    raise_fd_limit,
    rss_bytes,
    start,
    versions,
    wait_port,
    write_certificate,
)

from clbproxy.net.descriptors import connection_budget

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {nofile}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port}{ssl} backlog=4096;
{ssl_conf}        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_request_buffering off;
            client_max_body_size 2m;
        }}
    }}
}}
"""

HAPROXY_CONF = """\
global
    maxconn {maxconn}
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend web
    bind 127.0.0.1:{port} backlog 4096{ssl}
    default_backend echo
backend echo
    http-reuse always
    server b1 127.0.0.1:{backend}
"""

#: Listener lines of a ``--limits-on`` row: WebSocket rate limits on, never reached by any
#: scenario (what a session under its limits pays; run ``ab-limits-credit`` and after).
LIMITS_ON = 'websocket_message_rate = 1000000.0\nwebsocket_byte_rate = "1GiB"\n'

CLBPROXY_CONF = """\
workers = {workers}
[[listener]]
name = "bench"
protocol = "{protocol}"
bind = "tcp:{port}:interface=127.0.0.1:backlog=4096"
max_body_size = "2MiB"
{listener_extra}{tls}
  [[listener.rule]]
  path = "/"
  target_group = "echo"
{rule_extra}
[target_group.echo]
backends = ["127.0.0.1:{backend}"]
"""


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.results: dict = {"scenarios": {}}
        #: Every round's result, by scenario and row (``record`` keeps the median's).
        self.samples: dict[str, dict[str, list[dict]]] = {}
        self.ws_steps = self.http_steps = True
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    # -- processes -----------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], port: int, cpu: str) -> subprocess.Popen:
        proc = start(pinned(cpu, argv), self.tmp / f"{name}.log", cwd=self.tmp)
        self.procs.append(proc)
        try:
            wait_port(port)
        except RuntimeError:
            tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not start:\n{tail}") from None
        return proc

    def start_backend(self, deflate: bool = False) -> int:
        """The echo backend; with ``deflate`` one that accepts permessage-deflate."""
        port = free_port()
        name, extra = ("backend-deflate", ["deflate"]) if deflate else ("backend", [])
        self.spawn(name, [NODE, LOAD, "server", str(port), *extra], port, LOAD_CPU)
        return port

    def start_targets(self, backend: int, wss: bool) -> list[Target]:
        """direct, then every proxy; with ``wss`` each proxy also as a TLS twin process.

        A twin is a separate process (``<name>-wss``) so that its RSS has its own
        baseline, not the memory its plain sibling kept from earlier runs.
        """
        targets = [Target("direct", backend)]
        schemes = ["ws", "wss"] if wss else ["ws"]
        if wss:
            self.cert, self.key = write_certificate(self.tmp)
        for scheme in schemes:
            targets.append(self.start_nginx(backend, scheme))
        for scheme in schemes:
            targets.append(self.start_haproxy(backend, scheme))
        python = self.args.python
        variants = [("clbproxy", "", 1, python)]
        if self.args.tunnel:
            variants.append(("clbproxy-tunnel", '  relay = "tunnel"\n', 1, python))
        if self.args.workers > 1:
            variants.append(
                (f"clbproxy-{self.args.workers}-workers", "", self.args.workers, python)
            )
        for other in self.args.also_python:
            label, _, other = other.rpartition("=")
            label = label or implementation(other)
            variants.append((f"clbproxy-{label}", "", 1, other))
            if self.args.tunnel:
                variants.append((f"clbproxy-{label}-tunnel", '  relay = "tunnel"\n', 1, other))
        unknown = set(self.args.limits_on) - {name for name, *_ in variants}
        if unknown:
            raise SystemExit(f"--limits-on: no such clbproxy row: {', '.join(sorted(unknown))}")
        for variant in variants:
            extra = LIMITS_ON if variant[0] in self.args.limits_on else ""
            for scheme in schemes:
                targets.append(self.start_clbproxy(backend, scheme, *variant, extra))
        if self.http_steps:
            # The same clbproxy writing an access log line per request to a file.
            log = f'access_log = {{ path = "{self.tmp / "clbproxy-access.log"}" }}\n'
            logging = self.start_clbproxy(backend, "ws", "clbproxy-log", "", 1, python, log)
            logging.ws = False
            targets.append(logging)
        if self.args.deflate:
            # clbproxy's Autobahn path: with websocket_deflate = "per_hop" the proxy
            # compresses on the client's hop although the backend declines, which
            # keeps the session on Autobahn.  (End to end, the default, the client
            # would get no deflate either and the session would take the fast path.)
            per_hop = 'websocket_deflate = "per_hop"\n'
            for name, extra, count, python in variants:
                if not extra and count == 1:
                    twin = self.start_clbproxy(
                        backend, "ws", f"{name}-deflate", "", 1, python, per_hop
                    )
                    twin.deflate = True
                    targets.append(twin)
            # Deflate end to end (the default): a backend that accepts the offer, so
            # client and backend compress and the proxies pass compressed frames on
            # (clbproxy on its fast path, checking them as they inflate).  These rows
            # are compared with each other: "-deflate-e2e" rows against nginx's.
            compressing = self.start_backend(deflate=True)
            targets.append(Target("direct-deflate-e2e", compressing, deflate=True))
            e2e = [self.start_nginx(compressing, "ws", "nginx-deflate-e2e")]
            e2e.append(
                self.start_clbproxy(
                    compressing, "ws", "clbproxy-deflate-e2e", "", 1, self.args.python
                )
            )
            for target in e2e:
                target.deflate = True
            targets += e2e
        if self.args.calibration:
            targets += self.start_calibration(backend)
        return targets

    def start_calibration(self, backend: int) -> list[Target]:
        """The framework baselines of ``bench/calibration.py``, run by clbproxy's Python.

        Only those the selected scenarios use: the WebSocket ones, ``calib-http``.
        """
        targets = []
        kinds = []
        if self.ws_steps:
            kinds += [("autobahn", "lean", ""), ("splice", "lean", "")]
            kinds.append(("splice", "stock", "-stock"))
        if self.http_steps:
            kinds.append(("http", "lean", ""))
        for kind, dispatch, suffix in kinds:
            name, port = f"{CALIBRATION}{kind}{suffix}", free_port()
            argv = [self.args.python, str(HERE / "calibration.py"), kind, str(port), str(backend)]
            proc = self.spawn(name, [*argv, dispatch], port, self.args.proxy_cpus)
            targets.append(Target(name, port, proc.pid, ws=kind != "http", http=kind == "http"))
            if kind == "autobahn" and self.args.deflate:
                targets.append(Target(f"{name}-deflate", port, proc.pid, deflate=True))
        return targets

    @staticmethod
    def _name(name: str, scheme: str) -> str:
        return name if scheme == "ws" else f"{name}-{scheme}"

    def start_nginx(
        self, backend: int, scheme: str, name: str = "nginx", http2: bool = False
    ) -> Target:
        tmp, name, port = self.tmp, self._name(name, scheme), free_port()
        tls = scheme == "wss"
        ssl_conf = (
            f"        ssl_certificate {self.cert};\n        ssl_certificate_key {self.key};\n"
            # nginx 1.22 leaves TLS 1.3 out by default; HAProxy and clbproxy offer it.
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
            if tls
            else ""
        )
        if http2:
            # nginx ends an HTTP/2 connection after keepalive_requests (1000) with
            # GOAWAY, and h2load does not reconnect: the row would stop early.
            ssl_conf += "        keepalive_requests 100000000;\n"
        (tmp / f"{name}.conf").write_text(
            NGINX_CONF.format(
                tmp=tmp,
                name=name,
                port=port,
                backend=backend,
                nofile=self.nofile,
                ssl=(" ssl http2" if http2 else " ssl") if tls else "",
                ssl_conf=ssl_conf,
            )
        )
        argv = [
            "nginx",
            "-p",
            str(tmp),
            "-e",
            str(tmp / f"{name}-error.log"),
            "-c",
            str(tmp / f"{name}.conf"),
        ]
        proc = self.spawn(name, argv, port, self.args.proxy_cpus)
        return Target(name, port, proc.pid, scheme)

    def start_haproxy(self, backend: int, scheme: str, name: str = "haproxy") -> Target:
        tmp, name, port = self.tmp, self._name(name, scheme), free_port()
        ssl = ""
        if scheme == "wss":
            pem = tmp / f"{name}.pem"
            pem.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
            ssl = f" ssl crt {pem}"
        (tmp / f"{name}.cfg").write_text(
            HAPROXY_CONF.format(
                port=port, backend=backend, maxconn=(self.nofile - 100) // 2, ssl=ssl
            )
        )
        proc = self.spawn(
            name, ["haproxy", "-db", "-f", str(tmp / f"{name}.cfg")], port, self.args.proxy_cpus
        )
        return Target(name, port, proc.pid, scheme)

    def start_clbproxy(
        self,
        backend: int,
        scheme: str,
        name: str,
        rule_extra: str,
        workers: int,
        python: str,
        listener_extra: str = "",
    ) -> Target:
        # --row-listener-extra: one --also-python row's own listener keys.
        rows = getattr(self.args, "row_extra", {})
        listener_extra += rows.get(name.partition("clbproxy-")[2], "")
        name, port = self._name(name, scheme), free_port()
        tls = ""
        if scheme == "wss":
            tls = (
                "  [listener.tls]\n"
                f'  certificates = [{{ cert = "{self.cert}", key = "{self.key}" }}]\n'
            )
        text = CLBPROXY_CONF.format(
            port=port,
            backend=backend,
            protocol="https" if scheme == "wss" else "http",
            tls=tls,
            rule_extra=rule_extra,
            listener_extra=listener_extra,
            workers=workers,
        )
        return self.spawn_clbproxy(name, text, port, python, scheme)

    def spawn_clbproxy(
        self, name: str, conf_text: str, port: int, python: str, scheme: str = "ws"
    ) -> Target:
        """clbproxy under twistd with the configuration ``conf_text``; ready when ``port`` is."""
        conf = self.tmp / f"{name}.conf"
        conf.write_text(conf_text)
        argv = clbproxy_argv(python, conf, self.tmp / f"{name}-twistd.log")
        proc = self.spawn(name, argv, port, self.args.proxy_cpus)
        return Target(name, port, proc.pid, scheme)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    # -- measuring -----------------------------------------------------------------

    def load(self, target: Target, mode: str, *params) -> dict:
        """Run the load generator once against ``target``; add the proxy's CPU seconds."""
        argv = pinned(LOAD_CPU, [NODE, LOAD, mode, target.url, *map(str, params)])
        env = {**os.environ, "CLB_BENCH_DEFLATE": "1"} if target.deflate else None
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        cpu0 = cpu1 = None
        result = None
        for line in proc.stdout:
            line = line.strip()
            if line == "window-start":
                cpu0 = cpu_seconds(target.pid) if target.pid else None
                t0 = time.monotonic()
            elif line == "window-end":
                cpu1 = cpu_seconds(target.pid) if target.pid else None
                wall = time.monotonic() - t0
            elif line.startswith("{"):
                result = json.loads(line)
        proc.wait()
        if result is None:
            raise RuntimeError(f"load {mode} against {target.name} failed: {proc.stderr.read()}")
        if cpu0 is not None:
            result["proxy_cpu_s"] = cpu1 - cpu0
            result["proxy_cpu_share"] = (cpu1 - cpu0) / wall
        return result

    def record(self, scenario: str, target: Target, result: dict) -> None:
        """Keep one round's result; the row shows the median round so far (``--rounds``).

        The median round is chosen by the scenario's figure of merit (amount per
        proxy CPU-second where the proxy is measured) and kept whole, so that its
        rate, CPU share and latencies come from the same window; ``rounds`` lists
        every round's figure.
        """
        samples = self.samples.setdefault(scenario, {}).setdefault(target.name, [])
        samples.append(result)
        ranked = sorted(samples, key=lambda r: merit(scenario, r))
        chosen = dict(ranked[(len(ranked) - 1) // 2])
        if len(samples) > 1:
            chosen["rounds"] = [round(merit(scenario, r), 3) for r in samples]
        self.results["scenarios"].setdefault(scenario, {})[target.name] = chosen
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
        print(f"  {scenario:<12} {target.name:<16} {shown}", flush=True)

    def small_messages(self, targets: list[Target]) -> None:
        for t in targets:
            profiled = t.name in ("clbproxy", "clbproxy-deflate")
            r = self.profiled_load(t, "msg64", profiled, "closed", 100, 64, 0, self.args.seconds)
            r["rate"] = r["msgs"] / r["seconds"]
            self.record("msg64", t, r)

    def profiled_load(self, target: Target, scenario: str, profiled: bool, *load) -> dict:
        """``self.load(target, *load)``, under py-spy when ``--profile`` and ``profiled``."""
        spy = self.profile(target, scenario) if self.args.profile and profiled else None
        result = self.load(target, *load)
        if spy is not None:
            spy.wait(timeout=60)
        return result

    def profile(self, target: Target, scenario: str) -> subprocess.Popen:
        """py-spy (sampling, from outside the process) over one run's window."""
        spy = shutil.which("py-spy") or str(Path(self.args.python).parent / "py-spy")
        label = self.args.label
        return subprocess.Popen(
            pinned(
                LOAD_CPU,
                [
                    spy,
                    "record",
                    "--pid",
                    str(target.pid),
                    "--nonblocking",
                    "--duration",
                    str(int(self.args.seconds)),
                    "--format",
                    "raw",
                    "-o",
                    str(HERE / f"profile-{label}-{target.name.replace('clbproxy', scenario)}.txt"),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def large_messages(self, targets: list[Target]) -> None:
        for t in targets:
            r = self.load(t, "closed", 16, 65536, 1, self.args.seconds)
            r["mb_s"] = r["bytes"] / r["seconds"] / 1e6
            self.record("msg64k", t, r)

    def half_load(self, targets: list[Target]) -> None:
        rates = [
            r["rate"]
            for name, r in self.results["scenarios"]["msg64"].items()
            if name != "direct" and not name.startswith(CALIBRATION)
        ]
        rate = int(min(rates) / 2)
        self.results["half_load_rate"] = rate
        for t in targets:
            r = self.load(t, "rate", 100, 64, rate, self.args.seconds)
            self.record("half_load", t, r)

    def handshakes(self, targets: list[Target]) -> None:
        for t in targets:
            profiled = t.name == "clbproxy"
            r = self.profiled_load(t, "handshake", profiled, "handshake", 50, self.args.seconds)
            r["rate"] = r["handshakes"] / r["seconds"]
            self.record("handshake", t, r)

    def _idle_clients(self, target: Target, n: int) -> subprocess.Popen:
        """A load generator holding ``n`` idle sessions open (until its stdin is closed)."""
        argv = pinned(LOAD_CPU, [NODE, LOAD, "idle", target.url, str(n)])
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = proc.stdout.readline().strip()
        if not line.startswith("ready"):
            proc.kill()
            raise RuntimeError(f"idle {n} against {target.name}: {proc.stderr.read()}")
        time.sleep(1.0)
        return proc

    def idle(self, targets: list[Target]) -> None:
        """Proxy RSS per idle session: from the RSS before, and for the second half alone.

        The sessions are opened in two halves by two load generators.  The first
        half can reuse memory the proxy freed after start-up (the per-session
        figure then understates what a session costs), the second half cannot
        as much: ``kib_marginal`` is what the second half added.
        """
        for n in self.args.idle:
            for t in targets:
                if t.pid is None or t.deflate:
                    continue
                before = rss_bytes(t.pid)
                first = self._idle_clients(t, n // 2)
                middle = rss_bytes(t.pid)
                second = self._idle_clients(t, n - n // 2)
                after = rss_bytes(t.pid)
                for proc in (first, second):
                    proc.stdin.close()
                for proc in (first, second):
                    proc.wait(timeout=60)
                r = {
                    "sessions": n,
                    "rss_before": before,
                    "rss_middle": middle,
                    "rss_after": after,
                    "kib_per_session": (after - before) / n / 1024,
                    "kib_marginal": (after - middle) / (n - n // 2) / 1024,
                }
                self.record(f"idle{n}", t, r)
                time.sleep(2.0)

    # -- the run -------------------------------------------------------------------

    def machine(self) -> dict:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo)

        def version(argv: list[str]) -> str:
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
                return (p.stdout + p.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                return "?"

        pythons = [self.args.python, *(p.rpartition("=")[2] for p in self.args.also_python)]
        py = "; ".join(versions(python) for python in pythons)
        return {
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "nproc": os.cpu_count(),
            "cpu": model.group(1) if model else "?",
            "kernel": platform.release(),
            "nginx": version(["nginx", "-v"]),
            "haproxy": version(["haproxy", "-v"]),
            "wrk": version(["wrk", "-v"]),
            "node": version([NODE, "--version"]),
            "python_twisted_autobahn": py.strip(),
            "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        }

    def steps(self) -> dict[str, tuple[Callable[[list[Target]], None], str]]:
        """Every scenario by its ``--scenario`` name: (the step, which targets it takes)."""
        return {
            "small_messages": (self.small_messages, "ws"),
            "large_messages": (self.large_messages, "ws"),
            "half_load": (self.half_load, "ws"),
            "idle": (self.idle, "ws"),
            "handshakes": (self.handshakes, "ws"),
            "http": (lambda targets: scenarios_http.http(self, targets), "http"),
            "post": (lambda targets: scenarios_http.post(self, targets), "http"),
            "wss_handshake": (lambda targets: wss.handshakes(self, targets), "tls"),
            "h2": (lambda targets: h2.h2(self, targets), "h2"),
        }

    def run(self) -> dict:
        self.results["machine"] = self.machine()
        rounds = self.args.rounds
        self.results["settings"] = {
            "seconds": self.args.seconds,
            "idle": self.args.idle,
            "label": self.args.label,
            "rounds": rounds,
            "limits_on": self.args.limits_on,
        }
        every = self.steps()
        chosen = self.args.only or [name for name in every if name != "h2"]
        if "wss_handshake" in chosen and "handshakes" not in chosen:
            print("wss_handshake is compared with plain handshakes: adding handshakes")
            chosen.append("handshakes")
        names = [name for name in [*every, "scale"] if name in chosen]
        steps = [(name, *every[name]) for name in names if name in every]
        self.ws_steps = any(kind == "ws" for _, _, kind in steps)
        self.http_steps = any(kind == "http" for _, _, kind in steps)
        # WSS twins are measured only for idle sessions (RSS per session).
        wss_idle = self.args.wss and "idle" in names
        self.results["settings"]["wss"] = wss_idle
        self.results["settings"]["scenarios"] = names
        #: Wall-clock minutes of each scenario, all its rounds.
        minutes = self.results["settings"]["minutes"] = {}
        if steps:
            try:
                backend = self.start_backend()
                targets = self.start_targets(backend, wss_idle)
                if "wss_handshake" in names:
                    targets += wss.start_targets(self, backend)
                if "h2" in names:
                    targets += h2.start_targets(self, backend)
                time.sleep(1.0)
                for name, step, kind in steps:
                    print(f"{name}:", flush=True)
                    t0 = time.monotonic()
                    if name == "idle":  # the RSS a process keeps would skew repeats
                        step([t for t in targets if t.ws and not t.cert])
                    else:
                        for r in range(rounds):
                            taking_part = [t for t in targets if _takes_part(t, kind)]
                            # Each round starts one row later, so that no row is always
                            # measured at the same point of the round (next to the same rows).
                            shift = r % len(taking_part) if taking_part else 0
                            step(taking_part[shift:] + taking_part[:shift])
                    minutes[name] = (time.monotonic() - t0) / 60
            finally:
                self.stop_all()
        if "scale" in names:
            t0 = time.monotonic()
            try:
                self.results["scale"] = scale.curve(self)
                minutes["scale"] = (time.monotonic() - t0) / 60
            finally:
                self.stop_all()
        self.results["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        return self.results


#: The scenarios ``--scenario`` names besides ``scale`` (``Bench.steps``).
SCENARIOS = (
    "small_messages",
    "large_messages",
    "half_load",
    "idle",
    "handshakes",
    "http",
    "post",
    "wss_handshake",
    "h2",
)


def _takes_part(target: Target, kind: str) -> bool:
    """Whether ``target`` is a row of a ``kind`` ("ws", "http", "tls") scenario."""
    if kind == "tls":
        return target.cert is not None
    if kind == "h2":
        return target.scheme == "h2"
    if target.scheme != "ws":
        return False
    return target.ws if kind == "ws" else target.http and not target.deflate


def merit(scenario: str, result: dict) -> float:
    """The figure a scenario's median round is chosen by: amount per proxy CPU-second.

    Rows without a proxy (direct) go by amount per second; half load by its p99,
    idle sessions by KiB per session.
    """
    if scenario == "half_load":
        return result["p99_ms"]
    if scenario.startswith("idle"):
        return result["kib_per_session"]
    for key in ("handshakes", "msgs"):
        if key in result:
            amount = result[key]
            break
    else:
        amount = result["rate"] * result["seconds"]
    cpu = result.get("proxy_cpu_s")
    return amount / cpu if cpu else amount / result["seconds"]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured window per run")
    parser.add_argument("--idle", type=int, nargs="*", default=[5000, 10000])
    parser.add_argument("--label", default="latest", help="results go to bench/out/LABEL.json")
    parser.add_argument("--python", default=sys.executable, help="Python that runs clbproxy")
    parser.add_argument(
        "--also-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also run clbproxy rows with this interpreter (e.g. .venv-pypy/bin/python), "
        "named clbproxy-pypy / clbproxy-pypy-tunnel; NAME=PYTHON names them clbproxy-NAME "
        "(e.g. a wrapper that puts an older checkout on PYTHONPATH, to compare in one run)",
    )
    parser.add_argument(
        "--row-listener-extra",
        action="append",
        default=[],
        metavar="NAME=TOML",
        help="listener keys (TOML lines) for the --also-python row NAME only, e.g. "
        "'noids=request_id_header = \"\"'; repeatable",
    )
    parser.add_argument(
        "--scenario",
        "--only",
        dest="only",
        action="append",
        choices=[*SCENARIOS, "scale"],
        help="run only this scenario (repeatable; half_load needs small_messages, "
        "wss_handshake adds handshakes; scale, the scale curve, runs only when named)",
    )
    parser.add_argument(
        "--scale-workers",
        type=int,
        nargs="+",
        default=[1, 2],
        metavar="N",
        help="the scale curve's worker counts (default 1 2)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="repeat each scenario N times (rows interleaved) and report each row's "
        "median round; default 3, 1 with --quick (idle and scale run once)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of clbproxy during the 64 B and handshake runs",
    )
    parser.add_argument(
        "--no-tunnel", dest="tunnel", action="store_false", help="leave out clbproxy's tunnel mode"
    )
    parser.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="leave out the clbproxy-deflate row (clients offering permessage-deflate, which "
        "the backend declines: the session stays on Autobahn's per-message relay)",
    )
    parser.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="leave out the framework baselines (calib-autobahn, calib-autobahn-deflate, "
        "calib-splice, calib-splice-stock: bench/calibration.py)",
    )
    parser.add_argument(
        "--no-wss",
        dest="wss",
        action="store_false",
        help="leave out the idle scenario's WSS rows (nginx-wss, haproxy-wss, clbproxy-wss...)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also run clbproxy with this many worker processes (on the proxy CPUs)",
    )
    parser.add_argument(
        "--proxy-cpus",
        default=PROXY_CPU,
        help="CPUs (taskset list) of the proxies, e.g. 0-2 for a workers row; default 0",
    )
    parser.add_argument(
        "--limits-on",
        action="append",
        default=[],
        metavar="ROW",
        help="run row ROW (clbproxy, clbproxy-NAME) with WebSocket rate limits on that no "
        "scenario reaches (websocket_message_rate = 1000000.0, websocket_byte_rate = 1GiB): "
        "the cost of limits to a session under them, against a row without (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 1.5
        args.idle = [500]
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if os.cpu_count() < 2:
        print("needs 2 CPUs (proxy on CPU 0, load on CPU 1)", file=sys.stderr)
        return 2
    # The processes start in a temporary directory: a relative interpreter path
    # (.venv-pypy/bin/python) is made absolute first.
    args.python = absolute(args.python)
    row_extra: dict[str, str] = {}
    for item in args.row_listener_extra:
        label, _, text = item.partition("=")
        row_extra[label] = row_extra.get(label, "") + text + "\n"
    args.row_extra = row_extra
    args.also_python = [
        f"{label}{sep}{absolute(path)}"
        for label, sep, path in (other.rpartition("=") for other in args.also_python)
    ]
    # A proxied idle session holds two descriptors in the proxy (client and backend side), and
    # clbproxy accepts no more clients than its descriptor budget (an eighth is kept in reserve).
    wanted = 2 * max(args.idle + [1000]) * 8 // 7 + 2000
    if args.only and "scale" in args.only:
        wanted = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # the scale curve takes all
    limit = raise_fd_limit(wanted)
    budget = connection_budget(limit)
    fitting = [min(n, budget // 500 * 500) for n in args.idle]
    if fitting != args.idle:
        print(f"ulimit -n is {limit} (hard limit): idle sessions {args.idle} -> {fitting}")
        args.idle = fitting
    # Killed (timeout, kill): unwind, so every proxy and load process started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{REPO}{os.pathsep}{env_path}" if env_path else str(REPO)
    with tempfile.TemporaryDirectory(prefix="clbbench-") as tmp:
        results = Bench(args, Path(tmp)).run()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / f"{args.label}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
