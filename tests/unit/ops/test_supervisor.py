"""The worker supervisor's pure parts: restart backoff, worker configuration, merged views."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, error, task
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from clbproxy.config import (
    BackendConfig,
    Config,
    ListenerConfig,
    PersistenceConfig,
    RuleConfig,
    TargetGroupConfig,
    load_config,
)
from clbproxy.listener.limits import Admission, LimitStats
from clbproxy.observability.aggregate import _Families, merge_metrics, merge_status
from clbproxy.observability.livestate import LiveState
from clbproxy.observability.metrics import Metrics
from clbproxy.ops.control import worker_config
from clbproxy.ops.reload import ReloadOutcome
from clbproxy.ops.supervisor import RELOAD_TIMEOUT, Socket, Supervisor, restart_delay
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.upstream.health.view import UnknownHealth


def config(workers: int = 2, **options) -> Config:
    group = TargetGroupConfig(
        name="pool",
        backends=(BackendConfig("127.0.0.1", 9),),
        persistence=PersistenceConfig(type="cookie"),
    )
    listener = ListenerConfig(
        name="web", bind="tcp:0:interface=127.0.0.1", rules=(RuleConfig(target_group="pool"),)
    )
    return Config(
        path="tap.conf",
        listeners=(listener,),
        target_groups=(group,),
        workers=workers,
        **options,
    )


class FakeTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list = []

    def signalProcess(self, signum) -> None:
        self.signals.append(signum)


class ProcessClock(task.Clock):
    """A clock that records spawned processes and gives each a pid."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list = []

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None, **kwargs):
        transport = FakeTransport(1000 + len(self.spawned))
        self.spawned.append((protocol, args, env, childFDs))
        protocol.makeConnection(transport)
        return transport

    def adoptStreamConnection(self, fileno, family, factory):
        """The supervisor's end of a worker's control channel, in memory."""
        control = factory.buildProtocol(None)
        control.makeConnection(ControlTransport())
        self.spawned[-1][0].fake_control = control


class ControlTransport(StringTransport):
    """A unix socket's transport that records the descriptors it is asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.descriptors: list[int] = []

    def sendFileDescriptor(self, fileno: int) -> None:
        self.descriptors.append(fileno)


def killed() -> Failure:
    return Failure(error.ProcessTerminated(signal=signal.SIGKILL))


class RestartTests(unittest.TestCase):
    def supervisor(self) -> tuple[Supervisor, ProcessClock]:
        clock = ProcessClock()
        events: list = []
        supervisor = Supervisor(config(), clock, publisher=events.append, signals=False)
        supervisor.events = events
        supervisor.startService()
        self.addCleanup(shutil.rmtree, supervisor.runtime_dir, True)
        return supervisor, clock

    def test_restart_delay_is_immediate_then_doubles_up_to_a_cap(self) -> None:
        self.assertEqual(
            [restart_delay(n) for n in range(1, 10)],
            [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0],
        )

    def test_start_spawns_one_process_per_worker(self) -> None:
        supervisor, clock = self.supervisor()
        self.assertEqual(len(clock.spawned), 2)
        self.assertEqual([w.pid for _, w in sorted(supervisor.workers.items())], [1000, 1001])
        _, args, env, fds = clock.spawned[0]
        self.assertEqual(args[-4:], ["--config", args[-3], "--index", "1"])
        self.assertEqual(fds[0], "w")
        self.assertEqual(fds[3], "r")

    def test_a_crashed_worker_is_restarted_at_once_then_with_backoff(self) -> None:
        supervisor, clock = self.supervisor()
        clock.advance(60)
        supervisor.workers[1].processEnded(killed())
        clock.advance(0)
        self.assertEqual(len(clock.spawned), 3)
        self.assertEqual(supervisor.workers[1].pid, 1002)

        clock.advance(1)
        supervisor.workers[1].processEnded(killed())
        clock.advance(0.4)
        self.assertEqual(len(clock.spawned), 3)
        self.assertNotIn(1, supervisor.workers)
        clock.advance(0.1)
        self.assertEqual(len(clock.spawned), 4)

        clock.advance(1)
        supervisor.workers[1].processEnded(killed())
        clock.advance(0.9)
        self.assertEqual(len(clock.spawned), 4)
        clock.advance(0.1)
        self.assertEqual(len(clock.spawned), 5)
        self.assertEqual(supervisor.restarts, {1: 3})
        self.assertEqual(supervisor.restart_counter._value.get(), 3)

    def test_a_worker_that_ran_long_enough_is_restarted_at_once_again(self) -> None:
        supervisor, clock = self.supervisor()
        for _ in range(3):
            clock.advance(1)
            supervisor.workers[2].processEnded(killed())
            clock.advance(30)
        spawned = len(clock.spawned)
        clock.advance(20)
        supervisor.workers[2].processEnded(killed())
        clock.advance(0)
        self.assertEqual(len(clock.spawned), spawned + 1)

    def test_a_restarted_worker_is_given_the_runtime_actions_taken_so_far(self) -> None:
        supervisor, clock = self.supervisor()
        action = {"group": "pool", "address": "127.0.0.1:9", "action": "disable", "body": {}}
        supervisor.remember_action(action)
        supervisor.workers[1].processEnded(killed())
        clock.advance(0)
        _, _, env, _ = clock.spawned[-1]
        self.assertEqual(json.loads(env["CLBPROXY_WORKER_ACTIONS"]), [action])
        self.assertEqual(json.loads(clock.spawned[0][2]["CLBPROXY_WORKER_ACTIONS"]), [])

    def test_stopping_signals_every_worker_and_restarts_none(self) -> None:
        supervisor, clock = self.supervisor()
        workers = list(supervisor.workers.values())
        stopped = supervisor.stopService()
        self.assertEqual([w.transport.signals for w in workers], [[signal.SIGTERM]] * 2)
        for worker in workers:
            worker.processEnded(Failure(error.ProcessDone(0)))
        clock.advance(10)
        self.assertEqual(len(clock.spawned), 2)
        self.assertTrue(stopped.called)

    def test_workers_still_running_after_the_drain_timeout_are_killed(self) -> None:
        supervisor, clock = self.supervisor()
        workers = list(supervisor.workers.values())
        supervisor.stopService()
        clock.advance(supervisor.config.drain_timeout + 5)
        self.assertEqual(
            [w.transport.signals for w in workers], [[signal.SIGTERM, signal.SIGKILL]] * 2
        )

    def test_worker_log_records_are_relayed_with_the_worker_as_system(self) -> None:
        supervisor, _ = self.supervisor()
        worker = supervisor.workers[2]
        worker.childDataReceived(3, b'\x1e{"log_format": "hello {name}", "name": "wo')
        worker.childDataReceived(
            3,
            b'rld", "log_level": {"name": "info", "__class_uuid__": '
            b'"02E59486-F24D-46AD-8224-3ACDF2A5732A"}}\n',
        )
        relayed = [e for e in supervisor.events if e.get("log_format") == "hello {name}"]
        self.assertEqual(len(relayed), 1)
        self.assertEqual((relayed[0]["name"], relayed[0]["log_system"]), ("world", "worker 2"))


class WorkerConfigTests(unittest.TestCase):
    def test_a_worker_answers_admin_on_its_socket_runs_no_demo_and_shares_the_secret(self):
        original = attrs.evolve(config(), warnings=("something",))
        changed = worker_config(original, "/run/w1", "s" * 32)
        self.assertEqual(changed.admin.bind, "unix:/run/w1:lockfile=0")
        self.assertEqual(changed.demo_backends, ())
        self.assertEqual(changed.warnings, ())
        self.assertEqual(changed.target_groups[0].persistence.secret, "s" * 32)
        self.assertEqual(changed.listeners, original.listeners)

    def test_a_configured_secret_is_kept(self):
        group = attrs.evolve(
            config().target_groups[0],
            persistence=PersistenceConfig(type="cookie", secret="configured-secret-1"),
        )
        changed = worker_config(attrs.evolve(config(), target_groups=(group,)), "/w", "x" * 32)
        self.assertEqual(changed.target_groups[0].persistence.secret, "configured-secret-1")


WORKER_1 = """\
# HELP clbproxy_http_requests_total HTTP requests answered.
# TYPE clbproxy_http_requests_total counter
clbproxy_http_requests_total{listener="web",backend="b1",status="200"} 3.0
clbproxy_http_requests_created{listener="web",backend="b1",status="200"} 1.7e9
# HELP clbproxy_connections_active Open client connections.
# TYPE clbproxy_connections_active gauge
clbproxy_connections_active{listener="web"} 2.0
# HELP clbproxy_backend_health Health.
# TYPE clbproxy_backend_health gauge
clbproxy_backend_health{group="g",backend="b1",state="healthy"} 1.0
clbproxy_backend_health{group="g",backend="b1",state="unhealthy"} 0.0
# HELP clbproxy_http_response_seconds Latency.
# TYPE clbproxy_http_response_seconds histogram
clbproxy_http_response_seconds_bucket{listener="web",le="0.1"} 2.0
clbproxy_http_response_seconds_bucket{listener="web",le="+Inf"} 3.0
clbproxy_http_response_seconds_count{listener="web"} 3.0
clbproxy_http_response_seconds_sum{listener="web"} 0.5
# HELP clbproxy_config_reloads_total Reloads.
# TYPE clbproxy_config_reloads_total counter
clbproxy_config_reloads_total{result="success"} 1.0
"""

WORKER_2 = """\
# HELP clbproxy_http_requests_total HTTP requests answered.
# TYPE clbproxy_http_requests_total counter
clbproxy_http_requests_total{listener="web",backend="b1",status="200"} 4.0
clbproxy_http_requests_total{listener="web",backend="b1",status="502"} 1.0
# HELP clbproxy_connections_active Open client connections.
# TYPE clbproxy_connections_active gauge
clbproxy_connections_active{listener="web"} 5.0
# HELP clbproxy_backend_health Health.
# TYPE clbproxy_backend_health gauge
clbproxy_backend_health{group="g",backend="b1",state="healthy"} 0.0
clbproxy_backend_health{group="g",backend="b1",state="unhealthy"} 1.0
# HELP clbproxy_http_response_seconds Latency.
# TYPE clbproxy_http_response_seconds histogram
clbproxy_http_response_seconds_bucket{listener="web",le="0.1"} 1.0
clbproxy_http_response_seconds_bucket{listener="web",le="+Inf"} 1.0
clbproxy_http_response_seconds_count{listener="web"} 1.0
clbproxy_http_response_seconds_sum{listener="web"} 0.25
"""


def samples(families) -> dict:
    registry = CollectorRegistry()
    registry.register(_Families(families))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class MergeMetricsTests(unittest.TestCase):
    def test_counters_histograms_and_counting_gauges_are_summed(self):
        merged = samples(merge_metrics([WORKER_1, WORKER_2]))
        web = (("listener", "web"),)
        ok = (("backend", "b1"), ("listener", "web"), ("status", "200"))
        self.assertEqual(merged["clbproxy_http_requests_total", ok], 7.0)
        self.assertEqual(merged["clbproxy_connections_active", web], 7.0)
        self.assertEqual(merged["clbproxy_http_response_seconds_count", web], 4.0)
        self.assertEqual(merged["clbproxy_http_response_seconds_sum", web], 0.75)
        self.assertEqual(
            merged["clbproxy_http_response_seconds_bucket", (("le", "0.1"), *web)], 3.0
        )

    def test_a_state_is_shown_when_any_worker_is_in_it(self):
        merged = samples(merge_metrics([WORKER_1, WORKER_2]))
        labels = (("backend", "b1"), ("group", "g"))
        self.assertEqual(merged["clbproxy_backend_health", (*labels, ("state", "healthy"))], 1.0)
        self.assertEqual(merged["clbproxy_backend_health", (*labels, ("state", "unhealthy"))], 1.0)

    def test_limit_refusals_timeouts_and_backend_load_of_real_workers_are_summed(self):
        texts = [worker_metrics(denied=1, in_flight=1), worker_metrics(denied=2, in_flight=3)]
        merged = samples(merge_metrics(texts))
        web = (("listener", "web"),)
        backend = (("backend", "127.0.0.1:9"), ("group", "pool"))
        refused = (*web, ("reason", "listener_deny"), ("status", "403"))
        self.assertEqual(merged["clbproxy_limit_refusals_total", refused], 3.0)
        self.assertEqual(
            merged["clbproxy_websocket_handshakes_total", (*web, ("status", "403"))], 3.0
        )
        self.assertEqual(merged["clbproxy_accept_paused_total", web], 2.0)
        self.assertEqual(merged["clbproxy_global_accept_paused_total", ()], 2.0)
        self.assertEqual(merged["clbproxy_http_timeouts_total", web], 2.0)
        self.assertEqual(merged["clbproxy_websocket_timeouts_total", (("kind", "ping"), *web)], 2.0)
        self.assertEqual(merged["clbproxy_backend_in_flight", backend], 4.0)
        self.assertEqual(merged["clbproxy_backend_sent_total", backend], 4.0)

    def test_reload_metrics_and_created_timestamps_of_workers_are_dropped(self):
        names = {name for name, _ in samples(merge_metrics([WORKER_1, WORKER_2]))}
        self.assertNotIn("clbproxy_config_reloads_total", names)
        self.assertFalse([name for name in names if name.endswith("_created")])


def worker_metrics(denied: int, in_flight: int) -> str:
    """One worker's ``/metrics`` page after ``denied`` refused handshakes (403), a
    listener and a global accept pause, a 408, a ping timeout and ``in_flight``
    requests under way."""
    conf = config(1, max_connections=10)
    listener = attrs.evolve(conf.listeners[0], deny=("10.0.0.0/8",))
    clock = task.Clock()
    groups = {group.name: TargetGroup(group, clock) for group in conf.target_groups}
    gate_stats = LimitStats()
    live = LiveState(conf, groups, UnknownHealth(conf.target_groups), gate_stats=gate_stats)
    stats = LimitStats()
    live.add_listener(listener, set(), stats)
    admission = Admission(listener, clock, stats)
    for _ in range(denied):
        admission.check("10.0.0.1", None, websocket=True)
    for name in ("accept_paused", "header_timeouts", "websocket_ping_timeouts"):
        stats.increment(name)
    gate_stats.increment("accept_paused")
    for _ in range(in_flight):
        groups["pool"].acquire(groups["pool"].backends[0])
    registry = CollectorRegistry()
    Metrics(registry, live)
    return generate_latest(registry).decode("utf-8")


def snapshot(connections, sessions, health, backend_sessions, errors=()):
    return {
        "config": "tap.conf",
        "uptime": 1.0,
        "listeners": [
            {
                "name": "web",
                "protocol": "http",
                "bind": "tcp:80",
                "connections": connections,
                "connections_total": connections * 10,
                "sessions": sessions,
                "rules": [],
            }
        ],
        "target_groups": [
            {
                "name": "g",
                "policy": "round_robin",
                "backends": [
                    {
                        "address": "b1",
                        "weight": 10,
                        "configured_weight": 10,
                        "state": "drain",
                        "health": health,
                        "health_detail": f"{health} detail",
                        "sessions": backend_sessions,
                        "recent_errors": list(errors),
                    }
                ],
            }
        ],
    }


class MergeStatusTests(unittest.TestCase):
    def test_listeners_and_backends_are_summed_and_the_worst_health_wins(self):
        merged = merge_status(
            [
                (
                    {"index": 1, "pid": 11},
                    snapshot(2, 1, "healthy", 1, [{"time": 5, "message": "a"}]),
                ),
                (
                    {"index": 2, "pid": 12},
                    snapshot(3, 2, "unhealthy", 0, [{"time": 9, "message": "b"}]),
                ),
                ({"index": 3, "pid": 13}, None),
            ],
            "tap.conf",
            42.0,
        )
        (listener,) = merged["listeners"]
        self.assertEqual(
            (listener["connections"], listener["connections_total"], listener["sessions"]),
            (5, 50, 3),
        )
        (backend,) = merged["target_groups"][0]["backends"]
        self.assertEqual(
            (backend["health"], backend["health_detail"]), ("unhealthy", "unhealthy detail")
        )
        self.assertEqual(backend["sessions"], 1)
        self.assertEqual(backend["state"], "drain")
        self.assertEqual([e["message"] for e in backend["recent_errors"]], ["b", "a"])
        self.assertEqual([view["health"] for view in backend["workers"]], ["healthy", "unhealthy"])
        self.assertEqual(
            [
                (w["pid"], w["up"], w["connections"], w["connections_total"], w["sessions"])
                for w in merged["workers"]
            ],
            [(11, True, 2, 20, 1), (12, True, 3, 30, 2), (13, False, 0, 0, 0)],
        )
        self.assertEqual(merged["uptime"], 42.0)

    def test_a_drained_backend_is_drained_only_when_no_worker_holds_a_session(self):
        merged = merge_status(
            [
                ({"index": 1}, snapshot(0, 0, "healthy", 0)),
                ({"index": 2}, snapshot(0, 0, "healthy", 0)),
            ],
            "tap.conf",
            None,
        )
        self.assertEqual(merged["target_groups"][0]["backends"][0]["state"], "drained")


class MakeServiceTests(unittest.TestCase):
    def options(self, workers: int):
        from clbproxy.tap import Options

        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                f"workers = {workers}\n"
                '[[listener]]\nname = "web"\nbind = "tcp:0:interface=127.0.0.1"\n'
                '[[listener.rule]]\ntarget_group = "g"\n'
                '[target_group.g]\nbackends = ["127.0.0.1:9"]\n'
            )
        options = Options()
        options.parseOptions(["--config", path])
        return options

    def test_more_than_one_worker_makes_twistd_a_supervisor(self):
        from clbproxy.net import dispatch
        from clbproxy.ops.services import ProxyService
        from clbproxy.tap import makeService
        from clbproxy.util import gcfreeze

        # makeService takes over the reactor's dispatch; trial's reactor is left as it is.
        self.patch(dispatch, "lean_dispatch", lambda reactor: False)
        # Nor is trial's heap frozen (the reactor runs: the freeze would happen now).
        self.patch(gcfreeze, "freeze_after_start", lambda reactor, reloader=None: None)

        self.assertIsInstance(makeService(self.options(3)), Supervisor)
        self.assertIsInstance(makeService(self.options(1)), ProxyService)


TAP = """\
workers = {workers}
[[listener]]
name = "web"
bind = "tcp:0:interface=127.0.0.1"
{rule}
  [[listener.rule]]
  target_group = "g"
{other}
[target_group.g]
backends = ["127.0.0.1:9"]
"""

OTHER = """
[[listener]]
name = "other"
bind = "tcp:1:interface=127.0.0.1"
  [[listener.rule]]
  target_group = "g"
"""

FIXED = """
  [[listener.rule]]
  path = "= /fixed"
  fixed_response = { status = 200, body = "fixed" }
"""


class FakeListeningPort:
    """A listening socket the supervisor opened (its descriptor is all a worker needs)."""

    def __init__(self, fileno: int) -> None:
        self._fileno = fileno
        self.socket = socket.socket()
        self.closed = False

    def fileno(self) -> int:
        return self._fileno

    def stopListening(self) -> None:
        self.closed = True
        self.socket.close()


class ReloadTests(unittest.TestCase):
    """The supervisor's side of a reload, with workers answering on in-memory channels."""

    def supervisor(self, other: str = "") -> tuple[Supervisor, ProcessClock]:
        self.path = self.mktemp()
        self.write(other=other)
        clock = ProcessClock()
        events: list = []
        supervisor = Supervisor(load_config(self.path), clock, publisher=events.append)
        supervisor.signals = False
        self.events = events
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        # What privilegedStartService binds, without sockets.
        self.ports = {}
        for number, listener in enumerate(supervisor.config.listeners):
            port = FakeListeningPort(50 + number)
            self.ports[listener.bind] = port
            supervisor.sockets[listener.bind] = Socket(listener.bind, port)
            self.addCleanup(port.socket.close)
        supervisor.startService()
        self.addCleanup(shutil.rmtree, supervisor.runtime_dir, True)
        return supervisor, clock

    def write(self, workers: int = 2, rule: str = "", other: str = "") -> None:
        with open(self.path, "w") as f:
            f.write(TAP.format(workers=workers, rule=rule, other=other))

    def asked(self, worker) -> list:
        """The reloads a worker was asked for: (descriptors passed, message)."""
        transport = worker.fake_control.transport
        lines = [json.loads(line) for line in transport.value().splitlines()]
        return [(transport.descriptors, line) for line in lines]

    def answer(self, worker, number: int, applied: bool, error: str = "") -> None:
        reply = {"reload": number, "applied": applied, "error": error}
        worker.fake_control.dataReceived(json.dumps(reply).encode() + b"\n")

    def reloads(self, supervisor, result: str) -> float:
        return supervisor.registry.get_sample_value(
            "clbproxy_config_reloads_total", {"result": result}
        )

    def errors(self) -> list[str]:
        return [
            formatEvent(e)
            for e in self.events
            if e.get("log_level") == LogLevel.error
            and e.get("log_namespace") == "clbproxy.ops.supervisor"
        ]

    def test_each_worker_is_sent_every_bind_s_socket_with_its_descriptor(self):
        supervisor, _ = self.supervisor(other=OTHER)
        first = supervisor.workers[1]
        self.write(rule=FIXED, other=OTHER)

        supervisor.reload()

        [(descriptors, message)] = self.asked(first)
        self.assertEqual(descriptors, [50, 51])
        self.assertEqual(
            message["sockets"],
            [
                ["tcp:0:interface=127.0.0.1", socket.AF_INET],
                ["tcp:1:interface=127.0.0.1", socket.AF_INET],
            ],
        )

    def test_the_other_workers_are_asked_once_the_first_applied_the_file(self):
        supervisor, _ = self.supervisor()
        first, second = supervisor.workers[1], supervisor.workers[2]
        self.write(rule=FIXED)

        result = supervisor.reload()
        self.assertEqual(self.asked(second), [])
        self.answer(first, 1, True)
        self.assertEqual(len(self.asked(second)), 1)
        self.assertNoResult(result)
        self.answer(second, 1, True)

        self.assertIs(self.successResultOf(result), True)
        self.assertEqual(self.reloads(supervisor, "success"), 1)
        self.assertEqual([first.transport.signals, second.transport.signals], [[], []])

    def test_a_refusal_by_the_first_worker_refuses_the_reload_with_one_line(self):
        supervisor, _ = self.supervisor()
        first, second = supervisor.workers[1], supervisor.workers[2]
        self.write(rule=FIXED)

        result = supervisor.reload()
        self.answer(first, 1, False, "listener:web: certificate.pem: no such file")

        self.assertIs(self.successResultOf(result), False)
        self.assertEqual(self.asked(second), [])
        self.assertEqual(
            self.errors(),
            [
                "reload refused: worker 1 cannot apply it: listener:web: certificate.pem: "
                "no such file; the workers keep serving"
            ],
        )
        self.assertEqual(self.reloads(supervisor, "failure"), 1)
        self.assertEqual(len(supervisor.config.listeners[0].rules), 1)

    def test_a_later_worker_that_refuses_is_replaced_by_one_with_the_new_file(self):
        supervisor, clock = self.supervisor()
        first, second = supervisor.workers[1], supervisor.workers[2]
        self.write(rule=FIXED)

        result = supervisor.reload()
        self.answer(first, 1, True)
        self.answer(second, 1, False, "it could not")

        self.assertIs(self.successResultOf(result), True)
        self.assertEqual(second.transport.signals, [signal.SIGTERM])
        self.assertEqual(len(clock.spawned), 3)
        self.assertIsNot(supervisor.workers[2], second)
        self.assertIn("did not apply tap.conf: it could not; replacing it", self.errors()[0])

    def test_a_worker_that_does_not_answer_is_replaced_and_the_next_one_decides(self):
        supervisor, clock = self.supervisor()
        first, second = supervisor.workers[1], supervisor.workers[2]
        self.write(rule=FIXED)

        result = supervisor.reload()
        clock.advance(RELOAD_TIMEOUT)
        self.assertEqual(first.transport.signals, [signal.SIGTERM])
        self.answer(second, 1, True)

        self.assertIs(self.successResultOf(result), True)
        self.assertEqual(len(clock.spawned), 3)

    def test_a_bind_that_is_gone_is_closed_once_every_worker_answered(self):
        supervisor, _ = self.supervisor(other=OTHER)
        first, second = supervisor.workers[1], supervisor.workers[2]
        gone = self.ports["tcp:1:interface=127.0.0.1"]
        self.write()

        supervisor.reload()
        self.answer(first, 1, True)
        self.assertFalse(gone.closed)
        self.answer(second, 1, True)

        self.assertTrue(gone.closed)
        self.assertFalse(self.ports["tcp:0:interface=127.0.0.1"].closed)

    def test_a_worker_that_ends_during_a_reload_does_not_hold_it_up(self):
        supervisor, _ = self.supervisor()
        first, second = supervisor.workers[1], supervisor.workers[2]
        self.write(rule=FIXED)

        result = supervisor.reload()
        first.fake_control.connectionLost(None)
        self.answer(second, 1, True)

        self.assertIs(self.successResultOf(result), True)

    def test_fewer_workers_stop_the_extra_ones_and_more_start_new_ones(self):
        supervisor, clock = self.supervisor()
        first, second = supervisor.workers[1], supervisor.workers[2]
        self.write(workers=1)
        result = supervisor.reload()
        self.answer(first, 1, True)
        self.assertIs(self.successResultOf(result), True)
        self.assertEqual(self.asked(second), [])
        self.assertEqual(second.transport.signals, [signal.SIGTERM])
        self.assertEqual(sorted(supervisor.workers), [1])

        self.write(workers=3)
        result = supervisor.reload()
        self.answer(first, 2, True)
        self.assertIs(self.successResultOf(result), True)
        self.assertEqual(sorted(supervisor.workers), [1, 2, 3])
        self.assertEqual(len(clock.spawned), 4)
        self.assertEqual(first.transport.signals, [])


class SupervisorControlTests(unittest.TestCase):
    """A worker's end of the control channel."""

    def control(self, reload):
        from clbproxy.ops.worker_process import InheritedSockets, SupervisorControl

        self.inherited = InheritedSockets(None, {})
        control = SupervisorControl(self.inherited, reload, 1)
        control.makeConnection(StringTransport())
        return control

    def descriptor(self) -> int:
        sock = socket.socket()
        self.addCleanup(sock.close)
        return os.dup(sock.fileno())

    def send(self, control, sockets: list) -> None:
        for _, fd in sockets:
            control.fileDescriptorReceived(fd)
        message = {"reload": 7, "sockets": [[bind, socket.AF_INET] for bind, _ in sockets]}
        control.dataReceived(json.dumps(message).encode() + b"\n")

    def test_new_binds_adopt_the_sockets_passed_and_the_rest_are_closed(self):
        from twisted.internet.endpoints import AdoptedStreamServerEndpoint

        endpoints = []

        def reload():
            endpoints.append(self.inherited("tcp:2"))
            return defer.succeed(ReloadOutcome(True))

        control = self.control(reload)
        taken, kept = self.descriptor(), self.descriptor()
        self.send(control, [("tcp:1", kept), ("tcp:2", taken)])

        self.assertIsInstance(endpoints[0], AdoptedStreamServerEndpoint)
        self.assertEqual(json.loads(control.transport.value()), {"reload": 7, "applied": True})
        # The listener kept its own socket: the copy sent for it is closed.
        self.assertRaises(OSError, os.fstat, kept)
        os.close(taken)

    def test_a_refused_reload_is_answered_with_its_reason(self):
        def reload():
            return defer.succeed(ReloadOutcome(False, "listener:web: cannot listen"))

        control = self.control(reload)
        unused = self.descriptor()
        self.send(control, [("tcp:3", unused)])

        self.assertEqual(
            json.loads(control.transport.value()),
            {"reload": 7, "applied": False, "error": "listener:web: cannot listen"},
        )
        self.assertRaises(OSError, os.fstat, unused)
