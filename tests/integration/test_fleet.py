"""Fleet mode end to end: a 3-member etcd on loopback and clbproxy instances that follow it.

Instances bind 127.0.0.2, .3 and .4 (their admin listeners too); etcd and the
backends listen on 127.0.0.1.  Every etcd member and instance is a child
process stopped by its PID in the cleanup (:mod:`tests.support.fleet`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

import treq
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from clbproxy.fleet.gateway import Gateway
from tests.support.etcd import EtcdCluster
from tests.support.fleet import CLUSTER, KEYS, Fleet, LoadLoop
from tests.support.network import ROOT

PUSHES = 20


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


class FleetTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        if shutil.which("etcd") is None:
            raise unittest.SkipTest("etcd is not installed (scripts/test installs etcd-server)")

    @defer.inlineCallbacks
    def test_pushes_reach_every_instance_within_a_second_with_no_failure_or_session_closed(self):
        fleet = Fleet(self)
        yield fleet.start()
        load = LoadLoop(fleet)
        yield load.start()
        latencies = []
        for number in range(1, PUSHES + 1):
            answer = f"v{number}"
            pushed = time.monotonic()
            revision = yield fleet.push(answer)
            times = yield defer.gatherResults(
                [fleet.wait_answer(instance, answer) for instance in fleet.instances]
            )
            latencies.extend(t - pushed for t in times)
            for instance in fleet.instances:
                status = yield fleet.wait_status(
                    instance, lambda f, r=revision: f["applied_revision"] == r, timeout=1
                )
                self.assertEqual(status["source"], "etcd")
            yield sleep(0.05)
        problems = yield load.stop()
        print(
            f"\nfleet: {PUSHES} pushes x {len(fleet.instances)} instances: apply latency "
            f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms; "
            f"{load.requests} HTTP requests, {load.sent} WebSocket messages per session"
        )
        self.assertEqual(problems, [])
        self.assertLess(max(latencies), 1.0)
        self.assertGreater(load.requests, 100)

    @defer.inlineCallbacks
    def test_a_bad_push_is_rejected_everywhere_and_shown_while_the_last_good_one_serves(self):
        fleet = Fleet(self)
        yield fleet.start()
        load = LoadLoop(fleet)
        yield load.start()
        bad = fleet.document("bad").replace(
            "[target_group.pool]", '[target_group.pool]\npolicy = "lotto"'
        )
        revision = yield fleet.push("", text=bad)
        for instance in fleet.instances:
            status = yield fleet.wait_status(instance, lambda f: f["rejected_revision"] == revision)
            self.assertIn("target_group.pool.policy", status["rejected_reason"])
            self.assertNotEqual(status["applied_revision"], revision)
            _, body = yield fleet.get(instance)
            self.assertEqual(body, "v0")
            self.assertIn(
                f"etcd:{KEYS.config.decode()}@{revision}: target_group.pool.policy", instance.log()
            )
        yield sleep(0.3)
        problems = yield load.stop()
        self.assertEqual(problems, [])
        # The next good push is applied.
        yield fleet.push("v1")
        for instance in fleet.instances:
            yield fleet.wait_answer(instance, "v1", timeout=1)

    @defer.inlineCallbacks
    def test_a_cookie_from_one_instance_reaches_the_same_backend_through_every_other(self):
        fleet = Fleet(self)
        yield fleet.start()
        first, *others = fleet.instances
        for _ in range(2):
            response, backend = yield fleet.get(first, "/")
            cookie = response.cookies()["clb_session"]
            for other in others:
                for _ in range(20):
                    _, seen = yield fleet.get(other, "/", cookies={"clb_session": cookie})
                    self.assertEqual(seen, backend)

    @defer.inlineCallbacks
    def test_without_etcd_instances_serve_and_a_restarted_one_starts_from_its_cache(self):
        fleet = Fleet(self)
        yield fleet.start()
        yield fleet.push("v1")
        for instance in fleet.instances:
            yield fleet.wait_answer(instance, "v1")
        first = fleet.instances[0]
        response, backend = yield fleet.get(first, "/")
        cookie = response.cookies()["clb_session"]
        fleet.etcd.stop_all()
        yield sleep(1.0)
        for instance in fleet.instances:
            _, body = yield fleet.get(instance)
            self.assertEqual(body, "v1")
        first.stop()
        first.start()
        status = yield fleet.wait_serving(first)
        self.assertEqual(status["fleet"]["source"], "cache")
        _, body = yield fleet.get(first)
        self.assertEqual(body, "v1")
        _, seen = yield fleet.get(first, "/", cookies={"clb_session": cookie})
        self.assertEqual(seen, backend)
        self.assertIn("etcd did not answer within 1.5 s", first.log())

    @defer.inlineCallbacks
    def test_after_quorum_loss_and_return_a_push_arrives_within_the_backoff_cap(self):
        fleet = Fleet(self)
        yield fleet.start()
        lost = fleet.etcd.members[1:]
        for member in lost:
            fleet.etcd.stop(member)
        yield sleep(6.0)
        for instance in fleet.instances:
            _, body = yield fleet.get(instance)
            self.assertEqual(body, "v0")
        for member in lost:
            fleet.etcd.start(member)
        fleet.etcd.wait_healthy()
        pushed = time.monotonic()
        yield fleet.push("v1")
        for instance in fleet.instances:
            yield fleet.wait_answer(instance, "v1", timeout=31.0)
        print(f"\nfleet: after quorum returned, applied in {time.monotonic() - pushed:.1f} s")

    @defer.inlineCallbacks
    def test_with_two_workers_pushes_are_applied_and_cookies_agree(self):
        fleet = Fleet(self, instances=2, top="workers = 2")
        yield fleet.start()
        load = LoadLoop(fleet)
        yield load.start()
        latencies = []
        for number in range(1, 6):
            answer = f"v{number}"
            pushed = time.monotonic()
            revision = yield fleet.push(answer)
            for instance in fleet.instances:
                # Both workers must answer the new document: ask a few times.
                for _ in range(4):
                    done = yield fleet.wait_answer(instance, answer, timeout=2)
                latencies.append(done - pushed)
                yield fleet.wait_status(instance, lambda f, r=revision: f["applied_revision"] == r)
        problems = yield load.stop()
        self.assertEqual(problems, [])
        self.assertLess(max(latencies), 1.0)
        first, second = fleet.instances
        response, backend = yield fleet.get(first, "/")
        cookie = response.cookies()["clb_session"]
        for _ in range(20):
            _, seen = yield fleet.get(second, "/", cookies={"clb_session": cookie})
            self.assertEqual(seen, backend)


def clbproxy_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clbproxy.cli", *args],
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=30,
    )


class FleetToolTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        if shutil.which("etcd") is None:
            raise unittest.SkipTest("etcd is not installed (scripts/test installs etcd-server)")

    @defer.inlineCallbacks
    def test_push_validates_refuses_a_concurrent_edit_and_status_tells_who_is_behind(self):
        fleet = Fleet(self, instances=1)
        yield fleet.start()
        etcd = [arg for url in fleet.etcd.endpoints for arg in ("--etcd", url)]
        path = os.path.join(fleet.directory, "shared.toml")
        with open(path, "w") as f:
            f.write(
                fleet.document("pushed").replace("[target_group.ws]", "[target_group.ws]\nx = 1")
            )
        refused = clbproxy_command("fleet", "push", *etcd, "--cluster", CLUSTER, path)
        self.assertEqual(refused.returncode, 1)
        self.assertIn(f"{path}: target_group.ws: unknown key 'x'", refused.stderr)

        with open(path, "w") as f:
            f.write(fleet.document("pushed"))
        stale = clbproxy_command(
            "fleet", "push", *etcd, "--cluster", CLUSTER, "--if-revision", "1", path
        )
        self.assertEqual(stale.returncode, 1)
        self.assertIn("a concurrent edit", stale.stderr)

        pushed = clbproxy_command("fleet", "push", *etcd, "--cluster", CLUSTER, path)
        self.assertEqual(pushed.returncode, 0, pushed.stderr)
        status = clbproxy_command("fleet", "status", *etcd, "--cluster", CLUSTER, "--wait", "3")
        self.assertEqual(status.returncode, 0, status.stdout + status.stderr)
        self.assertIn("node-1: applied", status.stdout)
        self.assertIn("(current)", status.stdout)

        bad = yield fleet.push("", text="[[listener]\n")
        behind = clbproxy_command("fleet", "status", *etcd, "--cluster", CLUSTER, "--wait", "1")
        self.assertEqual(behind.returncode, 1)
        self.assertIn(f"rejected at revision {bad}: node-1", behind.stderr)
        self.assertIn(f"node-1: rejected at {bad}: etcd:", behind.stdout)

    @defer.inlineCallbacks
    def test_a_frozen_watched_member_is_left_and_a_push_arrives_within_15_s(self):
        fleet = Fleet(self, instances=1)
        yield fleet.start()
        [instance] = fleet.instances
        status = yield fleet.status(instance)
        watched = status["fleet"]["endpoint"]
        frozen = next(m for m in fleet.etcd.members if m.url == watched)
        fleet.etcd.freeze(frozen)
        healthy = Gateway(reactor, [m.url for m in fleet.etcd.members if m is not frozen])
        self.addCleanup(healthy.close)
        pushed = time.monotonic()
        yield healthy.put(KEYS.config, fleet.document("after freeze").encode())
        yield fleet.wait_answer(instance, "after freeze", timeout=15.0)
        print(
            f"\nfleet: applied {time.monotonic() - pushed:.1f} s after a push, "
            "the watched member frozen"
        )
        status = yield fleet.status(instance)
        self.assertNotEqual(status["fleet"]["endpoint"], watched)
        self.assertEqual(status["fleet"]["watch_restarts"].get("check failed"), 1)


class WatchConnectionTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        if shutil.which("etcd") is None:
            raise unittest.SkipTest("etcd is not installed (scripts/test installs etcd-server)")

    @defer.inlineCallbacks
    def watchers(self, url: str):
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield treq.get(url + "/metrics", timeout=3, reactor=reactor, pool=pool)
        text = yield response.text()
        for line in text.splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total "):
                return float(line.split()[1])
        raise AssertionError("etcd_debugging_mvcc_watcher_total not in etcd's metrics")

    @defer.inlineCallbacks
    def test_100_cancelled_watches_leave_no_watcher_on_etcd(self):
        etcd = EtcdCluster(1, directory=os.path.abspath(self.mktemp()))
        self.addCleanup(etcd.remove)
        etcd.start_all()
        gateway = Gateway(reactor, etcd.endpoints)
        self.addCleanup(gateway.close)
        start, end = KEYS.watched
        for _ in range(100):
            created = defer.Deferred()
            watch = gateway.watch(
                start,
                end,
                1,
                lambda r, d=created: r.created and not d.called and d.callback(r),
            )
            yield created
            watch.cancel()
            yield watch.ended
        live = defer.Deferred()
        kept = gateway.watch(start, end, 1, lambda r: r.created and live.callback(r))
        yield live
        for _ in range(50):
            count = yield self.watchers(etcd.endpoints[0])
            if count == 1:
                break
            yield sleep(0.1)
        self.assertEqual(count, 1)
        kept.cancel()
        yield kept.ended
