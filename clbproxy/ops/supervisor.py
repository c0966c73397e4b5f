"""``workers = N``: a supervisor process and N worker processes sharing the listening sockets.

The ``twistd clbproxy`` process becomes the supervisor.  It binds every
listener's socket itself (so a port in use still stops start-up with one line),
then starts N workers (``python -m clbproxy.ops.worker_process``) that adopt those sockets
and each run the whole proxy; the kernel hands every new connection to one of
them.  The supervisor serves no traffic.  It:

- restarts a worker that exits unexpectedly: at once the first time, then with
  a doubling delay (0.5 s up to 30 s) while restarted workers keep dying within
  :data:`STABLE_AFTER` seconds; each restart is logged and counted
  (``clbproxy_worker_restarts_total``);
- on SIGHUP validates tap.conf once (problems are logged once, and the workers
  keep serving), binds the sockets of new ``bind`` strings and starts new admin
  and demo ports, then has the workers apply the file in place, as one process
  does (open connections and WebSocket sessions are kept): it hands each worker
  the sockets of the new file's binds over its control channel (a unix socket
  pair, the descriptors passed with ``SCM_RIGHTS``), first to one worker and,
  once that one applied the file, to the others.  A worker that refuses the
  file (it keeps serving the previous one) refuses the whole reload while it is
  the first; later, it is replaced by a worker started with the new file.  The
  sockets of binds that are gone are closed once every worker answered.  A
  changed ``workers`` starts or stops the difference;
- on SIGTERM stops every worker (each drains within ``drain_timeout``) and
  exits when they all have, killing any left ``drain_timeout`` + 5 s later;
- forwards SIGUSR1 (reopen log files) and reopens its own log file (the
  signal handling is one process's, :mod:`clbproxy.ops.signals`);
- under systemd, sends ``READY=1`` once every worker serves, and
  ``RELOADING=1`` / ``READY=1`` around a SIGHUP reload (:mod:`clbproxy.ops.notify`);
- relays every worker's log events into its own log (the worker's index is the
  event's system, ``[worker 1]``);
- runs the admin listener for the whole group (:mod:`clbproxy.observability.aggregate`) and
  the demo backends; a reload starts and stops them as tap.conf now says, like
  in one process (:func:`clbproxy.ops.reload.plan_side_services`).

Each worker runs its own health checks, balancing state, connection limits
and persistence table, like nginx workers and HAProxy's ``nbproc``.  Cookie
persistence works across workers: the supervisor gives them one HMAC secret
when tap.conf sets none.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from typing import Callable, Optional, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from clbproxy.config import AdminConfig, Config, ConfigError
from clbproxy.demo.backend import ChatRoom, demo_service
from clbproxy.observability.aggregate import IProcessGroup, group_admin_site
from clbproxy.observability.metrics import Metrics
from clbproxy.observability.service import AccessLogError, check_access_logs
from clbproxy.observability.textlog import install_fast_text_log
from clbproxy.ops.binding import adopt_running, describe_listen_error, start_children_privileged
from clbproxy.ops.control import (
    CONTROL_FD,
    ENV_ACTIONS,
    ENV_ADMIN,
    ENV_SECRET,
    ENV_SOCKETS,
    FIRST_SOCKET_FD,
    LOG_FD,
    ControlChannel,
    Socket,
)
from clbproxy.ops.logfiles import LogReopener
from clbproxy.ops.notify import NOTIFY_SOCKET, Notifier
from clbproxy.ops.preflight import load_checked, prepare_certificates
from clbproxy.ops.reload import plan_side_services
from clbproxy.ops.signals import SignalHandlers
from clbproxy.upstream.balancer import action_survives

log = Logger()

#: A worker that ran this many seconds before dying is restarted at once.
STABLE_AFTER = 10.0
#: The longest wait before restarting a worker that keeps dying.
MAX_RESTART_DELAY = 30.0
#: Seconds after ``drain_timeout`` at which workers still running are killed.
STOP_GRACE = 5.0

#: Seconds a worker has to answer a reload before it is replaced.
RELOAD_TIMEOUT = 30.0


def restart_delay(failures: int) -> float:
    """Seconds to wait before restarting a worker that died ``failures`` times in a row.

    The first death is restarted at once (a crash in a worker that ran well);
    a worker that keeps dying soon after start waits 0.5, 1, 2... up to
    :data:`MAX_RESTART_DELAY` seconds, so a broken setup does not spin.
    """
    if failures <= 1:
        return 0.0
    return min(0.5 * 2 ** (failures - 2), MAX_RESTART_DELAY)


def open_socket(reactor, bind: str) -> Socket:
    """Bind ``bind``'s socket now; raises ``CannotListenError`` (or the endpoint's error).

    The supervisor never accepts on it: reading is turned off at once, and the
    workers' copies take the connections.
    """
    endpoint = serverFromString(reactor, bind)
    results: list = []
    factory = protocol.Factory.forProtocol(protocol.Protocol)
    factory.noisy = False
    endpoint.listen(factory).addBoth(results.append)
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    result.stopReading()
    return Socket(bind, result)


class WorkerProcess(protocol.ProcessProtocol):
    """One worker: relays its log events and tells the supervisor when it ends."""

    def __init__(self, supervisor: Supervisor, index: int, generation: int, started: float):
        self.supervisor = supervisor
        self.index = index
        self.generation = generation
        self.started = started
        self.pid: Optional[int] = None
        #: Set when the supervisor stops it on purpose (stop, replaced, or past ``workers``).
        self.retiring = False
        self.ended = defer.Deferred()
        self.control = ControlChannel()
        self._buffer = b""

    @property
    def admin_socket(self) -> str:
        return os.path.join(self.supervisor.runtime_dir, f"worker-{self.generation}-{self.index}")

    def info(self) -> dict:
        return {
            "index": self.index,
            "pid": self.pid,
            "generation": self.generation,
            "restarts": self.supervisor.restarts.get(self.index, 0),
            "started": self.started,
        }

    def connectionMade(self) -> None:
        self.pid = self.transport.pid

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd != LOG_FD:
            return
        # Each record is RS, one line of JSON, LF (JSON text has no raw newline).
        self._buffer += data
        *records, self._buffer = self._buffer.split(b"\n")
        for record in records:
            self._publish(record)

    def _publish(self, record: bytes) -> None:
        text = record.decode("utf-8", "replace").strip("\x1e \r\n")
        if not text:
            return
        try:
            event = eventFromJSON(text)
        except ValueError:
            return
        event["log_system"] = f"worker {self.index}"
        event["worker"] = self.index
        self.supervisor.publisher(event)

    def signal(self, signum: int) -> None:
        if self.pid is not None and self.transport is not None:
            try:
                self.transport.signalProcess(signum)
            except error.ProcessExitedAlready:
                pass

    def reload(self, sockets: list[Socket]) -> defer.Deferred:
        """Have this worker apply tap.conf with ``sockets``; fires with its answer.

        No answer within :data:`RELOAD_TIMEOUT` seconds is a refusal with
        ``timeout`` set.
        """
        answered = self.control.reload(sockets)
        result = defer.Deferred()
        answered.addCallback(lambda answer: None if result.called else result.callback(answer))

        def too_late() -> None:
            if not result.called:
                error = f"no answer within {RELOAD_TIMEOUT:g} s"
                result.callback({"applied": False, "timeout": True, "error": error})

        timer = self.supervisor.reactor.callLater(RELOAD_TIMEOUT, too_late)
        result.addBoth(lambda answer: (timer.cancel() if timer.active() else None, answer)[1])
        return result

    def processEnded(self, reason: Failure) -> None:
        if self._buffer:
            self._publish(self._buffer)
            self._buffer = b""
        self.supervisor.worker_ended(self, reason)
        self.ended.callback(reason.value)


@implementer(IProcessGroup)
class Supervisor(MultiService):
    """The process group's parent: sockets, workers, signals and the group's admin listener."""

    def __init__(
        self,
        config: Config,
        reactor,
        *,
        command: Optional[list[str]] = None,
        publisher: Callable[[dict], None] = globalLogPublisher,
        signals: bool = True,
        notifier: Optional[Notifier] = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.config_path = config.path
        #: What a reload reads (in fleet mode: :mod:`clbproxy.ops.fleet`); raises ``ConfigError``.
        self.load: Callable[[], Config] = lambda: load_checked(self.config_path)
        #: More arguments for each worker (in fleet mode: where its document is).
        self.worker_arguments: list[str] = []
        # Workers get an absolute path: twistd may change directory when it daemonizes.
        self._worker_config_path = os.path.abspath(config.path)
        self.reactor = reactor
        self.publisher = publisher
        self.signals = signals
        self.command = command or [sys.executable, "-m", "clbproxy.ops.worker_process"]
        self.sockets: dict[str, Socket] = {}
        self.workers: dict[int, WorkerProcess] = {}
        #: Deaths in a row of each worker index that did not live :data:`STABLE_AFTER` s.
        self.failures: dict[int, int] = {}
        self.restarts: dict[int, int] = {}
        self.generation = 0
        self.stopping = False
        #: The demo backends' chat room (they run in the supervisor).
        self.room = ChatRoom(reactor)
        self.secret = secrets.token_hex(32)
        self.runtime_dir = ""
        self._pending: dict[int, object] = {}
        self._retired: list[WorkerProcess] = []
        #: Sockets a reload under way opened: workers started meanwhile get them too.
        self._opening: dict[str, Socket] = {}
        self._reloading = False
        #: Callers of SIGHUPs that came during a reload: one more reload answers them.
        self._queued: list[defer.Deferred] = []
        #: Runtime actions on target groups no reload changed since, for workers started later.
        self._actions: list[dict] = []
        #: systemd hears READY=1 once every worker of the first generation serves.
        self.notifier = notifier or Notifier(None)
        self._ready_sent = False
        self.log_reopener = LogReopener()
        self._handlers: Optional[SignalHandlers] = None
        self._started_at = reactor.seconds()
        self.registry = CollectorRegistry()
        self._workers_gauge = Gauge(
            "clbproxy_workers", "Worker processes running.", registry=self.registry
        )
        self._workers_gauge.set_function(lambda: len(self.workers))
        self.restart_counter = Counter(
            "clbproxy_worker_restarts",
            "Worker processes restarted after exiting unexpectedly.",
            registry=self.registry,
        )
        self.reloads = Metrics.register_reload_metrics(self.registry)

    # -- IProcessGroup (the admin listener) ------------------------------------------------

    def take_config_from(
        self, load: Callable[[], Config], path: str, worker_arguments: Sequence[str] = ()
    ) -> None:
        """Read reloads with ``load``; start workers on ``path`` with ``worker_arguments``.

        Fleet mode (:mod:`clbproxy.ops.fleet`): the local file, with the accepted
        document from etcd in a snapshot file the workers are pointed at.
        """
        self.load = load
        self.config_path = path
        self._worker_config_path = os.path.abspath(path)
        self.worker_arguments = list(worker_arguments)

    def uptime(self) -> Optional[float]:
        return self.reactor.seconds() - self._started_at

    def admin_targets(self) -> list:
        return [(w.info(), w.admin_socket) for _, w in sorted(self.workers.items())]

    def remember_action(self, action: dict) -> None:
        self._actions.append(action)

    # -- start and stop ---------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        for listener in self.config.listeners:
            try:
                self.sockets[listener.bind] = open_socket(self.reactor, listener.bind)
            except error.CannotListenError as failure:
                self._close_sockets()
                message = f"clbproxy: listener:{listener.name}: {describe_listen_error(failure)}"
                raise SystemExit(message) from None
        try:
            start_children_privileged(self)
            prepare_certificates(self.config)
        except SystemExit:
            self._close_sockets()
            raise

    def startService(self) -> None:
        super().startService()
        install_fast_text_log()
        self.runtime_dir = tempfile.mkdtemp(prefix="clbproxy-workers-")
        if self.signals:
            self._handlers = SignalHandlers(self.reactor, self.reload, self.reopen, self.notifier)
            self._handlers.install()
        for warning in self.config.warnings:
            log.warn("config: {detail}", detail=warning)
        log.info(
            "supervisor: starting {count} worker(s) on {sockets} socket(s)",
            count=self.config.workers,
            sockets=len(self.sockets),
        )
        self._start_generation()

    def _start_generation(self) -> None:
        self.generation += 1
        for index in range(1, self.config.workers + 1):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        if self.stopping or index in self.workers:
            return
        worker = WorkerProcess(self, index, self.generation, self.reactor.seconds())
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_fds: dict[int, object] = {
            0: "w",
            1: 1,
            2: 2,
            LOG_FD: "r",
            CONTROL_FD: theirs.fileno(),
        }
        inherited = {}
        offered = {**self.sockets, **self._opening}
        for number, (bind, sock) in enumerate(sorted(offered.items())):
            child_fds[FIRST_SOCKET_FD + number] = sock.fileno
            inherited[bind] = [FIRST_SOCKET_FD + number, int(sock.family)]
        # The directory holding the clbproxy package (this file is clbproxy/ops/supervisor.py).
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        python_path = os.pathsep.join(
            part for part in (package_root, os.environ.get("PYTHONPATH")) if part
        )
        # The unit's main process (this one) speaks to systemd for the workers.
        environ = {k: v for k, v in os.environ.items() if k != NOTIFY_SOCKET}
        env = {
            **environ,
            "PYTHONPATH": python_path,
            ENV_SOCKETS: json.dumps(inherited),
            ENV_ADMIN: worker.admin_socket,
            ENV_SECRET: self.secret,
            ENV_ACTIONS: json.dumps(self._actions),
        }
        args = [
            *self.command,
            "--config",
            self._worker_config_path,
            "--index",
            str(index),
            *self.worker_arguments,
        ]
        self.workers[index] = worker
        try:
            self.reactor.spawnProcess(worker, args[0], args, env=env, childFDs=child_fds)
        finally:
            theirs.close()
        try:
            control = protocol.Factory.forProtocol(lambda: worker.control)
            self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, control)
        finally:
            ours.close()
        log.info("supervisor: worker {index} started (pid {pid})", index=index, pid=worker.pid)
        worker.control.serving.addCallback(lambda _: self._worker_serving())

    def _worker_serving(self) -> None:
        """A worker serves: once all of them do for the first time, tell systemd."""
        if self._ready_sent or self.stopping:
            return
        everyone = [self.workers.get(i) for i in range(1, self.config.workers + 1)]
        if all(w is not None and w.control.serving.called for w in everyone):
            self._ready_sent = True
            self.notifier.ready(f"serving with {len(everyone)} worker(s)")

    def worker_ended(self, worker: WorkerProcess, reason: Failure) -> None:
        how = _exit_description(reason)
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if worker in self._retired:
            self._retired.remove(worker)
        if worker.retiring or self.stopping:
            log.info(
                "supervisor: worker {index} (pid {pid}) {how}",
                index=worker.index,
                pid=worker.pid,
                how=how,
            )
            return
        lived = self.reactor.seconds() - worker.started
        failures = 1 if lived >= STABLE_AFTER else self.failures.get(worker.index, 0) + 1
        self.failures[worker.index] = failures
        delay = restart_delay(failures)
        self.restarts[worker.index] = self.restarts.get(worker.index, 0) + 1
        self.restart_counter.inc()
        log.error(
            "supervisor: worker {index} (pid {pid}) {how} after {lived:.1f} s; "
            "restarting it in {delay:g} s",
            index=worker.index,
            pid=worker.pid,
            how=how,
            lived=lived,
            delay=delay,
        )
        self._pending[worker.index] = self.reactor.callLater(delay, self._spawn, worker.index)

    def stopService(self):
        self.stopping = True
        handlers, self._handlers = self._handlers, None
        if handlers is not None:
            handlers.draining()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        everyone = [*self.workers.values(), *self._retired]
        log.info("supervisor: stopping {count} worker(s)", count=len(everyone))
        for worker in everyone:
            worker.retiring = True
            worker.signal(signal.SIGTERM)
        # The workers stop accepting now; the socket closes with their last copy.
        self._close_sockets()
        ended = defer.DeferredList([w.ended for w in everyone if not w.ended.called])
        deadline = self.config.drain_timeout + STOP_GRACE

        def kill_the_rest() -> None:
            for worker in everyone:
                if not worker.ended.called:
                    log.warn(
                        "supervisor: worker {index} (pid {pid}) still running after {s:g} s: "
                        "killing it",
                        index=worker.index,
                        pid=worker.pid,
                        s=deadline,
                    )
                    worker.signal(signal.SIGKILL)

        killer = self.reactor.callLater(deadline, kill_the_rest)

        def finish(_):
            if killer.active():
                killer.cancel()
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            if handlers is not None:
                handlers.uninstall()
            return MultiService.stopService(self)

        ended.addCallback(finish)
        return ended

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():
            sock.port.stopListening()
        self.sockets.clear()

    # -- signals (installed by :class:`~clbproxy.ops.signals.SignalHandlers`) --------------

    def reopen(self) -> None:
        """SIGUSR1: reopen the supervisor's log file, and tell every worker to reopen theirs."""
        self.log_reopener.reopen()
        for worker in self.workers.values():
            worker.signal(signal.SIGUSR1)

    def reload(self) -> defer.Deferred:
        """SIGHUP: validate tap.conf once, bind its new sockets, have every worker apply it.

        Fires True when the file was applied.  A SIGHUP that comes during a
        reload reads the file once more when that reload is done.
        """
        if self._reloading:
            queued = defer.Deferred()
            self._queued.append(queued)
            return queued
        self._reloading = True
        d = defer.maybeDeferred(self._reload)

        def failed(failure: Failure) -> bool:
            log.failure("reload failed", failure)
            return False

        def done(applied: bool) -> bool:
            self._reloading = False
            self._reloaded(applied)
            waiting, self._queued = self._queued, []
            if waiting:
                again = self.reload()
                for queued in waiting:
                    again.addCallback(lambda result, q=queued: (q.callback(result), result)[1])
            return applied

        d.addErrback(failed)
        d.addCallback(done)
        return d

    def _reload(self) -> defer.Deferred:
        log.info("supervisor: reloading {path}", path=self.config_path)
        try:
            config = self.load()
        except ConfigError as problems:
            for problem in problems.problems:
                log.error("reload refused: {problem}", problem=problem)
            log.warn(
                "reload refused: {count} problem(s); the workers keep serving",
                count=len(problems.problems),
            )
            return defer.succeed(False)
        opened: dict[str, Socket] = {}
        for listener in config.listeners:
            if listener.bind in self.sockets or listener.bind in opened:
                continue
            try:
                opened[listener.bind] = open_socket(self.reactor, listener.bind)
            except Exception as failure:
                _close(opened)
                log.error(
                    "reload refused: listener:{listener}: {error}; the workers keep serving",
                    listener=listener.name,
                    error=describe_listen_error(failure),
                )
                return defer.succeed(False)
        try:
            prepare_certificates(config)
            check_access_logs(config)
            side_started, side_stopped, retune_admin = self._start_side_services(config)
        except (SystemExit, AccessLogError) as failure:
            _close(opened)
            reason = failure.code if isinstance(failure, SystemExit) else failure
            log.error("reload refused: {error}; the workers keep serving", error=str(reason))
            return defer.succeed(False)
        binds = list(dict.fromkeys(listener.bind for listener in config.listeners))
        offered = [self.sockets.get(bind) or opened[bind] for bind in binds]
        staying = [w for index, w in sorted(self.workers.items()) if index <= config.workers]
        self._opening = opened

        @defer.inlineCallbacks
        def first_worker():
            """The first worker that answers decides: refused, nothing else changes."""
            while staying:
                worker = staying.pop(0)
                answer = yield worker.reload(offered)
                if answer.get("applied"):
                    return None
                if answer.get("timeout"):
                    self._replace(worker, answer.get("error"))
                elif not answer.get("lost"):
                    return worker, answer.get("error") or "see its log"
            return None

        def decided(refusal) -> defer.Deferred:
            self._opening = {}
            if self.stopping:
                for service in side_started:
                    service.stopService()
                _close(opened)
                return defer.succeed(False)
            if refusal is not None:
                worker, reason = refusal
                for service in side_started:
                    service.stopService()
                _close(opened)
                log.error(
                    "reload refused: worker {index} cannot apply it: {error}; "
                    "the workers keep serving",
                    index=worker.index,
                    error=reason,
                )
                return defer.succeed(False)
            removed = self._commit(config, opened, side_started, side_stopped, retune_admin)
            self._resize(config.workers)
            finished = defer.gatherResults([worker.reload(offered) for worker in staying])

            def all_answered(answers: list) -> bool:
                for worker, answer in zip(staying, answers):
                    if not answer.get("applied") and not answer.get("lost"):
                        self._replace(worker, answer.get("error") or "see its log")
                # Every worker has let go of these now (or is being replaced).
                _close(removed)
                log.info(
                    "supervisor: {count} worker(s) reloaded in place, {added} new socket(s), "
                    "{removed} closed",
                    count=len(self.workers),
                    added=len(opened),
                    removed=len(removed),
                )
                return True

            finished.addCallback(all_answered)
            return finished

        d = first_worker()
        d.addCallback(decided)
        return d

    def _commit(self, config, opened, side_started, side_stopped, retune_admin) -> dict:
        """Make ``config`` the group's; returns the sockets of binds that are gone."""
        binds = {listener.bind for listener in config.listeners}
        removed = {bind: self.sockets.pop(bind) for bind in list(self.sockets) if bind not in binds}
        self.sockets.update(opened)
        retune_admin()
        for service in side_stopped:
            d = defer.maybeDeferred(self.removeService, service)
            d.addErrback(lambda failure: log.failure("stopping a replaced service", failure))
        for service in side_started:
            adopt_running(self, service)
        # A reload keeps the runtime state of the backends it keeps (as TargetGroup.take_over).
        before = {group.name: group for group in self.config.target_groups}
        after = {group.name: group for group in config.target_groups}
        self._actions = [
            action
            for action in self._actions
            if action["group"] in after
            and action["group"] in before
            and action_survives(
                before[action["group"]], after[action["group"]], action["address"], action["action"]
            )
        ]
        self.config = config
        for warning in config.warnings:
            log.warn("config: {detail}", detail=warning)
        return removed

    def _replace(self, worker: WorkerProcess, reason: str) -> None:
        """Stop ``worker`` gracefully (it did not apply the group's tap.conf) and start another."""
        if self.workers.get(worker.index) is not worker:
            return
        log.error(
            "supervisor: worker {index} (pid {pid}) did not apply tap.conf: {error}; replacing it",
            index=worker.index,
            pid=worker.pid,
            error=reason,
        )
        self._retire(worker)
        # A new generation: the old worker's admin socket is removed when it exits.
        self.generation += 1
        self._spawn(worker.index)

    def _retire(self, worker: WorkerProcess) -> None:
        worker.retiring = True
        self._retired.append(worker)
        del self.workers[worker.index]
        worker.signal(signal.SIGTERM)

    def _resize(self, count: int) -> None:
        """Stop the workers past ``count`` gracefully and start the missing ones."""
        for index, call in list(self._pending.items()):
            if index > count:
                del self._pending[index]
                if call.active():
                    call.cancel()
        for index in sorted(self.workers):
            if index > count:
                self._retire(self.workers[index])
        missing = [
            i for i in range(1, count + 1) if i not in self.workers and i not in self._pending
        ]
        if missing:
            log.info("supervisor: starting {count} more worker(s)", count=len(missing))
            self.generation += 1
            for index in missing:
                self._spawn(index)

    def demo_services(self) -> list:
        return [child for child in self if child.name and child.name.startswith("demo:")]

    def _start_side_services(self, config: Config) -> tuple[list, list, Callable[[], None]]:
        """Start the demo backends and admin listener ``config`` adds.

        Returns them (not yet children), the services they replace, and what
        retunes the running admin listener.  A port that cannot be bound raises
        SystemExit (after stopping what this started), so the reload is refused
        with nothing changed.
        """
        started, stopped, retune = plan_side_services(
            self, config, self.reactor, self._admin_service
        )
        running = []
        for service in started:
            try:
                service.privilegedStartService()
                service.startService()
            except (error.CannotListenError, SystemExit) as failure:
                for other in running:
                    other.stopService()
                raise SystemExit(f"{service.name}: {describe_listen_error(failure)}") from None
            running.append(service)
        return running, stopped, retune

    def _admin_service(self, admin: AdminConfig) -> StreamServerEndpointService:
        site = group_admin_site(self, self.registry, admin, self.reactor)
        service = StreamServerEndpointService(serverFromString(self.reactor, admin.bind), site)
        service._raiseSynchronously = True
        service.setName("admin")
        return service

    def _reloaded(self, applied: bool) -> None:
        Metrics.count_reload(self.reloads, applied)


def _close(sockets: dict[str, Socket]) -> None:
    for sock in sockets.values():
        sock.port.stopListening()


def _exit_description(reason: Failure) -> str:
    value = reason.value
    signum = getattr(value, "signal", None)
    if signum:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return f"was killed by {name}"
    return f"exited with status {getattr(value, 'exitCode', None)}"


def build_supervisor(
    config: Config, reactor, signals: bool = True, notifier: Optional[Notifier] = None
) -> Supervisor:
    """The supervisor of ``config.workers`` workers, with the demo backends and admin listener."""
    try:
        check_access_logs(config)
    except AccessLogError as error:
        raise SystemExit(str(error)) from None
    supervisor = Supervisor(config, reactor, signals=signals, notifier=notifier)
    for demo in config.demo_backends:
        service = demo_service(demo, supervisor.room, reactor)
        service.demo = demo
        service.setServiceParent(supervisor)
    if config.admin is not None:
        supervisor._admin_service(config.admin).setServiceParent(supervisor)
    return supervisor
