"""Active checks, passive ejection, fail-open and the health-state view, on task.Clock."""

from __future__ import annotations

import random

import attrs
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.resource import Resource
from zope.interface.verify import verifyObject

from clbproxy.config import BackendConfig, HealthCheckConfig, PassiveConfig, TargetGroupConfig
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.upstream.health.checks import (
    EJECTED,
    HEALTHY,
    UNHEALTHY,
    CheckedHealth,
    HealthCheckService,
    HTTPCheck,
    TCPCheck,
    WebSocketCheck,
)
from clbproxy.upstream.health.view import IHealthView

A = BackendConfig("10.0.0.1", 8080)
B = BackendConfig("10.0.0.2", 8080)


def make_group(clock, **options) -> TargetGroup:
    check = options.pop("health_check", HealthCheckConfig(enabled=True, interval=5, timeout=2))
    config = TargetGroupConfig(name="g", backends=(A, B), health_check=check, **options)
    return TargetGroup(config, clock)


class ScriptedCheck:
    """A probe whose answer per backend the test sets; ``None`` never answers."""

    def __init__(self) -> None:
        self.answers = {A: True, B: True}
        self.calls = []

    def check(self, backend):
        self.calls.append(backend)
        answer = self.answers[backend]
        if answer is None:
            return defer.Deferred()
        if answer == "raise":
            raise RuntimeError("bug in a probe")
        return defer.succeed(None) if answer else defer.fail(ConnectionRefusedError())


def collect_logs(testcase):
    events = []
    globalLogPublisher.addObserver(events.append)
    testcase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def transitions(events):
    return [
        (e["backend"], e["old"], e["new"])
        for e in events
        if "old" in e and "new" in e and "backend" in e
    ]


class ActiveCheckTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.group = make_group(self.clock)
        self.check = ScriptedCheck()
        self.service = HealthCheckService(self.group, self.check, self.clock, random.Random(3))
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def run_checks(self, rounds):
        for _ in range(rounds):
            self.clock.advance(5.5)

    def test_unhealthy_after_threshold_failures_and_back_after_healthy_threshold(self):
        events = collect_logs(self)
        self.check.answers[A] = False
        self.clock.advance(5)
        self.clock.advance(5.5)
        self.assertEqual(self.group.health.state(A), HEALTHY)
        self.run_checks(2)
        self.assertEqual(self.group.health.state(A), UNHEALTHY)
        self.assertEqual({self.group.pick() for _ in range(6)}, {B})
        self.check.answers[A] = True
        self.run_checks(2)
        self.assertEqual(self.group.health.state(A), UNHEALTHY)
        self.run_checks(2)
        self.assertEqual(self.group.health.state(A), HEALTHY)
        self.assertEqual(
            transitions(events),
            [(A.address, HEALTHY, UNHEALTHY), (A.address, UNHEALTHY, HEALTHY)],
        )

    def test_checks_are_spread_and_repeat_every_interval_with_jitter(self):
        times = {A: [], B: []}
        answer = self.check.check
        self.check.check = lambda backend: (
            times[backend].append(self.clock.seconds()) or answer(backend)
        )
        for _ in range(400):
            self.clock.advance(0.25)
        self.assertNotEqual(times[A][0], times[B][0])
        self.assertTrue(all(0 <= t[0] <= 5 for t in times.values()), times)
        gaps = [b - a for t in times.values() for a, b in zip(t, t[1:])]
        self.assertGreater(len(gaps), 30)
        self.assertTrue(all(4.5 - 0.25 <= gap <= 5.5 + 0.25 for gap in gaps), gaps)
        self.assertGreater(len(set(gaps)), 2)

    def test_a_probe_that_never_answers_fails_after_the_timeout(self):
        self.check.answers[A] = None
        for _ in range(4):
            self.clock.advance(5.5)
            self.clock.advance(2)
        self.assertEqual(self.group.health.state(A), UNHEALTHY)
        self.assertEqual(self.group.health.record(A).last_error, "health check: timed out")

    def test_a_probe_that_raises_does_not_stop_the_schedule(self):
        self.check.answers[A] = "raise"
        self.run_checks(5)
        self.assertEqual(self.group.health.state(A), UNHEALTHY)
        self.check.answers[A] = True
        self.run_checks(4)
        self.assertEqual(self.group.health.state(A), HEALTHY)

    def test_stopping_leaves_no_timers(self):
        self.check.answers[A] = None
        self.clock.advance(5)
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PassiveEjectionTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.group = make_group(self.clock)

    def fail(self, times, backend=A):
        for _ in range(times):
            self.group.report_failure(backend, "connection refused")

    def test_three_consecutive_failures_eject_for_ten_seconds(self):
        self.fail(2)
        self.assertEqual(self.group.health.state(A), HEALTHY)
        self.fail(1)
        self.assertEqual(self.group.health.state(A), EJECTED)
        self.clock.advance(9.9)
        self.assertEqual(self.group.pick(), B)
        self.clock.advance(0.1)
        self.assertEqual(self.group.health.state(A), HEALTHY)

    def test_a_success_resets_the_count(self):
        self.fail(2)
        self.group.report_success(A)
        self.fail(2)
        self.assertEqual(self.group.health.state(A), HEALTHY)

    def test_repeated_ejection_doubles_up_to_the_cap(self):
        self.group = make_group(self.clock, passive=PassiveConfig(ejection=10, max_ejection=35))
        durations = []
        for _ in range(4):
            self.fail(3)
            start = self.clock.seconds()
            while self.group.health.state(A) == EJECTED:
                self.clock.advance(1)
            durations.append(self.clock.seconds() - start)
        self.assertEqual(durations, [10, 20, 35, 35])

    def test_ejection_time_starts_over_after_a_quiet_period(self):
        self.group = make_group(self.clock, passive=PassiveConfig(ejection=10, max_ejection=60))
        self.fail(3)
        self.clock.advance(10)
        self.assertEqual(self.group.health.state(A), HEALTHY)
        self.clock.advance(61)
        self.fail(3)
        self.clock.advance(10)
        self.assertEqual(self.group.health.state(A), HEALTHY)

    def test_5xx_counts_only_when_configured(self):
        for _ in range(5):
            self.group.report_status(A, 503)
        self.assertEqual(self.group.health.state(A), HEALTHY)
        counting = make_group(self.clock, passive=PassiveConfig(count_5xx=True))
        for _ in range(3):
            counting.report_status(A, 503)
        self.assertEqual(counting.health.state(A), EJECTED)

    def test_state_changes_are_logged_with_backend_states_and_reason(self):
        events = collect_logs(self)
        self.fail(3)
        self.clock.advance(10)
        self.group.health.available(A)
        changes = [e for e in events if "new" in e and "reason" in e]
        self.assertEqual(
            transitions(events), [(A.address, HEALTHY, EJECTED), (A.address, EJECTED, HEALTHY)]
        )
        self.assertIn("connection refused", changes[0]["reason"])
        self.assertEqual(changes[1]["reason"], "ejection ended")


class FailOpenAndClosedTests(unittest.TestCase):
    def test_fail_open_when_every_backend_is_out(self):
        clock = task.Clock()
        group = make_group(clock)
        for backend in (A, B):
            for _ in range(3):
                group.report_failure(backend, "reset")
        self.assertEqual({group.pick() for _ in range(4)}, {A, B})

    def test_fail_closed_answers_nothing(self):
        clock = task.Clock()
        group = make_group(clock, fail_open=False)
        for backend in (A, B):
            for _ in range(3):
                group.health.check_failed(backend, "status 500")
        self.assertIsNone(group.pick())


class OnUnhealthyTests(unittest.TestCase):
    def test_keep_leaves_live_sessions_alone(self):
        clock = task.Clock()
        group = make_group(clock)
        closed = []
        group.acquire(A, close=closed.append)
        for _ in range(3):
            group.report_failure(A, "reset")
        clock.advance(3600)
        self.assertEqual(closed, [])

    def test_close_ends_live_sessions_after_the_grace_period(self):
        clock = task.Clock()
        group = make_group(clock, on_unhealthy="close", on_unhealthy_grace=30)
        closed = []
        group.acquire(A, close=closed.append)
        group.acquire(B, close=closed.append)
        for _ in range(3):
            group.health.check_failed(A, "status 500")
        clock.advance(29)
        self.assertEqual(closed, [])
        clock.advance(1)
        self.assertEqual(closed, [f"backend {A.address} out of service"])

    def test_close_spares_a_backend_back_in_service_before_the_grace_ends(self):
        clock = task.Clock()
        group = make_group(clock, on_unhealthy="close", on_unhealthy_grace=30)
        closed = []
        group.acquire(A, close=closed.append)
        for _ in range(3):
            group.report_failure(A, "reset")
        clock.advance(30)
        self.assertEqual(closed, [])


class HealthStateTests(unittest.TestCase):
    def test_status_records_show_state_weight_sessions_and_last_error(self):
        clock = task.Clock()
        drained = BackendConfig("10.0.0.3", 8080, weight=0)
        config = TargetGroupConfig(name="g", backends=(A, drained))
        group = TargetGroup(config, clock)
        group.acquire(A)
        group.acquire(drained)
        clock.advance(100)
        for _ in range(3):
            group.report_failure(A, "connection refused")
        state = CheckedHealth({"g": group})
        self.assertTrue(verifyObject(IHealthView, state))
        self.assertEqual(state.groups(), ["g"])
        first, second = state.backends("g")
        self.assertEqual(
            attrs.asdict(first),
            {
                "group": "g",
                "address": A.address,
                "state": EJECTED,
                "weight": 10,
                "draining": False,
                "live": 1,
                "max_conns": 0,
                "last_change": 100.0,
                "last_error": "connection refused",
                "ejected_until": 110.0,
            },
        )
        self.assertEqual((second.state, second.draining, second.live), (HEALTHY, True, 1))


class _Page(Resource):
    isLeaf = True

    def __init__(self, status, body):
        super().__init__()
        self.status, self.body = status, body

    def render(self, request):
        request.setResponseCode(self.status)
        return self.body


class HTTPCheckTests(unittest.TestCase):
    def run_check(self, status, body=b"ok", **options):
        config = HealthCheckConfig(enabled=True, **options)
        client = StubTreq(_Page(status, body))
        d = HTTPCheck(config, client, task.Clock()).check(A)
        client.flush()
        return d

    def test_expected_status_passes(self):
        self.successResultOf(self.run_check(204))

    def test_unexpected_status_fails_with_the_status(self):
        failure = self.failureResultOf(self.run_check(500))
        self.assertEqual(failure.getErrorMessage(), "status 500")

    def test_status_ranges_and_body_match(self):
        self.successResultOf(self.run_check(404, expect_status=((404, 404),)))
        self.successResultOf(self.run_check(200, b"status: ok", expect_body="ok"))
        failure = self.failureResultOf(self.run_check(200, b"degraded", expect_body="ok"))
        self.assertEqual(failure.getErrorMessage(), "body does not contain 'ok'")


class TCPAndWebSocketCheckTests(unittest.TestCase):
    def test_tcp_check_passes_when_it_connects(self):
        reactor = MemoryReactorClock()
        d = TCPCheck(HealthCheckConfig(enabled=True, type="tcp", port=9000), reactor).check(A)
        host, port, factory, _, _ = reactor.tcpClients[0]
        self.assertEqual((port,), (9000,))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.successResultOf(d)
        self.assertTrue(transport.disconnecting)

    def handshake(self, answer):
        reactor = MemoryReactorClock()
        config = HealthCheckConfig(enabled=True, type="websocket", path="/ws")
        d = WebSocketCheck(config, reactor).check(A)
        factory = reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        request = transport.value().decode()
        self.assertTrue(request.startswith("GET /ws HTTP/1.1\r\n"))
        key = [
            line.split(": ", 1)[1]
            for line in request.split("\r\n")
            if line.startswith("Sec-WebSocket-Key")
        ][0]
        protocol.dataReceived(answer(key))
        return d

    def test_websocket_check_passes_on_a_valid_101(self):
        import base64
        import hashlib

        def accept(key):
            digest = hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
            value = base64.b64encode(digest.digest())
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + value + b"\r\n\r\n"
            )

        self.successResultOf(self.handshake(accept))

    def test_websocket_check_fails_on_another_status_or_a_wrong_accept(self):
        failure = self.failureResultOf(self.handshake(lambda key: b"HTTP/1.1 404 Nope\r\n\r\n"))
        self.assertEqual(failure.getErrorMessage(), "handshake answered 404")
        failure = self.failureResultOf(
            self.handshake(lambda key: b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: x\r\n\r\n")
        )
        self.assertEqual(failure.getErrorMessage(), "wrong Sec-WebSocket-Accept")
