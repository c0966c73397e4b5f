"""A fleet on loopback for the integration tests: etcd members, clbproxy instances, backends.

Everything listens on 127.0.0.x with ports the OS chose a moment before; every
process is started here and stopped by its PID in the test's cleanup.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Optional

import treq
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from clbproxy.fleet.gateway import Gateway
from clbproxy.fleet.messages import FleetKeys, b64
from clbproxy.ws.hops import cancel_close_timer
from tests.support.etcd import EtcdCluster, free_ports
from tests.support.network import ROOT, TWISTD
from tests.support.websocket import QuietClientFactory, QuietClientProtocol

CLUSTER = "itest"
KEYS = FleetKeys(CLUSTER)

LOCAL = """
{top}
[fleet]
cluster = "{cluster}"
instance = "{name}"
endpoints = {endpoints}
cache_dir = "cache-{name}"
startup_timeout = 1.5
{fleet_extra}
  [fleet.binds]
  web = "tcp:{port}:interface={address}"
[admin]
bind = "tcp:{admin}:interface={address}"
"""

DOCUMENT = """
drain_timeout = 1
[[listener]]
name = "web"
  [[listener.rule]]
  path = "= /v"
  fixed_response = {{ status = 200, body = "{answer}" }}
  [[listener.rule]]
  path = "/ws"
  target_group = "ws"
  [[listener.rule]]
  target_group = "pool"
[target_group.pool]
backends = [{http}]
persistence = {{ type = "cookie" }}
[target_group.ws]
backends = [{ws}]
"""


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        cancel_close_timer(self)


class Named(Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def render_GET(self, request):
        return self.name.encode()


class Counting(QuietClientProtocol):
    def onMessage(self, payload, isBinary):
        self.factory.received += 1


class Instance:
    """One ``twistd clbproxy`` of the fleet, its local file in ``directory``."""

    def __init__(
        self, testcase, directory: str, name: str, address: str, top: str = "", fleet_extra=""
    ) -> None:
        self.testcase = testcase
        self.directory = directory
        self.name = name
        self.address = address
        self.port, self.admin = free_ports(2)
        self.top = top
        self.fleet_extra = fleet_extra
        self.process: Optional[subprocess.Popen] = None
        self.path = os.path.join(directory, f"{name}.conf")
        self.log_path = os.path.join(directory, f"{name}.log")

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def write(self, endpoints: list[str]) -> None:
        with open(self.path, "w") as f:
            f.write(
                LOCAL.format(
                    top=self.top,
                    fleet_extra=self.fleet_extra,
                    cluster=CLUSTER,
                    name=self.name,
                    endpoints=json.dumps(endpoints),
                    port=self.port,
                    admin=self.admin,
                    address=self.address,
                )
            )

    def start(self) -> None:
        log = open(self.log_path, "a")
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    TWISTD,
                    "-n",
                    "--pidfile=",
                    "clbproxy",
                    "--config",
                    self.path,
                ],
                cwd=self.directory,
                env={**os.environ, "PYTHONPATH": ROOT},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


class Fleet:
    """3 etcd members, two HTTP and two WebSocket backends, and N clbproxy instances."""

    def __init__(
        self,
        testcase,
        instances: int = 3,
        top: str = "",
        *,
        members: int = 3,
        etcd_flags: Optional[dict] = None,
        fleet_extra: str = "",
        prepare=None,
    ) -> None:
        """``prepare(fleet)`` runs once etcd is up, before anything is written to it."""
        self.testcase = testcase
        self.directory = os.path.abspath(testcase.mktemp())
        os.makedirs(self.directory)
        self.etcd = EtcdCluster(
            members, directory=os.path.join(self.directory, "etcd"), **(etcd_flags or {})
        )
        testcase.addCleanup(self.etcd.remove)
        self.prepare = prepare
        #: The etcd URLs the instances are given (default: every member's).
        self.instance_endpoints: Optional[list[str]] = None
        addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        self.instances = [
            Instance(testcase, self.directory, f"node-{i + 1}", addresses[i % 3], top, fleet_extra)
            for i in range(instances)
        ]
        for instance in self.instances:
            testcase.addCleanup(instance.stop)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.gateway: Optional[Gateway] = None
        self.backend_names: list[str] = []
        self.http_ports: list[int] = []
        self.ws_ports: list[int] = []
        self.answers = 0

    @defer.inlineCallbacks
    def start(self):
        self.etcd.start_all()
        self.gateway = Gateway(reactor, self.etcd.endpoints)
        self.testcase.addCleanup(self.gateway.close)
        if self.prepare is not None:
            self.prepare(self)
        for index in range(2):
            name = f"backend-{index}"
            port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
                Site(Named(name))
            )
            self.testcase.addCleanup(port.stopListening)
            self.http_ports.append(port.getHost().port)
            self.backend_names.append(name)
            factory = WebSocketServerFactory()
            factory.protocol = Echo
            factory.setProtocolOptions(failByDrop=False)
            port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
            self.testcase.addCleanup(port.stopListening)
            self.ws_ports.append(port.getHost().port)
        yield self.push("v0")
        for instance in self.instances:
            instance.write(self.instance_endpoints or self.etcd.endpoints)
            instance.start()
        for instance in self.instances:
            yield self.wait_serving(instance)
            # Under workers the supervisor answers first: wait for the listener too.
            yield self.wait_answer(instance, "v0", timeout=20)

    def document(self, answer: str, extra: str = "") -> str:
        return (
            DOCUMENT.format(
                answer=answer,
                http=", ".join(f'"127.0.0.1:{p}"' for p in self.http_ports),
                ws=", ".join(f'"127.0.0.1:{p}"' for p in self.ws_ports),
            )
            + extra
        )

    @defer.inlineCallbacks
    def push(self, answer: str, extra: str = "", text: Optional[str] = None):
        """Put a document (as is: no validation); fires with the put's revision."""
        body = text if text is not None else self.document(answer, extra)
        result = yield self.gateway.put(KEYS.config, body.encode())
        return int(result["header"]["revision"])

    @defer.inlineCallbacks
    def get(self, instance_or_url, path: str = "/v", cookies=None, timeout: float = 2.0):
        base = instance_or_url.url if isinstance(instance_or_url, Instance) else instance_or_url
        response = yield treq.get(
            base + path, pool=self.pool, cookies=cookies, timeout=timeout, reactor=reactor
        )
        body = yield response.text()
        return response, body

    @defer.inlineCallbacks
    def status(self, instance: Instance):
        response = yield treq.get(
            f"http://{instance.address}:{instance.admin}/api/status",
            pool=self.pool,
            timeout=2,
            reactor=reactor,
        )
        data = yield response.json()
        return data

    @defer.inlineCallbacks
    def wait_serving(self, instance: Instance, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = yield self.status(instance)
                return status
            except Exception:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{instance.name} does not serve:\n{instance.log()}"
                    ) from None
                if instance.process is not None and instance.process.poll() is not None:
                    raise AssertionError(f"{instance.name} exited:\n{instance.log()}") from None
                yield task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def wait_answer(self, instance: Instance, answer: str, timeout: float = 5.0):
        """Poll ``/v`` until it answers ``answer``; fires with the monotonic time it did."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, body = yield self.get(instance)
            except Exception:
                body = None
            if body == answer:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance.name} answers {body!r}, not {answer!r}")
            yield task.deferLater(reactor, 0.005, lambda: None)

    @defer.inlineCallbacks
    def wait_status(self, instance: Instance, predicate, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            status = yield self.status(instance)
            if predicate(status["fleet"]):
                return status["fleet"]
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance.name}: {status['fleet']}")
            yield task.deferLater(reactor, 0.05, lambda: None)


class LoadLoop:
    """HTTP requests and one WebSocket session per instance, all the time, counting failures."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.requests = 0
        self.failures: list[str] = []
        self.sessions: list[QuietClientFactory] = []
        self.sent = 0
        self.running = False
        self._loops: list[defer.Deferred] = []

    @defer.inlineCallbacks
    def start(self):
        from twisted.internet.endpoints import TCP4ClientEndpoint

        self.running = True
        for instance in self.fleet.instances:
            factory = QuietClientFactory(f"ws://{instance.address}:{instance.port}/ws")
            factory.protocol = Counting
            factory.received = 0
            endpoint = TCP4ClientEndpoint(reactor, instance.address, instance.port)
            yield endpoint.connect(factory)
            factory.client = yield factory.opened
            self.sessions.append(factory)
            self._loops.append(self._http(instance))
        self._loops.append(self._ws())

    @defer.inlineCallbacks
    def _http(self, instance: Instance):
        while self.running:
            try:
                response, body = yield self.fleet.get(instance, "/")
                if response.code != 200 or not body.startswith("backend-"):
                    self.failures.append(f"{instance.name}: {response.code} {body[:60]}")
            except Exception as error:
                self.failures.append(f"{instance.name}: {error!r}")
            self.requests += 1
            yield task.deferLater(reactor, 0.01, lambda: None)

    @defer.inlineCallbacks
    def _ws(self):
        while self.running:
            for factory in self.sessions:
                if factory.closed.called:
                    continue
                factory.client.sendMessage(b"ping")
            self.sent += 1
            yield task.deferLater(reactor, 0.02, lambda: None)

    @defer.inlineCallbacks
    def stop(self):
        """Stop; fires with the problems seen (failures, closed sessions, lost echoes)."""
        self.running = False
        yield defer.DeferredList(self._loops)
        yield task.deferLater(reactor, 0.2, lambda: None)
        problems = list(self.failures)
        for instance, factory in zip(self.fleet.instances, self.sessions):
            if factory.closed.called:
                problems.append(f"{instance.name}: session closed {factory.close_info}")
            elif factory.received != self.sent:
                problems.append(f"{instance.name}: {factory.received} echoes of {self.sent}")
            else:
                factory.client.sendClose(1000)
                yield factory.closed
        return problems


def put_raw(fleet: Fleet, key: bytes, value: str) -> defer.Deferred:
    return fleet.gateway.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})
