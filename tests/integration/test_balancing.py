"""Target groups over real sockets: a backend killed mid-run, persistence through the proxy."""

from __future__ import annotations

import time

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.trial import unittest

from clbproxy.config import HealthCheckConfig, PassiveConfig, PersistenceConfig
from clbproxy.upstream.health.checks import EJECTED, HEALTHY, HealthCheckService, make_check
from tests.support.network import BackendFactory, Listening, raw_request
from tests.support.tls import WithoutALPN

INTERVAL = 0.2
UNHEALTHY_THRESHOLD = 2


class Fleet:
    """Three echo backends on 127.0.0.1 that a test can kill one by one."""

    def __init__(self, testcase, net: Listening) -> None:
        self.testcase = testcase
        self.net = net
        self.factories: list[BackendFactory] = []
        self.ports = []

    @defer.inlineCallbacks
    def start(self, count=3):
        for _ in range(count):
            factory = BackendFactory()
            self.net.connections.append(factory)
            port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
            self.testcase.addCleanup(self._stop, port)
            self.factories.append(factory)
            self.ports.append(port)
        return [port.getHost().port for port in self.ports]

    @staticmethod
    def _stop(port):
        return defer.maybeDeferred(port.stopListening)

    @defer.inlineCallbacks
    def kill(self, index):
        """Stop listening and cut every connection, as a crashed process would."""
        yield self.ports[index].stopListening()
        for protocol in getattr(self.factories[index], "built", []):
            if protocol.transport is not None and protocol.transport.connected:
                protocol.transport.abortConnection()

    def backend_of(self, client_factory) -> int:
        """Which backend serves the session: the one whose last handshake saw its path."""
        for index, factory in enumerate(self.factories):
            if any(r.path == client_factory.tag for r in factory.requests):
                return index
        raise AssertionError("session reached no backend")


@defer.inlineCallbacks
def wait_for(predicate, timeout=5.0, step=0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        yield task.deferLater(reactor, step, lambda: None)


class KilledBackendTests(unittest.TestCase):
    timeout = 30

    def setUp(self):
        self.net = Listening(self)
        self.fleet = Fleet(self, self.net)

    @defer.inlineCallbacks
    def open_sessions(self, port, count, prefix):
        clients = []
        for index in range(count):
            client = self.net.client(port, f"/{prefix}{index}")
            client.tag = f"/{prefix}{index}"
            client.protocol_ = yield client.opened
            clients.append(client)
        return clients

    @defer.inlineCallbacks
    def echo(self, client, text):
        protocol = client.protocol_
        before = len(client.messages)
        protocol.sendMessage(text.encode())
        messages = yield client.wait_messages(before + 1)
        return messages[-1][0].decode()

    @defer.inlineCallbacks
    def test_killed_backend_is_ejected_in_time_and_new_sessions_never_see_it(self):
        ports = yield self.fleet.start(3)
        check = HealthCheckConfig(
            enabled=True,
            type="websocket",
            path="/health",
            interval=INTERVAL,
            timeout=INTERVAL,
            healthy_threshold=2,
            unhealthy_threshold=UNHEALTHY_THRESHOLD,
            jitter=0.1,
        )
        proxy = yield self.net.proxy(ports, group_options={"health_check": check, "retries": 2})
        group = self.net.service.relay.settings.groups["pool"]
        checker = HealthCheckService(group, make_check(check, reactor), reactor)
        checker.startService()
        self.addCleanup(checker.stopService)

        before = yield self.open_sessions(proxy, 6, "before")
        on = {client.tag: self.fleet.backend_of(client) for client in before}
        self.assertEqual(sorted(on.values()), [0, 0, 1, 1, 2, 2])
        victim = group.backends[2]

        killed_at = time.monotonic()
        yield self.fleet.kill(2)
        yield wait_for(lambda: group.health.state(victim) != HEALTHY)
        detected = time.monotonic() - killed_at
        # Within unhealthy_threshold x interval (plus jitter and scheduling slack).
        self.assertLessEqual(detected, UNHEALTHY_THRESHOLD * INTERVAL * 1.1 + 0.15)

        after = yield self.open_sessions(proxy, 9, "after")
        self.assertEqual({self.fleet.backend_of(client) for client in after}, {0, 1})
        for client in after:
            self.assertEqual((yield self.echo(client, "new")), "new")

        survivors = [client for client in before if on[client.tag] != 2]
        for client in survivors:
            self.assertEqual((yield self.echo(client, "still here")), "still here")
            self.assertFalse(client.closed.called)
        for client in before:
            if on[client.tag] == 2:
                wasClean, code, _ = yield client.closed
                self.assertEqual(code, 1011)

    @defer.inlineCallbacks
    def test_on_unhealthy_close_ends_live_sessions_with_1001_after_the_grace(self):
        ports = yield self.fleet.start(2)
        check = HealthCheckConfig(
            enabled=True,
            type="tcp",
            interval=INTERVAL,
            timeout=INTERVAL,
            healthy_threshold=2,
            unhealthy_threshold=UNHEALTHY_THRESHOLD,
            jitter=0.1,
        )
        proxy = yield self.net.proxy(
            ports,
            group_options={
                "health_check": check,
                "on_unhealthy": "close",
                "on_unhealthy_grace": 0.3,
            },
        )
        group = self.net.service.relay.settings.groups["pool"]
        checker = HealthCheckService(group, make_check(check, reactor), reactor)
        checker.startService()
        self.addCleanup(checker.stopService)
        clients = yield self.open_sessions(proxy, 2, "s")
        on = {client.tag: self.fleet.backend_of(client) for client in clients}
        # Backend 1 stops accepting (its health check fails) but its session stays up.
        yield self.fleet.ports[1].stopListening()
        yield wait_for(lambda: group.health.state(group.backends[1]) != HEALTHY)
        for client in clients:
            if on[client.tag] == 1:
                self.assertFalse(client.closed.called)
                _, code, _ = yield client.closed
                self.assertEqual(code, 1001)
            else:
                self.assertEqual((yield self.echo(client, "kept")), "kept")

    @defer.inlineCallbacks
    def test_without_active_checks_passive_ejection_hides_the_killed_backend(self):
        ports = yield self.fleet.start(3)
        proxy = yield self.net.proxy(
            ports, group_options={"retries": 2, "passive": PassiveConfig(failures=3)}
        )
        group = self.net.service.relay.settings.groups["pool"]
        victim = group.backends[2]
        yield self.fleet.kill(2)
        clients = yield self.open_sessions(proxy, 12, "s")
        self.assertEqual(group.health.state(victim), EJECTED)
        self.assertEqual({self.fleet.backend_of(client) for client in clients}, {0, 1})
        self.assertEqual(group.health.record(victim).passive_failures, 3)


class PersistenceThroughTheProxyTests(unittest.TestCase):
    timeout = 20

    def setUp(self):
        self.net = Listening(self)
        self.fleet = Fleet(self, self.net)

    @defer.inlineCallbacks
    def test_reconnecting_websocket_client_returns_to_its_backend(self):
        ports = yield self.fleet.start(3)
        proxy = yield self.net.proxy(
            ports, group_options={"persistence": PersistenceConfig(type="cookie")}
        )
        first = self.net.client(proxy, "/first")
        first.tag = "/first"
        yield first.opened
        set_cookie = first.response.headers["set-cookie"]
        cookie = [part for part in set_cookie.split(", ") if part.startswith("clb_session=")][0]
        self.assertIn("HttpOnly", cookie)
        self.assertNotIn("127.0.0.1", cookie)
        home = self.fleet.backend_of(first)
        for index in range(5):
            again = self.net.client(
                proxy, f"/again{index}", headers={"Cookie": cookie.split(";")[0]}
            )
            again.tag = f"/again{index}"
            yield again.opened
            self.assertEqual(self.fleet.backend_of(again), home)

    @defer.inlineCallbacks
    def test_http_responses_carry_the_persistence_cookie(self):
        ports = yield self.fleet.start(1)
        proxy = yield self.net.proxy(
            ports, group_options={"persistence": PersistenceConfig(type="cookie", ttl=60)}
        )
        response = yield raw_request(
            proxy, b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        cookies = [line for line in head.split("\r\n") if line.lower().startswith("set-cookie")]
        self.assertEqual(len(cookies), 1, head)
        self.assertIn("clb_session=", cookies[0])
        self.assertIn("Max-Age=60", cookies[0])


class HTTPSCheckTests(unittest.TestCase):
    """An ``https`` health check makes a real TLS connection (liveness, not identity)."""

    timeout = 20

    @defer.inlineCallbacks
    def test_https_check_over_real_tls_sees_status_and_body(self):
        import trustme
        from twisted.internet import ssl
        from twisted.web._newclient import ResponseNeverReceived
        from twisted.web.resource import Resource
        from twisted.web.server import Site
        from twisted.web.static import Data

        from clbproxy.config import BackendConfig
        from clbproxy.upstream.health.checks import CheckFailed, health_http_client

        authority = trustme.CA()
        issued = authority.issue_cert("backend.test")
        options = ssl.PrivateCertificate.loadPEM(
            issued.private_key_and_cert_chain_pem.bytes()
        ).options()
        root = Resource()
        root.putChild(b"health", Data(b"all good", "text/plain"))
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(root))
        self.addCleanup(port.stopListening)
        tls_endpoint = SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
        tls_port = yield tls_endpoint.listen(WithoutALPN(Site(root)))
        self.addCleanup(tls_port.stopListening)
        backend = BackendConfig("127.0.0.1", tls_port.getHost().port)
        pool_client = health_http_client(reactor)
        self.addCleanup(pool_client._agent._pool.closeCachedConnections)

        def check(**options):
            config = HealthCheckConfig(enabled=True, type="https", path="/health", **options)
            return make_check(config, reactor, pool_client).check(backend)

        yield check(expect_body="good")
        with self.assertRaises(CheckFailed):
            yield check(expect_body="bad")
        plain = BackendConfig("127.0.0.1", port.getHost().port)
        config = HealthCheckConfig(enabled=True, type="https", path="/health", timeout=2)
        with self.assertRaises(ResponseNeverReceived):
            yield make_check(config, reactor, pool_client).check(plain)
