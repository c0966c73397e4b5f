"""What every benchmark scenario shares: ports, processes, CPU and memory readings, targets.

The proxy under test runs on ``PROXY_CPU``, the echo backend and the load generators
on ``LOAD_CPU`` (``taskset``).  CPU seconds and RSS are read from ``/proc`` for a
process and all its descendants (nginx and HAProxy workers, clbproxy's workers).
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NODE = shutil.which("node") or "node"
LOAD = str(HERE / "load.js")
PROXY_CPU = "0"
LOAD_CPU = "1"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
#: Names of the framework baselines' rows (bench/calibration.py).
CALIBRATION = "calib-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (nginx and HAProxy workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


class Target:
    """One thing the load is pointed at: a proxy process (or none, for direct).

    A ``wss`` target terminates TLS (the bench's self-signed certificate) in front of
    the same plain echo backend; its row is named ``<proxy>-wss``.  A ``deflate``
    target's clients offer permessage-deflate (and compress every message, as
    browsers do); the backend declines it.  ``ws`` and ``http`` say which
    scenarios it takes part in (the framework baselines relay one or the other).
    """

    def __init__(
        self,
        name: str,
        port: int,
        pid: Optional[int] = None,
        scheme: str = "ws",
        deflate: bool = False,
        ws: bool = True,
        http: bool = True,
    ) -> None:
        self.name = name
        self.port = port
        self.pid = pid
        self.scheme = scheme
        self.deflate = deflate
        self.ws = ws
        self.http = http
        #: The certificate kind of a WSS handshake target (``bench/wss.py``), else None.
        self.cert: Optional[str] = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1, shared by every WSS listener.

    The same one clbproxy makes for its demo HTTPS listener.  Returns the
    certificate and key files (PEM).  The load generator does not verify it, so
    one certificate is enough and the three proxies serve identical handshakes.
    """
    from clbproxy.net.certificates import ensure_self_signed, self_signed_paths

    ensure_self_signed(str(directory))
    cert, key = self_signed_paths(str(directory))
    return Path(cert), Path(key)


def clbproxy_argv(python: str, config: Path, log: Path) -> list[str]:
    """``twistd -n clbproxy --config config`` run by ``python``, its log in ``log``."""
    return [
        python,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "--logfile",
        str(log),
        "clbproxy",
        "--config",
        str(config),
    ]


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def start(argv: list[str], log: Path, cwd: Optional[Path] = None) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        start_new_session=True,
    )


def cpu_seconds_fine(pid: int) -> float:
    """As :func:`cpu_seconds`, from the scheduler's nanosecond counters (``schedstat``).

    For long windows of little work (the scale curve's idle sessions), where
    ``/proc/PID/stat``'s clock ticks (10 ms) are too coarse.  Threads that ended
    in the window are not counted.
    """
    total = 0
    for p in process_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                total += int(Path(f"/proc/{p}/task/{task}/schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def absolute(python: str) -> str:
    """``python`` as an absolute path when it names a file relative to here, else as it is."""
    return str(Path(python).absolute()) if os.sep in python and Path(python).exists() else python


def versions(python: str) -> str:
    return subprocess.run(
        [
            python,
            "-c",
            "import sys, twisted, autobahn; print(sys.version.split()[0], "
            "sys.implementation.name, twisted.__version__, "
            "autobahn.__version__)",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()


def implementation(python: str) -> str:
    """``pypy`` or ``cpython``: the name of the rows run with that interpreter."""
    return subprocess.run(
        [python, "-c", "import sys; print(sys.implementation.name)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def raise_fd_limit(n: int) -> int:
    """``ulimit -n n`` as far as the hard limit allows (raising it needs CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
