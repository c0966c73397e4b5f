"""Python heap per idle relayed WebSocket session, measured with tracemalloc.

Runs the proxy in this process (the whole service, as twistd would build it)
with tracemalloc on, the echo backend and the idle clients as Node processes
(``bench/load.js``), and prints the bytes each idle session holds after
``gc.collect()``, grouped by the source line that allocated them::

    .venv/bin/python bench/heap.py [--sessions 3000] [--tunnel] [--frames 1] [--top 25]

RSS is not measured here (tracemalloc itself costs memory); ``bench/run.py
--only idle`` measures RSS.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CLBPROXY_CONF, LOAD, NODE, free_port  # noqa: E402  (bench/run.py, beside this file)


def type_counts() -> dict:
    """Live garbage-collected objects per type name."""
    counts: dict = {}
    for obj in gc.get_objects():
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _describe(obj) -> str:
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if isinstance(obj, dict):
        return f"{kind} keys={sorted(map(str, obj))[:12]}"
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{kind} {obj.__qualname__}"
    if isinstance(obj, (list, tuple)):
        return f"{kind} len={len(obj)} first={[type(x).__name__ for x in list(obj)[:4]]}"
    return kind


def inspect(before: dict, after: dict, n: int) -> list[str]:
    """For each type that grew by about one per session: a few samples and what refers to them."""
    lines = []
    grown = {k for k in after if after[k] - before.get(k, 0) >= n // 2}
    samples: dict = {}
    for obj in gc.get_objects():
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        if name in grown:
            found = samples.setdefault(name, [])
            if len(found) < 400:
                found.append(obj)
    for objs in samples.values():
        kinds: dict = {}
        for obj in objs[-200:]:
            key = _describe(obj)
            kinds[key] = kinds.get(key, 0) + 1
        for key, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]:
            lines.append(f"{count:4d}/200 {key}")
        obj = objs[-1]
        for ref in gc.get_referrers(obj)[:4]:
            if ref is objs or ref is samples:
                continue
            lines.append(f"      held by {_describe(ref)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--tunnel", action="store_true")
    parser.add_argument("--frames", type=int, default=1, help="traceback depth to group by")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--garbage", action="store_true", help="list the cyclic garbage left when measuring"
    )
    parser.add_argument(
        "--inspect", action="store_true", help="show what holds one object of each type that grew"
    )
    args = parser.parse_args()

    import resource
    import subprocess

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from twisted.internet import reactor

    from clbproxy.ops.preflight import load_checked
    from clbproxy.ops.services import build_service

    tmp = Path(tempfile.mkdtemp(prefix="clb-heap-"))
    backend = free_port()
    server = subprocess.Popen(
        [NODE, LOAD, "server", str(backend)], stdout=subprocess.DEVNULL, start_new_session=True
    )
    port = free_port()
    conf = tmp / "tap.conf"
    conf.write_text(
        CLBPROXY_CONF.format(
            workers=1,
            protocol="http",
            tls="",
            listener_extra="",
            port=port,
            backend=backend,
            rule_extra='  relay = "tunnel"\n' if args.tunnel else "",
        )
    )
    service = build_service(load_checked(str(conf)), reactor)
    service.privilegedStartService()
    service.startService()
    result: dict = {}

    def measure():
        clients = subprocess.Popen(
            [NODE, LOAD, "idle", f"ws://127.0.0.1:{port}/", str(args.sessions)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        gc.collect()
        result["types0"] = type_counts()
        tracemalloc.start(max(args.frames, 1))
        base = tracemalloc.take_snapshot()
        base_size = tracemalloc.get_traced_memory()[0]

        def wait_ready():
            line = clients.stdout.readline()
            if line.startswith("ready"):
                reactor.callFromThread(reactor.callLater, 1.0, done)
            else:
                reactor.callFromThread(reactor.stop)

        def done():
            uncollected, peak = tracemalloc.get_traced_memory()
            result["uncollected"] = (uncollected - base_size) / args.sessions
            result["peak"] = (peak - base_size) / args.sessions
            if args.garbage:
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                counts: dict = {}
                for obj in gc.garbage:
                    key = _describe(obj)
                    counts[key] = counts.get(key, 0) + 1
                result["garbage"] = sorted(counts.items(), key=lambda kv: -kv[1])[:40]
                gc.garbage.clear()
                gc.set_debug(0)
            gc.collect()
            size = tracemalloc.get_traced_memory()[0]
            result["types1"] = type_counts()
            if args.inspect:
                result["inspect"] = inspect(result["types0"], result["types1"], args.sessions)
            snap = tracemalloc.take_snapshot()
            result["per_session"] = (size - base_size) / args.sessions
            result["stats"] = snap.compare_to(base, "traceback" if args.frames > 1 else "lineno")
            tracemalloc.stop()
            clients.stdin.close()
            clients.wait(timeout=30)
            reactor.stop()

        threading.Thread(target=wait_ready, daemon=True).start()

    deadline = time.monotonic() + 20

    def wait_backend():
        try:
            socket.create_connection(("127.0.0.1", backend), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                reactor.stop()
                return
            reactor.callLater(0.1, wait_backend)
            return
        measure()

    reactor.callLater(0.1, wait_backend)
    try:
        reactor.run()
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    if "per_session" not in result:
        print("no result", file=sys.stderr)
        return 1
    n = args.sessions
    print(
        f"{'tunnel' if args.tunnel else 'relay'}: {result['per_session']:.0f} B per session "
        f"after gc.collect(), {result['uncollected']:.0f} B before it, "
        f"peak {result['peak']:.0f} B while the sessions opened"
    )
    for stat in result["stats"][: args.top]:
        where = "\n      ".join(str(frame) for frame in stat.traceback.format()[-2 * args.frames :])
        print(f"{stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f} blocks  {where}")
    before, after = result["types0"], result["types1"]
    grown = sorted(
        ((after[k] - before.get(k, 0), k) for k in after if after[k] - before.get(k, 0) >= n // 2),
        reverse=True,
    )
    for key, count in result.get("garbage", ()):
        print(f"garbage {count / n:6.2f} per session  {key}")
    for line in result.get("inspect", ()):
        print(line)
    print("live objects per session, by type (gc-tracked only):")
    for count, name in grown:
        print(f"  {count / n:6.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
