"""Backend health: active checks, passive ejection, and the one view of both.

Each target group has a :class:`GroupHealth`: the state of each backend as
active checks and real traffic see it.

- Active checks (:class:`HealthCheckService`, one per group with a
  ``health_check`` table) probe every backend each ``interval`` (with jitter)
  by HTTP(S), TCP connect or a WebSocket handshake.  ``unhealthy_threshold``
  failures in a row take a backend out; ``healthy_threshold`` successes in a
  row bring it back.  Backends start in service.
- Passive ejection is always on: ``failures`` consecutive connect failures or
  resets of real traffic eject a backend for ``ejection`` seconds; an ejection
  within ``max_ejection`` seconds of the previous one's end lasts twice as long,
  up to ``max_ejection``.
- Every change of state is logged (backend, old state, new state, reason) and
  readable through :class:`~clbproxy.upstream.health.view.IHealthView`
  (:class:`CheckedHealth`), which the status page, the admin API and metrics use.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import warnings
from typing import Callable, Iterable, Mapping, Optional

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import Interface, implementer

from clbproxy.config import BackendConfig, HealthCheckConfig, TargetGroupConfig
from clbproxy.net.endpoints import backend_endpoint
from clbproxy.upstream.health.view import BackendStatus, IHealthView
from clbproxy.upstream.states import AdminState, Health

log = Logger()

HEALTHY = Health.HEALTHY
UNHEALTHY = Health.UNHEALTHY
EJECTED = Health.EJECTED

#: Body bytes an HTTP check reads (and matches ``expect_body`` against) at most.
MAX_CHECK_BODY = 64 * 1024


@implementer(IHealthView)
class CheckedHealth:
    """:class:`~clbproxy.upstream.health.view.IHealthView` over the live target groups.

    Reads each ``TargetGroup``'s :class:`GroupHealth` and runtime controls; a
    reload hands it the new groups (:meth:`use`).
    """

    def __init__(self, groups: Mapping[str, object]) -> None:
        self._groups = groups

    def use(self, groups: Mapping[str, object]) -> None:
        """Report on ``groups`` from now on (a reload replaced the target groups)."""
        self._groups = groups

    def groups(self) -> list[str]:
        return list(self._groups)

    def backends(self, group: str) -> list[BackendStatus]:
        target = self._groups[group]
        health: GroupHealth = target.health
        result = []
        for backend in target.backends:
            record = health.record(backend)
            control = target.control(backend.address)
            result.append(
                BackendStatus(
                    group=group,
                    address=backend.address,
                    state=record.state,
                    weight=control.weight,
                    draining=control.weight == 0 or control.state is not AdminState.READY,
                    live=target.load(backend),
                    max_conns=backend.max_conns,
                    last_change=record.last_change,
                    last_error=record.last_error,
                    ejected_until=record.ejected_until if record.state == EJECTED else None,
                )
            )
        return result


@attrs.define
class _Record:
    """What is known about one backend's health."""

    state: Health = HEALTHY
    active_ok: bool = True
    successes: int = 0
    failures: int = 0
    passive_failures: int = 0
    ejected_until: Optional[float] = None
    ejection_time: float = 0.0
    returned_at: Optional[float] = None
    last_change: Optional[float] = None
    last_error: Optional[str] = None


class GroupHealth:
    """The health of one target group's backends, fed by active checks and real traffic.

    This is where health is decided; observers read it through :class:`CheckedHealth`.
    """

    def __init__(self, config: TargetGroupConfig, clock: IReactorTime) -> None:
        self.config = config
        self._clock = clock
        self._records = {backend: _Record() for backend in config.backends}
        self._listeners: list[Callable[[BackendConfig, bool], None]] = []

    def on_change(self, callback: Callable[[BackendConfig, bool], None]) -> None:
        """Call ``callback(backend, available)`` whenever a backend enters or leaves service."""
        self._listeners.append(callback)

    def record(self, backend: BackendConfig) -> _Record:
        record = self._records.get(backend)
        if record is None:  # not setdefault: a _Record per call, on every pick, is waste
            record = self._records[backend] = _Record()
        if record.state == EJECTED and record.ejected_until <= self._clock.seconds():
            record.returned_at = record.ejected_until
            record.passive_failures = 0
            self._update(backend, record, "ejection ended")
        return record

    def available(self, backend: BackendConfig) -> bool:
        """True when ``backend`` is in service (it may still be drained or full)."""
        return self.record(backend).state == HEALTHY

    def state(self, backend: BackendConfig) -> Health:
        return self.record(backend).state

    def next_return(self) -> Optional[float]:
        """When the soonest running ejection ends (clock seconds), None when none runs.

        Until then no backend comes back by itself: whatever else changes a
        backend's service is told through :meth:`on_change`.
        """
        ends = [r.ejected_until for r in self._records.values() if r.state == EJECTED]
        return min(ends) if ends else None

    # -- active ------------------------------------------------------------------

    def check_passed(self, backend: BackendConfig) -> None:
        record = self.record(backend)
        record.failures = 0
        record.successes += 1
        threshold = self.config.health_check.healthy_threshold
        if not record.active_ok and record.successes >= threshold:
            record.active_ok = True
            self._update(backend, record, f"{record.successes} health checks passed")

    def check_failed(self, backend: BackendConfig, reason: str) -> None:
        record = self.record(backend)
        record.successes = 0
        record.failures += 1
        record.last_error = f"health check: {reason}"
        threshold = self.config.health_check.unhealthy_threshold
        if record.active_ok and record.failures >= threshold:
            record.active_ok = False
            self._update(backend, record, f"{record.failures} health checks failed: {reason}")

    # -- passive -----------------------------------------------------------------

    def passive_success(self, backend: BackendConfig) -> None:
        self.record(backend).passive_failures = 0

    def passive_failure(self, backend: BackendConfig, reason: str) -> None:
        record = self.record(backend)
        record.last_error = reason
        if record.state == EJECTED:
            return
        record.passive_failures += 1
        passive = self.config.passive
        if record.passive_failures < passive.failures:
            return
        now = self._clock.seconds()
        recent = record.returned_at is not None and now - record.returned_at <= passive.max_ejection
        if recent and record.ejection_time:
            record.ejection_time = min(record.ejection_time * 2, passive.max_ejection)
        else:
            record.ejection_time = passive.ejection
        record.ejected_until = now + record.ejection_time
        self._update(
            backend,
            record,
            f"ejected for {record.ejection_time:g} s after {record.passive_failures} "
            f"consecutive failures: {reason}",
        )

    # -- state -------------------------------------------------------------------

    def _update(self, backend: BackendConfig, record: _Record, reason: str) -> None:
        now = self._clock.seconds()
        if record.ejected_until is not None and record.ejected_until > now:
            new = EJECTED
        elif not record.active_ok:
            new = UNHEALTHY
        else:
            new = HEALTHY
        old = record.state
        if new == old:
            return
        record.state = new
        record.last_change = now
        log.info(
            "target group {group}: backend {backend} {old} -> {new}: {reason}",
            group=self.config.name,
            backend=backend.address,
            old=old,
            new=new,
            reason=reason,
        )
        available = new == HEALTHY
        if available != (old == HEALTHY):
            for callback in list(self._listeners):
                callback(backend, available)


class CheckFailed(Exception):
    """A health check's probe got a wrong answer."""


class IHealthCheck(Interface):
    """One kind of active probe."""

    def check(backend: BackendConfig) -> defer.Deferred:
        """Fires (with anything) when ``backend`` is healthy; fails with the reason otherwise."""


def _probe_port(config: HealthCheckConfig, backend: BackendConfig) -> int:
    return config.port or backend.port


def _probe_address(config: HealthCheckConfig, backend: BackendConfig) -> str:
    host = f"[{backend.host}]" if ":" in backend.host else backend.host
    return f"{host}:{_probe_port(config, backend)}"


def status_expected(config: HealthCheckConfig, status: int) -> bool:
    return any(low <= status <= high for low, high in config.expect_status)


@implementer(IPolicyForHTTPS)
class _UnverifiedTLS:
    """HTTPS health checks test liveness, not identity: backends' certificates are not verified."""

    def creatorForNetloc(self, hostname: bytes, port: int):
        return CertificateOptions(verify=False)


def health_http_client(reactor):
    """The treq client of HTTP(S) checks: no keep-alive (each probe is a new connection)."""
    import treq.client

    pool = HTTPConnectionPool(reactor, persistent=False)
    return treq.client.HTTPClient(Agent(reactor, contextFactory=_UnverifiedTLS(), pool=pool))


@implementer(IHealthCheck)
class HTTPCheck:
    """GET or HEAD on a path; healthy when the status is expected and the body matches."""

    def __init__(self, config: HealthCheckConfig, client, reactor) -> None:
        self._config = config
        self._client = client
        self._reactor = reactor

    @defer.inlineCallbacks
    def check(self, backend: BackendConfig):
        import treq

        config = self._config
        scheme = "https" if config.type == "https" else "http"
        url = f"{scheme}://{_probe_address(config, backend)}{config.path}"
        headers = {"Host": [config.host]} if config.host else None
        response = yield self._client.request(
            config.method,
            url,
            headers=headers,
            allow_redirects=False,
            timeout=config.timeout,
            reactor=self._reactor,
        )
        chunks: list[bytes] = []
        kept = [0]

        def collect(data: bytes) -> None:
            if kept[0] < MAX_CHECK_BODY:
                chunks.append(data[: MAX_CHECK_BODY - kept[0]])
                kept[0] += len(chunks[-1])

        yield treq.collect(response, collect)
        if not status_expected(config, response.code):
            raise CheckFailed(f"status {response.code}")
        if config.expect_body is not None:
            body = b"".join(chunks).decode("utf-8", "replace")
            if config.expect_body not in body:
                raise CheckFailed(f"body does not contain {config.expect_body!r}")


Connector = Callable[[str, int, float], object]


def _default_connector(reactor) -> Connector:
    """Endpoints for probes, the same way the relay and the forwarder reach backends."""
    return lambda host, port, timeout: backend_endpoint(reactor, host, port, timeout)


@implementer(IHealthCheck)
class TCPCheck:
    """Healthy when a TCP connection can be opened (it is closed at once)."""

    def __init__(self, config: HealthCheckConfig, reactor, connector: Optional[Connector] = None):
        self._config = config
        self._connector = connector or _default_connector(reactor)

    def check(self, backend: BackendConfig) -> defer.Deferred:
        endpoint = self._connector(
            backend.host, _probe_port(self._config, backend), self._config.timeout
        )
        d = endpoint.connect(Factory.forProtocol(Protocol))
        d.addCallback(lambda protocol: protocol.transport.loseConnection())
        return d


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _HandshakeProbe(Protocol):
    """Sends a WebSocket upgrade and judges the response head."""

    def __init__(self, request: bytes, key: bytes, done: defer.Deferred) -> None:
        self._request = request
        self._expected = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        self._done = done
        self._buffer = b""

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 65536:
                self._finish(CheckFailed("response head larger than 64 KiB"))
            return
        lines = self._buffer[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"101":
            status = parts[1].decode("latin-1") if len(parts) > 1 else "?"
            self._finish(CheckFailed(f"handshake answered {status}"))
            return
        accept = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if accept != self._expected:
            self._finish(CheckFailed("wrong Sec-WebSocket-Accept"))
        else:
            self._finish(None)

    def _finish(self, error: Optional[Exception]) -> None:
        self.transport.abortConnection()
        if not self._done.called:
            if error is None:
                self._done.callback(None)
            else:
                self._done.errback(error)

    def connectionLost(self, reason: Failure) -> None:
        if not self._done.called:
            self._done.errback(CheckFailed("connection closed before the handshake answer"))


@implementer(IHealthCheck)
class WebSocketCheck:
    """Healthy when the backend answers a WebSocket handshake on ``path`` with a valid 101."""

    def __init__(self, config: HealthCheckConfig, reactor, connector: Optional[Connector] = None):
        self._config = config
        self._connector = connector or _default_connector(reactor)

    def check(self, backend: BackendConfig) -> defer.Deferred:
        config = self._config
        key = base64.b64encode(os.urandom(16))
        host = config.host or _probe_address(config, backend)
        request = (
            (
                f"GET {config.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "User-Agent: clbproxy-health-check\r\n"
            ).encode("latin-1")
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        done: defer.Deferred = defer.Deferred()
        protocols: list[_HandshakeProbe] = []

        def build() -> _HandshakeProbe:
            probe = _HandshakeProbe(request, key, done)
            protocols.append(probe)
            return probe

        factory = Factory()
        factory.buildProtocol = lambda addr: build()
        endpoint = self._connector(backend.host, _probe_port(config, backend), config.timeout)
        connecting = endpoint.connect(factory)
        connecting.addErrback(lambda failure: done.called or done.errback(failure))

        def cancel(d: defer.Deferred) -> None:
            connecting.cancel()
            for probe in protocols:
                if probe.transport is not None:
                    probe.transport.abortConnection()

        result: defer.Deferred = defer.Deferred(cancel)
        done.chainDeferred(result)
        return result


def make_check(config: HealthCheckConfig, reactor, http_client=None) -> IHealthCheck:
    """The probe ``config`` describes; ``http_client`` is a treq ``HTTPClient`` (injected)."""
    if config.type == "tcp":
        return TCPCheck(config, reactor)
    if config.type == "websocket":
        return WebSocketCheck(config, reactor)
    return HTTPCheck(config, http_client or health_http_client(reactor), reactor)


def describe(failure: Failure) -> str:
    if failure.check(defer.TimeoutError, defer.CancelledError, ConnectingCancelledError):
        return "timed out"
    message = failure.getErrorMessage()
    name = type(failure.value).__name__
    if failure.check(CheckFailed):
        return message
    return f"{name}: {message}" if message and message != name else name


class HealthCheckService(Service):
    """Probes each backend of one target group every ``interval`` seconds, with jitter.

    The first probe of each backend comes at a random point of the first
    interval, so backends (and groups) are not probed in step.  A probe slower
    than ``timeout`` fails.  Nothing a probe does stops the schedule.
    """

    def __init__(
        self,
        group,
        check: IHealthCheck,
        reactor,
        rng: Optional[random.Random] = None,
        backends: Optional[Iterable[BackendConfig]] = None,
    ) -> None:
        self.setName(f"health:{group.name}")
        self._group = group
        self._check = check
        self._reactor = reactor
        self._random = rng or random.Random()
        self._config: HealthCheckConfig = group.config.health_check
        self._backends = list(backends if backends is not None else group.backends)
        self._calls: dict[BackendConfig, object] = {}
        self._probes: dict[BackendConfig, defer.Deferred] = {}

    def startService(self) -> None:
        super().startService()
        for backend in self._backends:
            self._schedule(backend, self._random.uniform(0, self._config.interval))

    def stopService(self):
        super().stopService()
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()
        probes = list(self._probes.values())
        self._probes.clear()
        for probe in probes:
            probe.cancel()

    def _schedule(self, backend: BackendConfig, delay: float) -> None:
        if self.running:
            self._calls[backend] = self._reactor.callLater(delay, self._probe, backend)

    def _next_delay(self) -> float:
        interval, jitter = self._config.interval, self._config.jitter
        return interval * (1 + self._random.uniform(-jitter, jitter))

    def _probe(self, backend: BackendConfig) -> None:
        self._calls.pop(backend, None)
        try:
            d = defer.maybeDeferred(self._check.check, backend)
            d.addTimeout(self._config.timeout, self._reactor)
        except Exception:
            d = defer.fail()
        self._probes[backend] = d
        d.addCallbacks(self._passed, self._failed, callbackArgs=(backend,), errbackArgs=(backend,))
        d.addErrback(lambda failure: log.failure("health check bookkeeping failed", failure))
        d.addBoth(self._done, backend)

    def _passed(self, result, backend: BackendConfig) -> None:
        if self.running:
            self._group.health.check_passed(backend)

    def _failed(self, failure: Failure, backend: BackendConfig) -> None:
        if self.running:
            self._group.health.check_failed(backend, describe(failure))

    def _done(self, result, backend: BackendConfig) -> None:
        self._probes.pop(backend, None)
        self._schedule(backend, self._next_delay())


def health_services(groups: Iterable, reactor, http_client=None) -> list[HealthCheckService]:
    """A check service for each group whose ``health_check`` is enabled."""
    services = []
    for group in groups:
        config = group.config.health_check
        if config.enabled:
            check = make_check(config, reactor, http_client)
            services.append(HealthCheckService(group, check, reactor))
    return services


#: Names of this module that moved: (new object, where it is now).
_MOVED = {
    "IHealthState": (IHealthView, "clbproxy.upstream.health.view.IHealthView"),
    "HealthState": (CheckedHealth, "clbproxy.upstream.health.checks.CheckedHealth"),
    "BackendHealth": (GroupHealth, "clbproxy.upstream.health.checks.GroupHealth"),
}


def __getattr__(name: str):
    """The former names, for one release, with a DeprecationWarning."""
    moved = _MOVED.get(name)
    if moved is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"clbproxy.upstream.health.checks.{name} is deprecated: use {moved[1]}",
        DeprecationWarning,
        stacklevel=2,
    )
    return moved[0]
