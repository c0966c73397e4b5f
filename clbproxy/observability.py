"""Access logs, metrics and the admin listener of one proxy process, wired together.

:class:`Observability` is a service: while running, its observers (access log
files, metrics, recent backend errors) watch the log publisher it was given.
:meth:`Observability.reopen` reopens the access log files (SIGUSR1, logrotate);
:attr:`Observability.metrics` has ``config_reloaded`` for the reload code.
"""

from __future__ import annotations

from typing import Mapping, Optional

from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import ILogObserver, LogPublisher, globalLogPublisher

from clbproxy.accesslog import AccessLog
from clbproxy.admin import admin_site
from clbproxy.balancer import TargetGroup
from clbproxy.config import Config, ListenerConfig
from clbproxy.healthview import IHealthView, UnknownHealth
from clbproxy.livestate import LiveState, RecentErrors, count_connections
from clbproxy.metrics import Metrics


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
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.publisher = publisher
        self.registry = registry if registry is not None else CollectorRegistry()
        self.errors = RecentErrors()
        self.live = LiveState(
            config,
            groups,
            health if health is not None else UnknownHealth(config.target_groups),
            self.errors,
            clock=reactor,
        )
        self.metrics = Metrics(self.registry, self.live)
        self.access_logs = _access_logs(config)
        self._observers: list[ILogObserver] = [self.errors, self.metrics, *self.access_logs]

    def watch_listener(self, config: ListenerConfig, service) -> None:
        """Count a listener service's connections and read its relay's sessions."""
        state = self.live.add_listener(config, service.relay.sessions)
        count_connections(getattr(service, "limiter", service.factory), state)

    def admin_service(self) -> Optional[StreamServerEndpointService]:
        """The admin listener's service, or None when tap.conf has no ``[admin]``."""
        admin = self.config.admin
        if admin is None:
            return None
        site = admin_site(self.live, self.registry, admin.metrics_path, self.reactor)
        service = StreamServerEndpointService(serverFromString(self.reactor, admin.bind), site)
        service._raiseSynchronously = True
        service.setName("admin")
        return service

    def reopen(self) -> None:
        """Reopen every access log file (after logrotate moved them)."""
        for access_log in self.access_logs:
            access_log.reopen()

    def startService(self) -> None:
        super().startService()
        for observer in self._observers:
            self.publisher.addObserver(observer)

    def stopService(self):
        for observer in self._observers:
            self.publisher.removeObserver(observer)
        for access_log in self.access_logs:
            access_log.close()
        return super().stopService()


def _access_logs(config: Config) -> list[AccessLog]:
    """One log per (path, format), each limited to the listeners that write to it."""
    users: dict[tuple[str, str], list[str]] = {}
    for listener in config.listeners:
        chosen = listener.access_log or config.access_log
        if chosen is not None:
            users.setdefault((chosen.path, chosen.format), []).append(listener.name)
    return [AccessLog(path, fmt, names) for (path, fmt), names in users.items()]
