"""Run the Autobahn WebSocket testsuite through clbproxy, in both directions.

Two runs, each selected with ``--mode``:

``client``
    ``wstest -m fuzzingclient`` -> clbproxy -> ``echo_server.py``: the testsuite plays the
    browser, so this tests the proxy's client-facing (server) side.
``server``
    ``echo_client.py`` -> clbproxy -> ``wstest -m fuzzingserver``: the testsuite plays the
    backend, so this tests the proxy's backend-facing (client) side.

With ``--direct`` the proxy is left out (testsuite straight against the echo server, echo
client straight against the fuzzing server).  That validates the harness: Autobahn against
itself must come out all green.

A case passes when both its ``behavior`` and ``behaviorClose`` in the testsuite's
``index.json`` are OK, NON-STRICT or INFORMATIONAL.  The exit status is 0 only when every
case passed and as many cases ran as the testsuite announced, so a crashed run is red.
The last line printed is ``N passed, N failed`` over the runs done.

Everything listens on 127.0.0.1, on ports the OS hands out.  Each subprocess runs in its own
process group and is killed when the run ends, fails, times out or is interrupted.  Under
``--reports`` (default ``reports/autobahn``, git-ignored) each run gets a directory
(``fuzzingclient/``, ``fuzzingserver/``) with the testsuite's HTML report (``index.html``),
``index.json``, the generated spec and ``tap.conf``, and one log file per subprocess; the
logs' tails are printed when a run fails.

Case patterns (``--cases``, ``--exclude``) are wstest's: ``*`` matches anything and a pattern
with a ``*`` matches case ids that *start* like it, so ``12.*.1`` also selects ``12.1.10`` to
``12.1.18``; a pattern without ``*`` is one exact case id.

Duration: cases 12.* and 13.* (permessage-deflate, 1000 echoed messages each) are nearly all
of it, and 80 % of those in the sub-cases with 64 and 128 KiB messages, which
``--skip-large-deflate`` leaves out and ``--split-large-deflate`` runs in one direction
each.  The testsuite's own Python (wstest and the echo peers) is most of the CPU, the proxy
about a sixth; each direction keeps about one core busy, so ``--parallel`` (both
directions at once) nearly halves the wall time on two cores or more.  Measured on a slow
2-core machine (2026-12), via clbproxy with deflate end to end, ``--parallel``: all 517 cases
both ways 28 min (the fuzzing client 1670 s of its 1800 s limit, hence the split in CI);
``--mode client --cases '12.2.*'`` straight to the echo server, 18 cases, 3.5 min.  Each
run is a ping-pong (wstest, proxy and echo peer take turns) that keeps about one core busy, so
``scripts/test`` runs the wss run beside the two ws runs.  Echo peers in Node's ``ws`` instead
of Autobahn's were tried (2026-12): the ws runs took as long (latency, not the peers' CPU, is
the limit), and ``ws`` 8.23 fails cases 9.3.1, 9.3.2, 9.4.1 and 9.4.2 (4 MiB messages in 64
and 256-byte fragments: no echo within 100 s) even without the proxy, so the peers stay
Autobahn's.

Requirements: the repository's ``.venv`` (run this file with it) and the Python 2.7
testsuite in ``.venv27`` (``scripts/setup-wstest.sh`` creates it).

Examples, from the repository root::

    .venv/bin/python tests/conformance/run.py                     # both modes, all cases
    .venv/bin/python tests/conformance/run.py --direct            # harness self-check
    .venv/bin/python tests/conformance/run.py --parallel --skip-large-deflate  # ~3 min
    .venv/bin/python tests/conformance/run.py --mode client --cases '1.*,5.*,7.*'
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WSTEST = REPO / ".venv27" / "bin" / "wstest"
PYTHON27 = REPO / ".venv27" / "bin" / "python"

PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
DEFAULT_CASES = ",".join(f"{n}.*" for n in range(1, 14))
#: ``twistd -n clbproxy`` without a pid file (runs may overlap).  Not ``python -m twisted``:
#: that is the ``twist`` runner, which knows no ``-n`` and skips ``privilegedStartService``.
DEFAULT_PROXY_CMD = (
    "{python} -c 'from twisted.scripts.twistd import run; run()' "
    "-n --pidfile= clbproxy --config {config}"
)
#: Seconds a run may take before it is killed and counted as failed: a bound for hangs, with
#: room for all cases through the proxy on a slow machine.
RUN_TIMEOUT = 30 * 60
#: Seconds a server process has to start accepting TCP connections.
STARTUP_TIMEOUT = 30
#: Seconds to wait for the fuzzing server's ``index.json`` after the testee client finished.
REPORT_TIMEOUT = 15
LOG_TAIL_LINES = 40

#: ``wstest`` with its listening sockets bound to 127.0.0.1 rather than every interface (it has
#: no option for that), and without the fuzzing server's check that the Host header names its
#: own port: through the proxy, Host names the proxy's port.  Python 2 code.
WSTEST_LOOPBACK = """\
import sys
from autobahntestsuite import wstest, fuzzing
_listen = fuzzing.listenWS
def listen_loopback(factory, contextFactory=None):
    factory.externalPort = None
    return _listen(factory, contextFactory, interface="127.0.0.1")
fuzzing.listenWS = listen_loopback
sys.argv[0] = "wstest"
sys.exit(wstest.run())
"""

#: The permessage-deflate sub-cases with 64 KiB and 128 KiB messages: about 80 % of the
#: time of 12.* and 13.*, which are nearly all of a run's time.
LARGE_DEFLATE_CASES = [
    f"{group}.*.{sub}" for group in (12, 13) for sub in (9, 10, 14, 15, 16, 17, 18)
]

#: The fuzzing server's share of them with ``--split-large-deflate``: 13.*'s, and 12.*.9 so
#: that the two directions take about as long (12.*'s are the slower ones through the proxy).
SERVER_LARGE_DEFLATE = [case for case in LARGE_DEFLATE_CASES if case.startswith("13.")]
SERVER_LARGE_DEFLATE.append("12.*.9")

#: With ``--split-large-deflate`` each direction leaves out the other's share of them.
SPLIT_LARGE_DEFLATE = {
    "client": SERVER_LARGE_DEFLATE,
    "server": [case for case in LARGE_DEFLATE_CASES if case not in SERVER_LARGE_DEFLATE],
}

CASE_COUNT_LINE = re.compile(rb"Ok, will run (\d+) test cases")


class HarnessError(Exception):
    """A run could not be carried out (a process died, a port never opened, a timeout)."""


@dataclass
class RunResult:
    """The outcome of one testsuite run."""

    name: str
    outdir: Path
    seconds: float = 0.0
    expected: Optional[int] = None
    cases: dict = field(default_factory=dict)
    error: Optional[str] = None
    logs: list = field(default_factory=list)

    def failing(self) -> list[str]:
        """Case ids whose behavior or behaviorClose is not a pass, in case order."""
        return [case for case in sorted_cases(self.cases) if not passes(self.cases[case])]

    @property
    def missing(self) -> int:
        """Cases announced by the testsuite but absent from its report."""
        if self.expected is None:
            return 0
        return max(self.expected - len(self.cases), 0)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.expected is not None
            and len(self.cases) == self.expected
            and not self.failing()
        )

    @property
    def passed(self) -> int:
        return len(self.cases) - len(self.failing())

    @property
    def failed(self) -> int:
        """Failing plus missing cases; a run that broke without either counts as one."""
        failed = len(self.failing()) + self.missing
        return failed or (0 if self.ok else 1)


def passes(entry: dict) -> bool:
    return entry.get("behavior") in PASSING and entry.get("behaviorClose") in PASSING


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def sorted_cases(cases: dict) -> list[str]:
    return sorted(cases, key=case_key)


class Supervisor:
    """Starts subprocesses in their own process groups, each logging to a file; kills them all.

    Use it as a context manager: leaving the block for any reason (a result, an exception,
    Ctrl-C) terminates every process group it started.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.processes: dict[str, subprocess.Popen] = {}
        self._stopped = False
        self._lock = threading.Lock()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()

    def log_path(self, name: str) -> Path:
        return self.logdir / f"{name}.log"

    def start(self, name: str, argv: list, env: dict, cwd: Path) -> subprocess.Popen:
        with self._lock, open(self.log_path(name), "wb") as log_file:
            if self._stopped:
                raise HarnessError(f"not starting {name}: the run was stopped")
            process = subprocess.Popen(
                [str(arg) for arg in argv],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
            self.processes[name] = process
        return process

    def check_alive(self, name: str) -> None:
        code = self.processes[name].poll()
        if code is not None:
            raise HarnessError(f"{name} exited early with status {code}")

    def wait(self, name: str, deadline: float) -> int:
        """Wait for ``name`` to exit by ``deadline``; its exit status."""
        try:
            return self.processes[name].wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{name} still running when the run's time was up") from None

    def stop(self, name: str) -> None:
        """Terminate one process group now."""
        process = self.processes[name]
        signal_group(process, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        """Terminate every process group, killing those still there after 5 seconds."""
        with self._lock:
            self._stopped = True
            processes = list(self.processes.values())
        for process in processes:
            signal_group(process, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                signal_group(process, signal.SIGKILL)
                process.wait()


def signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def print_tail(path: Path) -> None:
    lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    print(f"  --- last {len(lines)} lines of {path} ---")
    for line in lines:
        print(f"  | {line}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(supervisor: Supervisor, name: str, port: int, deadline: float) -> None:
    """Return once ``name`` accepts TCP connections on ``port``."""
    give_up = min(deadline, time.monotonic() + STARTUP_TIMEOUT)
    while time.monotonic() < give_up:
        supervisor.check_alive(name)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise HarnessError(f"{name} did not accept connections on 127.0.0.1:{port}")


def python3_env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def python27_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def proxy_config(
    listen_port: int,
    backend_port: int,
    tls_dir: Optional[Path] = None,
    deflate: str = "end_to_end",
) -> str:
    """A tap.conf with one listener forwarding everything to one backend.

    With ``tls_dir`` the listener is HTTPS with a self-signed certificate kept there;
    ``deflate`` is its ``websocket_deflate``.
    """
    tls = f'\n  [listener.tls]\n  self_signed = true\n  state_directory = "{tls_dir}"\n'
    protocol = "https" if tls_dir else "http"
    return f"""\
[[listener]]
name = "conformance"
protocol = "{protocol}"
bind = "tcp:{listen_port}:interface=127.0.0.1"
websocket_deflate = "{deflate}"
{tls if tls_dir else ""}
  [[listener.rule]]
  path = "/"
  target_group = "echo"

[target_group.echo]
backends = [ "127.0.0.1:{backend_port}" ]
"""


def start_proxy(options, supervisor: Supervisor, outdir: Path, backend_port: int, deadline):
    """Start clbproxy in front of ``backend_port``; the port it listens on."""
    port = free_port()
    config = outdir / "tap.conf"
    tls_dir = outdir / "tls" if options.scheme == "wss" else None
    config.write_text(proxy_config(port, backend_port, tls_dir, options.deflate))
    argv = [
        arg.format(python=sys.executable, config=config) for arg in shlex.split(options.proxy_cmd)
    ]
    supervisor.start("clbproxy", argv, python3_env(), REPO)
    wait_for_port(supervisor, "clbproxy", port, deadline)
    return port


def write_spec(outdir: Path, name: str, spec: dict) -> Path:
    path = outdir / name
    path.write_text(json.dumps(spec, indent=2))
    return path


def agent_name(options) -> str:
    return "direct" if options.direct else "clbproxy"


def run_fuzzingclient(options, supervisor: Supervisor, outdir: Path, deadline: float) -> None:
    """wstest fuzzingclient -> [clbproxy ->] echo_server.py."""
    echo_port = free_port()
    supervisor.start(
        "echo_server",
        [sys.executable, HERE / "echo_server.py", "--port", echo_port],
        python3_env(),
        REPO,
    )
    wait_for_port(supervisor, "echo_server", echo_port, deadline)
    port = echo_port
    if not options.direct:
        port = start_proxy(options, supervisor, outdir, echo_port, deadline)
    spec = write_spec(
        outdir,
        "fuzzingclient.json",
        {
            "outdir": str(outdir),
            "servers": [
                {"agent": agent_name(options), "url": f"{options.scheme}://127.0.0.1:{port}"}
            ],
            "cases": options.cases,
            "exclude-cases": excluded(options, "client"),
            "exclude-agent-cases": {},
        },
    )
    supervisor.start("wstest", [WSTEST, "-m", "fuzzingclient", "-s", spec], python27_env(), outdir)
    status = supervisor.wait("wstest", deadline)
    if status != 0:
        raise HarnessError(f"wstest fuzzingclient exited with status {status}")
    for name in ("echo_server", "clbproxy"):
        if name in supervisor.processes:
            supervisor.check_alive(name)


def excluded(options, mode: str) -> list[str]:
    """The case patterns ``mode``'s run leaves out."""
    if options.split_large_deflate:
        return options.exclude + SPLIT_LARGE_DEFLATE[mode]
    return options.exclude


def run_fuzzingserver(options, supervisor: Supervisor, outdir: Path, deadline: float) -> None:
    """echo_client.py -> [clbproxy ->] wstest fuzzingserver."""
    fuzz_port = free_port()
    spec = write_spec(
        outdir,
        "fuzzingserver.json",
        {
            "url": f"ws://127.0.0.1:{fuzz_port}",
            "outdir": str(outdir),
            "cases": options.cases,
            "exclude-cases": excluded(options, "server"),
            "exclude-agent-cases": {},
        },
    )
    argv = [PYTHON27, "-c", WSTEST_LOOPBACK, "-m", "fuzzingserver", "-s", spec, "--webport", 0]
    supervisor.start("wstest", argv, python27_env(), outdir)
    wait_for_port(supervisor, "wstest", fuzz_port, deadline)
    port = fuzz_port
    if not options.direct:
        port = start_proxy(options, supervisor, outdir, fuzz_port, deadline)
    client = echo_client_argv(port, agent_name(options))
    supervisor.start("echo_client", client, python3_env(), REPO)
    try:
        status = supervisor.wait("echo_client", deadline)
    except HarnessError:
        save_partial_reports(supervisor, fuzz_port, agent_name(options), outdir)
        raise
    if status != 0:
        raise HarnessError(f"echo_client exited with status {status}")
    wait_for_file(outdir / "index.json", time.monotonic() + REPORT_TIMEOUT)


def echo_client_argv(port: int, agent: str, *extra: str) -> list:
    url = f"ws://127.0.0.1:{port}"
    return [sys.executable, HERE / "echo_client.py", "--url", url, "--agent", agent, *extra]


def save_partial_reports(supervisor: Supervisor, fuzz_port: int, agent: str, outdir: Path):
    """Have the fuzzing server write reports of the cases done when the run ran out of time.

    Best effort, straight to the fuzzing server: the reasons for the timeout are reported
    anyway, these reports only show how far the run came and what failed on the way.
    """
    supervisor.stop("echo_client")
    argv = echo_client_argv(fuzz_port, agent, "--update-reports-only")
    supervisor.start("echo_client_reports", argv, python3_env(), REPO)
    give_up = time.monotonic() + REPORT_TIMEOUT
    try:
        supervisor.wait("echo_client_reports", give_up)
        wait_for_file(outdir / "index.json", give_up)
    except HarnessError:
        pass


def wait_for_file(path: Path, deadline: float) -> None:
    while not path.exists():
        if time.monotonic() > deadline:
            raise HarnessError(f"{path} was not written")
        time.sleep(0.2)


RUNS = {
    "client": ("fuzzingclient", run_fuzzingclient),
    "server": ("fuzzingserver", run_fuzzingserver),
}


def announced_case_count(log_path: Path) -> Optional[int]:
    """The number of cases wstest said it would run, from its log."""
    if not log_path.exists():
        return None
    match = CASE_COUNT_LINE.search(log_path.read_bytes())
    return int(match.group(1)) if match else None


def read_index(outdir: Path, agent: str) -> dict:
    """The ``index.json`` entries of ``agent``, or ``{}`` when there is no report."""
    path = outdir / "index.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get(agent, {})


def execute(options, mode: str, supervisor: Supervisor) -> RunResult:
    """Carry out one run with ``supervisor`` and collect its results; never raises HarnessError."""
    name, run = RUNS[mode]
    outdir = supervisor.logdir
    result = RunResult(name=name, outdir=outdir)
    started = time.monotonic()
    with supervisor:
        try:
            run(options, supervisor, outdir, started + options.timeout)
        except HarnessError as error:
            result.error = str(error)
    result.seconds = time.monotonic() - started
    result.expected = announced_case_count(supervisor.log_path("wstest"))
    result.cases = read_index(outdir, agent_name(options))
    result.logs = [supervisor.log_path(name) for name in supervisor.processes]
    if result.error is None and result.expected is None:
        result.error = "wstest never announced how many cases it would run"
    return result


def prepare_outdir(options, mode: str) -> Path:
    """The run's report directory, without a stale ``index.json`` that could pass for new."""
    outdir = (options.reports / RUNS[mode][0]).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "index.json").unlink(missing_ok=True)
    return outdir


def execute_all(options, modes: tuple[str, ...]) -> list[RunResult]:
    """The runs of ``modes``, one after the other or, with ``--parallel``, at the same time.

    Whatever ends this early (Ctrl-C, SIGTERM) first stops every run's processes, so that
    no worker thread is left waiting on them.
    """
    supervisors = [Supervisor(prepare_outdir(options, mode)) for mode in modes]
    workers = len(modes) if options.parallel else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = [pool.submit(execute, options, *job) for job in zip(modes, supervisors)]
        try:
            return [run.result() for run in runs]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for supervisor in supervisors:
                supervisor.stop_all()
            raise


def case_detail(outdir: Path, entry: dict) -> str:
    """What went wrong in one case, from its JSON report."""
    try:
        report = json.loads((outdir / entry["reportfile"]).read_text())
    except (KeyError, OSError, ValueError):
        return ""
    result = " ".join(str(report.get("result", "")).split())
    close = " ".join(str(report.get("resultClose", "")).split())
    return f"{result[:160]} / close: {close[:160]}"


def duration_by_group(cases: dict) -> Counter:
    """Milliseconds spent per top-level case group ("1", ..., "13")."""
    spent: Counter = Counter()
    for case_id, entry in cases.items():
        spent[case_id.split(".")[0]] += entry.get("duration", 0)
    return spent


def format_counts(counter: Counter) -> str:
    return ", ".join(f"{key} {count}" for key, count in counter.most_common())


def print_summary(result: RunResult, via: str) -> None:
    cases = result.cases
    verdict = "ok" if result.ok else "FAILED"
    print(
        f"== {result.name} {via}: {verdict}, {len(cases)}/{result.expected or '?'} cases, "
        f"{result.failed} failed, {result.seconds:.1f} s wall"
    )
    if result.error:
        print(f"  error: {result.error}")
    if result.missing:
        print(f"  missing: {result.missing} announced cases are not in index.json")
    if cases:
        behaviors = Counter(entry.get("behavior") for entry in cases.values())
        closes = Counter(entry.get("behaviorClose") for entry in cases.values())
        print(f"  behavior: {format_counts(behaviors)}")
        print(f"  behaviorClose: {format_counts(closes)}")
        print(f"  time by group: {format_durations(duration_by_group(cases))}")
    for case_id in result.failing():
        entry = cases[case_id]
        print(
            f"  FAIL {case_id}: behavior={entry.get('behavior')} "
            f"behaviorClose={entry.get('behaviorClose')} "
            f"remoteCloseCode={entry.get('remoteCloseCode')} "
            f"{case_detail(result.outdir, entry)}"
        )
    print(f"  report: {result.outdir / 'index.html'}")
    if not result.ok:
        for log_path in result.logs:
            print_tail(log_path)


def format_durations(spent: Counter) -> str:
    total = sum(spent.values()) or 1
    parts = [
        f"{group}.* {ms / 1000:.1f}s ({100 * ms / total:.0f}%)"
        for group, ms in sorted(spent.items(), key=lambda item: int(item[0]))
    ]
    return ", ".join(parts)


def parse_cases(text: str) -> list[str]:
    """Comma-separated wstest case patterns such as ``1.*,9.1.2``."""
    cases = [case.strip() for case in text.split(",") if case.strip()]
    for case in cases:
        if not re.fullmatch(r"[0-9*]+(\.[0-9*]+)*", case):
            raise argparse.ArgumentTypeError(f"not a case pattern: {case!r}")
    return cases


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="See the module docstring of tests/conformance/run.py for details.",
    )
    parser.add_argument("--mode", choices=("client", "server", "both"), default="both")
    parser.add_argument(
        "--cases",
        type=parse_cases,
        default=DEFAULT_CASES,
        help="comma-separated wstest case patterns, prefix matches (default: %(default)s)",
    )
    parser.add_argument(
        "--exclude",
        type=parse_cases,
        default="",
        help="comma-separated case patterns to leave out, e.g. '12.*.15,13.*.15'",
    )
    parser.add_argument(
        "--skip-large-deflate",
        action="store_true",
        help="exclude the 12.*/13.* sub-cases with 64 and 128 KiB messages "
        "(*.*.9, *.*.10, *.*.14 to *.*.18): about 80%% less time",
    )
    parser.add_argument(
        "--split-large-deflate",
        action="store_true",
        help="with --mode both, run each of those sub-cases in one direction only: 12.* "
        "through the fuzzing client, 13.* and 12.*.9 through the fuzzing server (every "
        "other case runs both ways); about half the wall time with --parallel",
    )
    parser.add_argument(
        "--direct", action="store_true", help="leave the proxy out (validates the harness)"
    )
    parser.add_argument(
        "--scheme",
        choices=("ws", "wss"),
        default="ws",
        help="wss: the testsuite connects over TLS to an HTTPS listener (--mode client only)",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=REPO / "reports" / "autobahn",
        help="report directory (default: reports/autobahn in the repository)",
    )
    parser.add_argument(
        "--proxy-cmd",
        default=DEFAULT_PROXY_CMD,
        help="command starting the proxy, run from the repository root; {python} and "
        "{config} are replaced (default: %(default)s)",
    )
    parser.add_argument(
        "--deflate",
        choices=("end_to_end", "per_hop"),
        default="end_to_end",
        help="the proxy's websocket_deflate: end_to_end (compressed frames pass on checked, "
        "the fast path) or per_hop (each hop compresses on its own, Autobahn's path)",
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="with --mode both, run both directions at the same time (needs 2+ cores)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=RUN_TIMEOUT,
        help="seconds one run may take (default: %(default)s)",
    )
    options = parser.parse_args(argv)
    if not options.cases:
        parser.error("--cases: no case patterns given")
    if options.skip_large_deflate:
        options.exclude += LARGE_DEFLATE_CASES
    if options.scheme == "wss" and (options.mode != "client" or options.direct):
        parser.error("--scheme wss needs --mode client and the proxy")
    if not WSTEST.exists():
        parser.error(f"{WSTEST} is missing: run scripts/setup-wstest.sh")
    return options


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so every process group is cleaned up on the way out."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    terminate_on_sigterm()
    modes = ("client", "server") if options.mode == "both" else (options.mode,)
    via = "direct" if options.direct else "via clbproxy"
    results = execute_all(options, modes)
    for result in results:
        print_summary(result, via)
    passed = sum(result.passed for result in results)
    failed = sum(result.failed for result in results)
    print(f"{passed} passed, {failed} failed")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
