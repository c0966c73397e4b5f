"""Access logs, metrics and the admin listener of one proxy process, wired together.

:class:`Observability` is a service: while running, its observers (access log
files, metrics, the status page's series, recent backend errors) watch the
access publisher it owns, and recent errors the log publisher it was given too.
Access events are sent on the access publisher only (:attr:`Observability.access_events`,
passed to the listeners), so twistd's own log, which watches the global
publisher, spends nothing on them and shows none.
:meth:`Observability.reopen` reopens the access log files (SIGUSR1, logrotate);
:meth:`Observability.prepare` opens the access logs a reloaded tap.conf names
before the reload commits (a file that cannot be opened refuses the reload);
:attr:`Observability.metrics` has ``config_reloaded`` for the reload code.
"""

from __future__ import annotations

from typing import Mapping, Optional

from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger, LogPublisher, globalLogPublisher
from twisted.logger._observer import OBSERVER_DISABLED
from twisted.python.failure import Failure
from zope.interface import implementer

from clbproxy.config import AdminConfig, Config, ListenerConfig
from clbproxy.fleet.watch import FleetStatus
from clbproxy.listener.limits import LimitStats
from clbproxy.observability.accesslog import NAMESPACE, AccessLog, access_logger
from clbproxy.observability.admin import admin_site
from clbproxy.observability.fleet import FleetCollector
from clbproxy.observability.livestate import LiveState, RecentErrors, count_connections
from clbproxy.observability.metrics import Metrics
from clbproxy.observability.series import BUCKET_SECONDS, SeriesStore
from clbproxy.observability.tally import RequestTally
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.upstream.health.view import IHealthView, UnknownHealth


class Observability(Service):
    """The observers of one process and what they read."""

    name = "observability"

    def __init__(
        self,
        config: Config,
        groups: Mapping[str, TargetGroup],
        reactor,
        *,
        publisher: LogPublisher = globalLogPublisher,
        health: Optional[IHealthView] = None,
        registry: Optional[CollectorRegistry] = None,
        gate_stats: Optional[LimitStats] = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.publisher = publisher
        #: Where access events are published: only this process's access observers watch it.
        self.access = AccessPublisher()
        #: The logger listeners send access events through (``listener_service(access=...)``).
        self.access_events = access_logger(self.access)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.errors = RecentErrors()
        self.live = LiveState(
            config,
            groups,
            health if health is not None else UnknownHealth(config.target_groups),
            self.errors,
            clock=reactor,
            gate_stats=gate_stats,
        )
        #: HTTP requests, counted once for the metrics and the series.
        tally = RequestTally(reactor)
        #: The Prometheus metrics; the reload code counts reloads with ``config_reloaded``.
        self.metrics = Metrics(self.registry, self.live, tally)
        #: The status page's charts (``GET /api/series``).
        self.series = SeriesStore(reactor, self.live, tally)
        self._sampler: Optional[LoopingCall] = None
        self.access_logs = [access_log for access_log, _ in open_access_logs(config)]
        #: Observers of the access publisher (the global one has only ``errors``,
        #: which the counters give the access events it keeps: WebSocket ones).
        self._observers: list[ILogObserver] = [
            AccessCounters(self.metrics, self.series, self.errors),
            *self.access_logs,
        ]

    def follow_fleet(self, status: FleetStatus) -> None:
        """A fleet instance: show ``status`` in the status API and the metrics."""
        self.live.fleet = status
        self.registry.register(FleetCollector(status))

    def watch_listener(self, config: ListenerConfig, service) -> None:
        """Count a listener service's connections; read its relay's sessions and limit counters."""
        stats = getattr(service, "stats", None)
        state = self.live.add_listener(config, service.relay.sessions, stats)
        count_connections(getattr(service, "limiter", service.factory), state)

    def admin_service(
        self, admin: Optional[AdminConfig] = None
    ) -> Optional[StreamServerEndpointService]:
        """The admin listener's service (for ``admin``, default tap.conf's ``[admin]``).

        None when there is no ``[admin]`` table.
        """
        admin = admin if admin is not None else self.config.admin
        if admin is None:
            return None
        site = admin_site(self.live, self.registry, admin, self.reactor, self.series)
        service = StreamServerEndpointService(serverFromString(self.reactor, admin.bind), site)
        service._raiseSynchronously = True
        service.setName("admin")
        return service

    def prepare(self, config: Config) -> PendingAccessLogs:
        """Open the access logs ``config`` names (keeping the open ones), for a reload.

        Raises :class:`AccessLogError` when one cannot be opened; nothing changed then.
        """
        kept = {(access_log.path, access_log.format): access_log for access_log in self.access_logs}
        return PendingAccessLogs(self, config, open_access_logs(config, kept), kept)

    def _use_access_logs(self, access_logs: list[AccessLog]) -> None:
        running = self.running
        for access_log in self.access_logs:
            if access_log not in access_logs:
                if running:
                    self.access.removeObserver(access_log)
                self._observers.remove(access_log)
                access_log.close()
        for access_log in access_logs:
            if access_log not in self._observers:
                self._observers.append(access_log)
                if running:
                    self.access.addObserver(access_log)
        self.access_logs = access_logs

    def reopen(self) -> None:
        """Reopen every access log file (after logrotate moved them)."""
        for access_log in self.access_logs:
            access_log.reopen()

    def startService(self) -> None:
        super().startService()
        self.publisher.addObserver(self.errors)
        self.access.passed_on = self.publisher
        for observer in self._observers:
            self.access.addObserver(observer)
        self._sampler = LoopingCall(self.series.sample)
        self._sampler.clock = self.reactor
        self._sampler.start(BUCKET_SECONDS, now=False)

    def stopService(self):
        if self._sampler is not None and self._sampler.running:
            self._sampler.stop()
        self._sampler = None
        self.publisher.removeObserver(self.errors)
        self.access.passed_on = _nowhere
        for observer in self._observers:
            self.access.removeObserver(observer)
        for access_log in self.access_logs:
            access_log.close()
        return super().stopService()


def _nowhere(event: dict) -> None:
    """Where an access publisher passes other events while nothing takes them."""


class AccessPublisher(LogPublisher):
    """The access events' publisher: a ``LogPublisher`` whose dispatch is one plain loop.

    Every event goes to every observer, as ``LogPublisher`` sends it (each
    call in its own ``try``; an observer that raises is reported to the others
    as ``LogPublisher`` reports it).  Other events than access events (those
    reports, say: a full disk under an access log) then go on to
    :attr:`passed_on`, the process's log while :class:`Observability` runs.
    An event being traced (``log_trace``) takes ``LogPublisher``'s own loop.
    """

    def __init__(self, *observers: ILogObserver) -> None:
        super().__init__(*observers)
        #: Where events that are not access events go on to.
        self.passed_on: ILogObserver = _nowhere

    def __call__(self, event: dict) -> None:
        if "log_trace" in event:
            LogPublisher.__call__(self, event)
        else:
            broken = None
            for observer in self._observers:
                try:
                    observer(event)
                except Exception:
                    if broken is None:
                        broken = []
                    broken.append((observer, Failure()))
            if broken is not None:
                for observer, failure in broken:
                    self._errorLoggerForObserver(observer).failure(
                        OBSERVER_DISABLED, failure=failure, observer=observer
                    )
        if event.get("log_namespace") != NAMESPACE:
            self.passed_on(event)

    def _errorLoggerForObserver(self, observer: ILogObserver) -> Logger:
        """A logger to the other observers, and on to :attr:`passed_on` (as ``LogPublisher``'s)."""
        others = AccessPublisher(*(other for other in self._observers if other is not observer))
        others.passed_on = self.passed_on
        return Logger(observer=others)


@implementer(ILogObserver)
class AccessCounters:
    """The metrics and the status page's series as one observer of the access events.

    Both count every event; one observer checks the event's namespace once, so
    the publisher dispatches each event once for them (it loops over its
    observers, each call in its own ``try``).  An HTTP request is counted
    once, in the tally they share; a WebSocket event is given to each.

    ``errors`` (:class:`~clbproxy.observability.livestate.RecentErrors`) is
    given the WebSocket events too, first: of the access events it keeps only
    handshakes a backend failed, so it is not a publisher's observer of every
    HTTP request.  Should it raise, the event is still counted, then its error
    reported by the publisher (as this observer's).
    """

    __slots__ = ("metrics", "series", "tally", "errors")

    def __init__(
        self, metrics: Metrics, series: SeriesStore, errors: Optional[ILogObserver] = None
    ) -> None:
        if metrics.tally is not series.tally:
            raise ValueError("the metrics and the series must share one RequestTally")
        self.metrics = metrics
        self.series = series
        self.tally = metrics.tally
        self.errors = errors

    def __call__(self, event: dict) -> None:
        if event.get("log_namespace") == NAMESPACE:
            kind = event.get("type")
            if kind == "http":
                self.tally.count(event)
            elif kind is not None:
                errors = self.errors
                if errors is None:
                    self._count_session(event)
                    return
                try:
                    errors(event)
                finally:
                    self._count_session(event)

    def _count_session(self, event: dict) -> None:
        self.metrics.count_session(event)
        self.series.count(event)


class AccessLogError(Exception):
    """An access log file named in tap.conf cannot be opened (one line: file, key, reason)."""


class PendingAccessLogs:
    """The access logs of a reload in progress: :meth:`commit` uses them, :meth:`discard` not."""

    def __init__(
        self,
        owner: Observability,
        config: Config,
        chosen: list[tuple[AccessLog, frozenset[str]]],
        kept: Mapping[tuple[str, str], AccessLog],
    ) -> None:
        self._owner = owner
        self._config = config
        self._chosen = chosen
        self._kept = list(kept.values())

    def commit(self) -> None:
        """The reload went through: the listeners write to these access logs from now on."""
        for access_log, listeners in self._chosen:
            access_log.listeners = listeners
        self._owner._use_access_logs([access_log for access_log, _ in self._chosen])
        self._owner.config = self._owner.live.config = self._config

    def discard(self) -> None:
        """The reload was refused: close the files it opened, keep the ones in use."""
        for access_log, _ in self._chosen:
            if not any(access_log is kept for kept in self._kept):
                access_log.close()


def open_access_logs(
    config: Config, kept: Optional[Mapping[tuple[str, str], AccessLog]] = None
) -> list[tuple[AccessLog, frozenset[str]]]:
    """One log per (path, format), with the names of the listeners that write to it.

    A log in ``kept`` with the same path and format is reused: its file stays
    open, and its listener names change only on commit (:class:`PendingAccessLogs`).
    A file that cannot be opened raises :class:`AccessLogError` naming the key
    that asked for it, after closing the ones this call opened.
    """
    users: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for index, listener in enumerate(config.listeners):
        if listener.access_log is not None:
            chosen, key = listener.access_log, f"listener[{index}].access_log.path"
        else:
            chosen, key = config.access_log, "access_log.path"
        if chosen is not None:
            users.setdefault((chosen.path, chosen.format), (key, []))[1].append(listener.name)
    kept = kept or {}
    opened: list[AccessLog] = []
    result = []
    for (path, fmt), (key, names) in users.items():
        reused = kept.get((path, fmt))
        if reused is not None:
            result.append((reused, frozenset(names)))
            continue
        try:
            access_log = AccessLog(path, fmt, names)
        except OSError as error:
            for other in opened:
                other.close()
            reason = error.strerror or str(error)
            raise AccessLogError(f"{config.path}: {key}: cannot open {path}: {reason}") from None
        opened.append(access_log)
        result.append((access_log, frozenset(names)))
    return result


def check_access_logs(config: Config) -> None:
    """Raise :class:`AccessLogError` if an access log ``config`` names cannot be opened.

    The supervisor of ``workers = N`` checks before its workers open the files,
    so a bad path is one line from it rather than a line from every worker.
    """
    for access_log, _ in open_access_logs(config):
        access_log.close()
