"""Soak test: thousands of WebSocket sessions through a real clbproxy while backends die.

Loopback only, bounded in time, outside the unit suite::

    PYTHONPATH=. python bench/soak.py --duration 120 --concurrency 150

It starts ``--backends`` echo backends (child processes) and ``twistd -n clbproxy``
in front of them, then keeps ``--concurrency`` sessions running: each connects,
sends ``--messages`` sequence-numbered messages (text and binary, one in flight at
a time), checks every echo arrives once and in order, and closes with 1000.
Every ``--kill-every`` seconds one backend is killed with SIGKILL and restarted
``--down-for`` seconds later; sessions it carried end with 1011 ("deliberately
cut"), and only they may end early: each backend's first message names its port,
so a session on a backend that was not killed must not be cut.  Every
``--reload-every`` seconds (default 10; 0: never) tap.conf is
rewritten and the proxy gets SIGHUP, alternating a valid change that matters (new
backend weights, one backend at weight 0 in turn) and a broken, half-written
file, which must be refused while everything keeps running.

At the end it asserts: no session that was not cut lost, duplicated or reordered
a message; no cut session received anything out of order; handshakes failed only
with 502/503 while a backend was down; the proxy's RSS in the last quarter of the
run is within ``--rss-slack`` of the second quarter's (no leak); and the proxy log
holds no traceback or unhandled error; every valid reload was applied (one
``reloaded`` line each) and every broken one refused (one ``reload refused``
summary each).  Prints one JSON summary line; exit status
0 when every assertion holds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

TWISTD = "from twisted.scripts.twistd import run; run()"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_ALARMS = ("Traceback", "Unhandled error", "Unhandled Error")

#: The first message of every session: the echo backend's port.
HELLO = b"soak-backend:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the backend process -----------------------------------------------------------


def run_backend(port: int) -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor

    class Echo(WebSocketServerProtocol):
        def onOpen(self):
            # Says which backend carries the session, so only the killed one's are excused.
            self.sendMessage(b"%s%d" % (HELLO, port))

        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.setProtocolOptions(failByDrop=False)
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.run()


class Backend:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process = None
        self.down_since = None
        #: Index of this backend's current outage in the kill windows.
        self.window: Optional[int] = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--backend", str(self.port)],
            env=dict(os.environ, PYTHONPATH=REPOSITORY),
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                self.down_since = None
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"backend on port {self.port} did not start")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.down_since = time.time()


# -- the load generator ------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.started = 0
        self.complete = 0
        self.cut = 0
        self.refused: dict[str, int] = {}
        self.failures: list[str] = []
        self.messages_checked = 0
        self.in_flight = 0


def run_load(args, proxy_port: int, backends: list[Backend], proxy_pid: int) -> dict:
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
    from twisted.internet import reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint

    stats = Stats()
    rss: list[tuple[float, int]] = []
    start = time.time()
    stop_at = start + args.duration
    kill_windows: list[tuple[float, float]] = []
    #: When each backend (by port) was killed.
    killed_at: dict[int, list[float]] = {}
    rng = random.Random(args.seed)
    next_reload = [start + args.reload_every]
    reloads = {"applied": 0, "refused": 0}
    config = Reconfigurer(args.config_path, args.listen_port, backends)

    def in_kill_window(at: float) -> bool:
        return any(a - 1 <= at <= b + 2 for a, b in kill_windows)

    def backend_killed(port: Optional[int], since: float, at: float) -> bool:
        """True when the backend on ``port`` was killed while the session ran.

        A session whose backend is not known yet (its hello had not arrived) is
        excused by the kill windows alone.
        """
        if port is None:
            return in_kill_window(at)
        return any(since - 1 <= kill <= at + 1 for kill in killed_at.get(port, ()))

    class Session(WebSocketClientProtocol):
        def onOpen(self):
            self.sent = []
            self.received = 0
            self.backend_port = None

        def send_next(self):
            seq = len(self.sent)
            if seq == self.factory.count:
                self.sendClose(1000)
                return
            body = f"{self.factory.sid}:{seq}:".encode() + b"x" * rng.randint(0, 2000)
            binary = seq % 3 == 0
            self.sent.append((body, binary))
            self.sendMessage(body, isBinary=binary)

        def onMessage(self, payload, isBinary):
            if self.backend_port is None and not self.sent:
                if not payload.startswith(HELLO):
                    self.factory.problem = f"session {self.factory.sid}: no hello: {payload[:30]!r}"
                    self.sendClose(1000)
                    return
                self.backend_port = self.factory.backend_port = int(payload[len(HELLO) :])
                self.send_next()
                return
            expected = self.sent[self.received] if self.received < len(self.sent) else None
            if (payload, isBinary) != expected:
                self.factory.problem = (
                    f"session {self.factory.sid}: message {self.received} was "
                    f"{payload[:30]!r}, expected {expected and expected[0][:30]!r}"
                )
                self.sendClose(1000)
                return
            self.received += 1
            stats.messages_checked += 1
            self.send_next()

        def onClose(self, wasClean, code, reason):
            self.factory.ended(self, wasClean, code, reason)

    class SessionFactory(WebSocketClientFactory):
        protocol = Session

        def __init__(self, sid: int):
            super().__init__(f"ws://127.0.0.1:{proxy_port}/soak?sid={sid}")
            self.sid = sid
            self.count = args.messages
            self.problem = None
            self.backend_port: Optional[int] = None
            self.done = False
            self.opened_at = time.time()
            self.setProtocolOptions(failByDrop=False, closeHandshakeTimeout=5)

        def ended(self, protocol, was_clean, code, reason):
            if self.done:
                return
            self.done = True
            stats.in_flight -= 1
            received = getattr(protocol, "received", None)
            if self.problem:
                stats.failures.append(self.problem)
            elif received is None:
                status = str(getattr(protocol, "http_status_code", None) or reason)
                refused = next((c for c in ("502", "503", "504") if c in status), None)
                if refused and in_kill_window(time.time()):
                    stats.refused[refused] = stats.refused.get(refused, 0) + 1
                else:
                    stats.failures.append(f"session {self.sid}: handshake failed: {status}")
            elif received == self.count and code == 1000:
                stats.complete += 1
            elif code == 1011 and backend_killed(self.backend_port, self.opened_at, time.time()):
                stats.cut += 1
            else:
                stats.failures.append(
                    f"session {self.sid}: ended with {code} {reason!r} after "
                    f"{received}/{self.count} messages"
                )
            refill()

        def clientConnectionFailed(self, connector, reason):
            pass

    def open_session():
        stats.started += 1
        stats.in_flight += 1
        factory = SessionFactory(stats.started)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", proxy_port, timeout=10)
        d = endpoint.connect(factory)

        def failed(failure):
            if not factory.done:
                factory.done = True
                stats.in_flight -= 1
                stats.failures.append(f"session {factory.sid}: connect: {failure.value}")
                refill()

        d.addErrback(failed)

    def refill():
        while time.time() < stop_at and stats.in_flight < args.concurrency:
            open_session()
        if time.time() >= stop_at and stats.in_flight == 0 and reactor.running:
            reactor.stop()

    def chaos():
        now = time.time()
        for backend in backends:
            if backend.down_since is not None and now - backend.down_since >= args.down_for:
                backend.start()
                # This backend's own outage ends, whichever was killed last.
                kill_windows[backend.window] = (kill_windows[backend.window][0], time.time())
                backend.window = None
        if args.kill_every and now < stop_at - args.down_for - 2:
            up = [b for b in backends if b.down_since is None]
            if len(up) > 1 and int(now - start) % args.kill_every == 0 and now - start > 2:
                victim = rng.choice(up)
                victim.window = len(kill_windows)
                kill_windows.append((now, now + args.down_for + 5))
                killed_at.setdefault(victim.port, []).append(now)
                victim.kill()
        if args.reload_every and now >= next_reload[0] and now < stop_at - 1:
            next_reload[0] += args.reload_every
            reload_proxy(proxy_pid, config, reloads)

    def sample():
        rss.append((time.time() - start, rss_kib(proxy_pid)))

    def watchdog():
        if time.time() > stop_at + 30 and reactor.running:
            stats.failures.append(f"{stats.in_flight} sessions still open 30 s after the end")
            reactor.stop()

    task.LoopingCall(chaos).start(1.0, now=False)
    task.LoopingCall(sample).start(args.sample_every)
    task.LoopingCall(watchdog).start(5.0, now=False)
    reactor.callWhenRunning(refill)
    reactor.run()
    return {"stats": stats, "rss": rss, "elapsed": time.time() - start, "reloads": reloads}


class Reconfigurer:
    """Writes tap.conf for each reload: new weights, then a broken file, in turn."""

    def __init__(self, path: str, listen_port: int, backends: list[Backend]) -> None:
        self.path = path
        self.listen_port = listen_port
        self.backends = backends
        self.count = 0

    def write(self) -> bool:
        """Write the next file; True when it is a valid one."""
        self.count += 1
        valid = self.count % 2 == 1
        idle = (self.count // 2) % len(self.backends)
        weights = [0 if i == idle else 10 + 10 * i for i in range(len(self.backends))]
        text = proxy_config(self.listen_port, self.backends, "256KiB", weights)
        if not valid:
            text = text[: text.index("weight = ") + len("weight = ")]
        temporary = self.path + ".new"
        with open(temporary, "w") as f:
            f.write(text)
        os.replace(temporary, self.path)
        return valid


def reload_proxy(pid: int, config: Reconfigurer, reloads: dict) -> None:
    """Rewrite tap.conf (valid and broken in turn) and send SIGHUP."""
    valid = config.write()
    reloads["applied" if valid else "refused"] += 1
    os.kill(pid, signal.SIGHUP)


def proxy_config(
    listen_port: int, backends: list[Backend], buffer: str, weights: Optional[list] = None
) -> str:
    weights = weights or [10] * len(backends)
    addresses = ", ".join(
        f'{{ address = "127.0.0.1:{b.port}", weight = {w} }}' for b, w in zip(backends, weights)
    )
    return (
        f'[[listener]]\nname = "soak"\nbind = "tcp:{listen_port}:interface=127.0.0.1"\n'
        f'session_buffer = "{buffer}"\n'
        f'[[listener.rule]]\ntarget_group = "pool"\n'
        f"[target_group.pool]\nbackends = [{addresses}]\nretries = 2\n"
        f'connect_timeout = "1s"\n'
    )


def read_logs(path: str) -> str:
    """The proxy's whole log: twistd rotates ``--logfile`` every MB into ``path.1``, ``.2``..."""
    rotated = []
    index = 1
    while os.path.exists(f"{path}.{index}"):
        rotated.append(f"{path}.{index}")
        index += 1
    text = []
    for name in [*reversed(rotated), path]:
        with open(name, encoding="utf-8", errors="replace") as f:
            text.append(f.read())
    return "".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=150, help="sessions at a time")
    parser.add_argument("--messages", type=int, default=20, help="messages per session")
    parser.add_argument("--backends", type=int, default=3)
    parser.add_argument("--kill-every", type=int, default=15, help="seconds; 0: never")
    parser.add_argument("--down-for", type=float, default=3.0)
    parser.add_argument(
        "--reload-every",
        type=float,
        default=10,
        help="seconds between reloads (valid and broken tap.conf in turn); 0: never",
    )
    parser.add_argument("--sample-every", type=float, default=2.0, help="RSS sampling period")
    parser.add_argument("--rss-slack", type=float, default=0.15, help="allowed RSS growth")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        run_backend(args.backend)
        return 0
    # Killed (timeout, kill): unwind, so the proxy and the backends are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    workdir = tempfile.mkdtemp(prefix="clbproxy-soak-")
    backends = [Backend(free_port()) for _ in range(args.backends)]
    for backend in backends:
        backend.start()
    listen_port = free_port()
    config = os.path.join(workdir, "soak.conf")
    with open(config, "w") as f:
        f.write(proxy_config(listen_port, backends, "256KiB"))
    log_path = os.path.join(workdir, "proxy.log")
    proxy = subprocess.Popen(
        [sys.executable, "-c", TWISTD, "-n", "--pidfile=", f"--logfile={log_path}"]
        + ["clbproxy", "--config", config],
        env=dict(os.environ, PYTHONPATH=REPOSITORY),
        cwd=workdir,
    )
    try:
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen_port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proxy.poll() is not None:
                    raise RuntimeError("the proxy did not start") from None
                time.sleep(0.1)
        args.config_path, args.listen_port = config, listen_port
        result = run_load(args, listen_port, backends, proxy.pid)
        proxy_alive = proxy.poll() is None
    finally:
        proxy.terminate()
        proxy.wait(10)
        for backend in backends:
            if backend.process and backend.process.poll() is None:
                backend.process.terminate()
                backend.process.wait(10)

    stats: Stats = result["stats"]
    log_text = read_logs(log_path)
    alarms = [line for line in log_text.splitlines() if any(a in line for a in LOG_ALARMS)]
    samples = [kib for _, kib in result["rss"]]
    quarter = max(1, len(samples) // 4)
    second_quarter = samples[quarter : 2 * quarter] or samples
    last_quarter = samples[-quarter:]
    base = max(second_quarter)
    growth = (max(last_quarter) - base) / base if base else 0.0
    problems = list(stats.failures[:20])
    if len(stats.failures) > 20:
        problems.append(f"... {len(stats.failures) - 20} more")
    if growth > args.rss_slack:
        problems.append(f"proxy RSS grew {growth:.1%} from the second to the last quarter")
    if alarms:
        problems.append(f"{len(alarms)} alarming log lines, first: {alarms[0][:200]}")
    if not proxy_alive:
        problems.append("the proxy process died")
    reloads = result["reloads"]
    applied = log_text.count("[clbproxy.ops.reload#info] reloaded ")
    refused = log_text.count("the running configuration keeps serving")
    if (applied, refused) != (reloads["applied"], reloads["refused"]):
        problems.append(
            f"reloads: sent {reloads['applied']} valid and {reloads['refused']} broken, "
            f"log shows {applied} applied and {refused} refused"
        )
    summary = {
        "duration_s": round(result["elapsed"], 1),
        "sessions": stats.started,
        "complete": stats.complete,
        "cut_by_backend_kill": stats.cut,
        "refused_while_backend_down": stats.refused,
        "failed": len(stats.failures),
        "messages_checked": stats.messages_checked,
        "reloads": {"applied": applied, "refused": refused},
        "rss_kib": {
            "first": samples[0] if samples else None,
            "max_second_quarter": base,
            "max_last_quarter": max(last_quarter) if last_quarter else None,
            "last": samples[-1] if samples else None,
            "growth": round(growth, 4),
        },
        "log_alarms": len(alarms),
        "problems": problems,
        "log": log_path,
    }
    print(json.dumps(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
