"""Fleet mode's watch against a real etcd: forced reconnects, a rebuilt etcd, a bind taken.

Each test runs one etcd member (fast to start) on 127.0.0.1 and one or two
instances; every process is stopped by its PID in the cleanup.
"""

from __future__ import annotations

import os
import shutil
import socket

import treq
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from tests.support.etcd import free_ports
from tests.support.fleet import Fleet

RECONNECTS = 100


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


class _Upstream(protocol.Protocol):
    def connectionMade(self):
        self.factory.client.upstream_ready(self.transport)

    def dataReceived(self, data):
        self.factory.client.from_etcd(data)

    def connectionLost(self, reason=None):
        self.factory.client.transport.loseConnection()


class _Relay(protocol.Protocol):
    """One connection of the instance to etcd, relayed; on a watch, after etcd's
    ``created`` chunk, the proxy adds a chunk that says the watch was compacted away."""

    def connectionMade(self):
        self.upstream = None
        self.pending = b""
        self.watch = False
        self.injected = False
        self.factory.open.add(self)
        factory = protocol.ClientFactory()
        factory.protocol = _Upstream
        factory.client = self
        proxy = self.factory
        TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.etcd_port).connect(factory)

    def upstream_ready(self, transport):
        self.upstream = transport
        if self.pending:
            transport.write(self.pending)
            self.pending = b""

    def dataReceived(self, data):
        if b"POST /v3/watch" in data:
            self.watch = True
        if self.upstream is None:
            self.pending += data
        else:
            self.upstream.write(data)

    def from_etcd(self, data):
        self.transport.write(data)
        proxy = self.factory
        if (
            self.watch
            and not self.injected
            and b'"created":true}}\n\r\n' in data
            and proxy.injected < proxy.limit
        ):
            self.injected = True
            proxy.injected += 1
            line = b'{"result":{"canceled":true,"compact_revision":"1"}}\n'
            self.transport.write(b"%x\r\n%s\r\n" % (len(line), line))

    def connectionLost(self, reason=None):
        self.factory.open.discard(self)
        if self.upstream is not None:
            self.upstream.loseConnection()


class CompactingProxy(protocol.Factory):
    """A TCP relay to etcd that cancels the first ``limit`` watches it carries."""

    protocol = _Relay

    def __init__(self, etcd_port: int, limit: int) -> None:
        self.etcd_port = etcd_port
        self.limit = limit
        self.injected = 0
        self.open: set[_Relay] = set()


@defer.inlineCallbacks
def etcd_metric(url: str, name: str):
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = yield treq.get(url + "/metrics", timeout=3, reactor=reactor, pool=pool)
    text = yield response.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in etcd's metrics")


class FleetWatchTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        if shutil.which("etcd") is None:
            raise unittest.SkipTest("etcd is not installed (scripts/test installs etcd-server)")

    @defer.inlineCallbacks
    def test_after_100_forced_reconnects_etcd_holds_one_watch_for_the_instance(self):
        fleet = Fleet(self, instances=1, members=1)
        proxy = CompactingProxy(fleet.etcd.members[0].client, RECONNECTS)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(proxy)
        self.addCleanup(port.stopListening)
        fleet.instance_endpoints = [f"http://127.0.0.1:{port.getHost().port}"]
        yield fleet.start()
        [instance] = fleet.instances
        status = yield fleet.wait_status(
            instance, lambda f: f["resyncs"].get("compacted", 0) >= RECONNECTS, timeout=30
        )
        self.assertTrue(status["connected"])
        url = fleet.etcd.endpoints[0]
        for _ in range(50):
            watchers = yield etcd_metric(url, "etcd_debugging_mvcc_watcher_total")
            streams = yield etcd_metric(url, "etcd_debugging_mvcc_watch_stream_total")
            if (watchers, streams) == (1, 1):
                break
            yield sleep(0.1)
        self.assertEqual((watchers, streams), (1, 1))
        # The instance still follows etcd through its one watch.
        yield fleet.push("after reconnects")
        yield fleet.wait_answer(instance, "after reconnects", timeout=2)

    @defer.inlineCallbacks
    def test_a_rebuilt_etcd_is_detected_and_its_new_document_applied(self):
        fleet = Fleet(self, instances=1, members=1)
        yield fleet.start()
        [instance] = fleet.instances
        for number in range(1, 4):
            yield fleet.push(f"v{number}")
        yield fleet.wait_answer(instance, "v3")
        before = yield fleet.wait_status(instance, lambda f: f["applied_revision"] > 0)
        member = fleet.etcd.members[0]
        fleet.etcd.stop(member)
        shutil.rmtree(member.data_dir)
        member.started_once = False  # a new cluster, same member name, revision from 1
        fleet.etcd.start(member)
        fleet.etcd.wait_healthy()
        yield fleet.wait_status(
            instance, lambda f: f["resyncs"].get("revision reset", 0) == 1, timeout=10
        )
        _, body = yield fleet.get(instance)
        self.assertEqual(body, "v3")  # etcd has no document: the last good one stays
        revision = yield fleet.push("after reset")
        self.assertLess(revision, before["applied_revision"])
        yield fleet.wait_answer(instance, "after reset", timeout=5)
        yield fleet.wait_status(instance, lambda f: f["applied_revision"] == revision)
        self.assertIn("etcd was rebuilt", instance.log())

    @defer.inlineCallbacks
    def test_a_bind_taken_on_one_instance_rejects_the_push_there_only(self):
        fleet = Fleet(self, instances=2, members=1)
        extra = free_ports(2)
        for instance, port in zip(fleet.instances, extra):
            instance.fleet_extra = (
                f'  [fleet.listeners.extra]\n  bind = "tcp:{port}:interface={instance.address}"'
            )
        yield fleet.start()
        taken, free = fleet.instances
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((taken.address, extra[0]))
        blocker.listen(1)
        listener = (
            '\n[[listener]]\nname = "extra"\n  [[listener.rule]]\n'
            '  fixed_response = { status = 200, body = "extra" }\n'
        )
        revision = yield fleet.push("v1", extra=listener)
        yield fleet.wait_answer(free, "v1")
        response, body = yield fleet.get(f"http://{free.address}:{extra[1]}", "/")
        self.assertEqual(body, "extra")
        status = yield fleet.wait_status(taken, lambda f: f["rejected_revision"] == revision)
        self.assertIn(str(extra[0]), status["rejected_reason"])
        self.assertLess(status["applied_revision"], revision)
        _, body = yield fleet.get(taken)
        self.assertEqual(body, "v0")
        status = yield fleet.wait_status(free, lambda f: f["applied_revision"] == revision)
        self.assertEqual(status["rejected_revision"], 0)
        self.assertIn(f"etcd:/clbproxy/itest/config@{revision}", taken.log())
        self.assertTrue(os.path.exists(taken.log_path))
