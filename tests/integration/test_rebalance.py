"""Live sessions across a reload, and rebalancing them, on real sockets (127.0.0.1)."""

from __future__ import annotations

import collections
import math

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest

from clbproxy.config import load_config
from clbproxy.ops.reload import Reloader
from clbproxy.ops.services import build_service
from tests.support.network import Listening, abort_sessions
from tests.support.websocket import QuietClientFactory, QuietClientProtocol

CONFIG = """
[[listener]]
name = "web"
bind = "tcp:0:interface=127.0.0.1:backlog=512"
  [[listener.rule]]
  target_group = "pool"

[target_group.pool]
policy = "least_conn"
backends = [{backends}]
{rebalance}
"""

REBALANCE = """
[target_group.pool.rebalance]
max_ratio = {ratio}
closes_per_second = {rate}
"""

SESSIONS = 200
RATIO = 1.5
RATE = 20


class TimedCloses(list):
    """A backend's ``closes``, each with the time it was seen."""

    def append(self, item) -> None:
        super().append((reactor.seconds(), item))


class UserProtocol(QuietClientProtocol):
    def onOpen(self) -> None:
        self.factory.user.opened(self)

    def onClose(self, wasClean, code, reason) -> None:
        super().onClose(wasClean, code, reason)
        self.factory.user.closed(code, reason)


class User:
    """A client that reconnects when the proxy asks it to (close code 1001)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.protocol = None
        self.connections = 0
        self.relieved: list[tuple[float, int, str]] = []
        self.factories = []
        self.ready = defer.Deferred()
        self.connect()

    def connect(self) -> None:
        factory = QuietClientFactory(f"ws://127.0.0.1:{self.port}/echo")
        factory.protocol = UserProtocol
        factory.user = self
        factory.opened.addErrback(lambda failure: None)
        self.factories.append(factory)
        TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=5).connect(factory)

    def opened(self, protocol) -> None:
        self.protocol = protocol
        self.connections += 1
        if not self.ready.called:
            self.ready.callback(self)

    def closed(self, code, reason) -> None:
        self.protocol = None
        if code == 1001:
            self.relieved.append((reactor.seconds(), code, reason))
            self.connect()

    def cut(self) -> None:
        for factory in self.factories:
            for protocol in getattr(factory, "built", []):
                if protocol.transport is not None and protocol.transport.connected:
                    protocol.transport.abortConnection()


class Proxy(Listening):
    """The whole proxy from a tap.conf, as twistd builds it, with backends that time closes."""

    def __init__(self, testcase) -> None:
        super().__init__(testcase)
        self.path = testcase.mktemp()
        self.users: list[User] = []
        testcase.addCleanup(self._cut_users)

    def write(self, ports, rebalance: bool = True) -> None:
        backends = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
        table = REBALANCE.format(ratio=RATIO, rate=RATE) if rebalance else ""
        with open(self.path, "w") as stream:
            stream.write(CONFIG.format(backends=backends, rebalance=table))

    @defer.inlineCallbacks
    def backends(self, count):
        found = []
        for _ in range(count):
            factory, port = self.backend(deflate=False)
            factory.closes = TimedCloses()
            found.append((factory, (yield port)))
        return found

    def start(self) -> None:
        self.root = build_service(load_config(self.path), reactor)
        self.root.privilegedStartService()
        self.root.startService()
        self.testcase.addCleanup(self._stop)
        self.reloader = Reloader(self.path, self.root, reactor)
        listener = self.root.getServiceNamed("listener:web")
        self.port = listener.limiter.port.getHost().port

    def _stop(self):
        if self.root.running:
            abort_sessions(self.root.listener_services())
            return self.root.stopService()

    def _cut_users(self):
        for user in self.users:
            user.cut()
        return task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def open_users(self, count):
        users = []
        for start in range(0, count, 50):
            batch = [User(self.port) for _ in range(min(50, count - start))]
            users.extend(batch)
            self.users.extend(batch)
            yield defer.gatherResults([user.ready for user in batch])
        return users


def live(factory) -> int:
    """Sessions open on a backend, as the backend sees them."""
    return len(factory.opened) - len(factory.closes)


def within(counts, ratio) -> bool:
    return min(counts) > 0 and max(counts) <= ratio * min(counts)


@defer.inlineCallbacks
def wait_until(check, timeout):
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            return False
        yield task.deferLater(reactor, 0.05, lambda: None)
    return True


class ReloadKeepsCountsTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_least_conn_after_a_reload_sends_new_sessions_to_the_backend_with_fewer(self):
        proxy = Proxy(self)
        (a, a_port), (b, b_port), (c, c_port) = yield proxy.backends(3)
        proxy.write([a_port, b_port], rebalance=False)
        proxy.start()
        before = yield proxy.open_users(4)
        self.assertEqual((live(a), live(b)), (2, 2))

        proxy.write([a_port, b_port, c_port], rebalance=False)
        self.assertTrue((yield proxy.reloader.reload()))
        yield proxy.open_users(2)

        self.assertEqual((live(a), live(b), live(c)), (2, 2, 2))
        group = proxy.root.groups["pool"]
        backends = group.config.backends
        self.assertEqual([group.load(backend) for backend in backends], [2, 2, 2])
        for user in before:
            user.protocol.sendClose(1000)
        ended = yield wait_until(lambda: live(a) + live(b) == 0, 5)
        self.assertTrue(ended)
        yield wait_until(lambda: group.load(backends[0]) + group.load(backends[1]) == 0, 5)
        self.assertEqual([group.load(backend) for backend in backends], [0, 0, 2])


class RebalanceTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_backend_added_by_reload_gets_its_share_within_the_bound(self):
        proxy = Proxy(self)
        (a, a_port), (b, b_port), (c, c_port) = yield proxy.backends(3)
        proxy.write([a_port, b_port])
        proxy.start()
        users = yield proxy.open_users(SESSIONS)
        self.assertEqual((live(a), live(b)), (SESSIONS // 2, SESSIONS // 2))

        proxy.write([a_port, b_port, c_port])
        self.assertTrue((yield proxy.reloader.reload()))
        reloaded = reactor.seconds()
        to_move = SESSIONS - 2 * math.floor(SESSIONS / 3)
        bound = math.ceil(to_move / RATE) + 5
        balanced = yield wait_until(lambda: within([live(a), live(b), live(c)], RATIO), bound)
        self.assertTrue(balanced, [live(a), live(b), live(c)])
        self.assertLessEqual(reactor.seconds() - reloaded, bound)

        # Every relieved client came back, on the backend least_conn chose (the new one).
        settled = yield wait_until(
            lambda: (
                all(user.protocol is not None for user in users)
                and live(a) + live(b) + live(c) == SESSIONS
            ),
            5,
        )
        self.assertTrue(settled)
        relieved = sum(len(user.relieved) for user in users)
        self.assertGreater(relieved, 0)
        self.assertEqual(sum(user.connections for user in users), SESSIONS + relieved)
        self.assertEqual(len(c.opened), relieved)
        self.assertEqual((len(a.opened), len(b.opened)), (SESSIONS // 2, SESSIONS // 2))
        self.assertEqual(
            {reason for user in users for _, _, reason in user.relieved}, {"rebalance"}
        )

        # Never more closes per second than configured, seen by each backend.
        for factory in (a, b):
            times = [when for when, _ in factory.closes]
            if not times:
                continue
            first = min(times) - 0.05
            per_second = collections.Counter(math.floor(when - first) for when in times)
            self.assertLessEqual(max(per_second.values()), RATE, sorted(per_second.items()))
