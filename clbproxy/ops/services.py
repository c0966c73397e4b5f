"""The service tree of one proxy process: demo backends, observers, listeners, admin.

:func:`build_service` builds it from a :class:`~clbproxy.config.Config`;
``twistd clbproxy`` runs it (:mod:`clbproxy.tap`), and so does every worker of
``workers = N`` (:mod:`clbproxy.ops.worker_process`).
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredList, maybeDeferred
from twisted.logger import Logger

from clbproxy.config import Config
from clbproxy.demo.backend import ChatRoom, demo_service
from clbproxy.listener.limits import ConnectionGate
from clbproxy.listener.service import listener_service
from clbproxy.net.certificates import CertificateError
from clbproxy.net.tls_client import warn_unverified
from clbproxy.observability.service import AccessLogError, Observability
from clbproxy.observability.textlog import install_fast_text_log
from clbproxy.ops.binding import adopt_running, start_children_privileged
from clbproxy.ops.drain import drain
from clbproxy.ops.logfiles import LogReopener
from clbproxy.ops.notify import Notifier
from clbproxy.ops.reload import Reloader
from clbproxy.ops.signals import SignalHandlers
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.upstream.health.checks import CheckedHealth, health_services

log = Logger()


class ProxyService(MultiService):
    """The root service: its children listen; a socket that cannot be bound stops start-up.

    Binding happens in ``privilegedStartService`` (before twistd drops
    privileges); a port in use or a permission problem becomes one line naming the
    service and its endpoint, and exit status 1, rather than a traceback.

    It carries what a reload needs (``config``, ``groups``, the connection
    ``gate``, the demo ``room``) and owns its :attr:`reloader` and
    :attr:`log_reopener`; stopping it drains (:func:`clbproxy.ops.drain.drain`).
    With ``signals``, SIGHUP reloads and SIGUSR1 reopens log files while it runs;
    while it drains, SIGHUP is logged and ignored and SIGUSR1 still reopens.
    ``notifier`` hears ``READY=1`` once it serves (and around each SIGHUP reload).
    """

    def __init__(
        self,
        config: Config,
        reactor,
        room=None,
        signals: bool = False,
        *,
        endpoint_for: Optional[Callable] = None,
        prepare_config: Optional[Callable[[Config], Config]] = None,
        notifier: Optional[Notifier] = None,
    ) -> None:
        super().__init__()
        #: ``endpoint_for(bind)``: where listeners listen (None: ``serverFromString``).
        self.endpoint_for = endpoint_for
        #: ``prepare_config(config)``: what a reload does to a new tap.conf before using it.
        self.prepare_config = prepare_config
        self.config = config
        self.reactor = reactor
        self.room = room
        self.groups: dict[str, TargetGroup] = {}
        #: Counts connections against ``max_connections`` and this process's descriptor budget.
        self.gate = ConnectionGate.for_process(config.max_connections)
        #: Listeners removed by a reload whose connections are still open.
        self.retired: set = set()
        self.signals = signals
        self.notifier = notifier or Notifier(None)
        #: What SIGHUP runs (``reloader.hooks`` is documented for embedders).
        self.reloader = Reloader(config.path, self, reactor)
        #: What SIGUSR1 runs (``log_reopener.hooks`` is documented for embedders).
        self.log_reopener = LogReopener()
        self._handlers: Optional[SignalHandlers] = None
        #: Set by build_service: the health state and the observers (status page, metrics).
        self.health: Optional[CheckedHealth] = None
        self.observability: Optional[Observability] = None
        #: The active health check services of each target group in use.
        self._checks: dict[str, tuple[TargetGroup, list]] = {}

    def use_groups(self, groups: dict[str, TargetGroup]) -> None:
        """Make ``groups`` the target groups in use (at start and on reload).

        A group object kept from before keeps its health checks and its
        rebalancer running; a new one gets its own (its rebalancer runs while this
        service does), and those of groups no longer in use stop.
        """
        self.groups = groups
        for name, (group, checks) in list(self._checks.items()):
            if groups.get(name) is not group:
                group.rebalancer.stop()
                del self._checks[name]
                for check in checks:
                    self.removeService(check)
        for name, group in groups.items():
            if name not in self._checks:
                checks = health_services([group], self.reactor)
                for check in checks:
                    check.setServiceParent(self)
                self._checks[name] = (group, checks)
                if self.running:
                    group.rebalancer.start()
        if self.health is not None:
            self.health.use(groups)
        if self.observability is not None:
            self.observability.live.groups = groups

    def listener_started(self, listener, service) -> None:
        """A reload started a new listener: let the observers count it."""
        if self.observability is not None:
            self.observability.watch_listener(listener, service)

    def listener_kept(self, before, after) -> None:
        """A reload kept a listener with new settings (maybe a new name or protocol)."""
        if self.observability is not None:
            self.observability.live.rename_listener(before.name, after)

    def reloaded(self, applied: bool) -> None:
        """A reload was applied (or refused): count it in the metrics."""
        if self.observability is not None:
            self.observability.metrics.config_reloaded(applied)

    def listener_services(self) -> list:
        return [child for child in self if child.name and child.name.startswith("listener:")]

    def demo_services(self) -> list:
        return [child for child in self if child.name and child.name.startswith("demo:")]

    def adopt(self, service) -> None:
        """Make a service a reload started a child, without starting it again."""
        adopt_running(self, service)

    def startService(self) -> None:
        super().startService()
        install_fast_text_log()
        for group in self.groups.values():
            group.rebalancer.start()
        if self.signals:
            self._handlers = SignalHandlers(
                self.reactor, self.reloader.reload, self.log_reopener.reopen, self.notifier
            )
            self._handlers.install()
        # Every listener is bound (privilegedStartService): it serves once the reactor runs.
        count = len(self.listener_services())
        self.reactor.callWhenRunning(self.notifier.ready, f"serving on {count} listener(s)")

    def stopService(self):
        handlers, self._handlers = self._handlers, None
        if handlers is not None:
            handlers.draining()
        Service.stopService(self)
        for group in self.groups.values():
            group.rebalancer.stop()
        listeners = [*self.listener_services(), *self.retired]
        d = drain(listeners, self.reactor, self.config.drain_timeout)

        def stop_the_rest(result):
            rest = [child for child in reversed(list(self)) if child.running]
            return DeferredList([maybeDeferred(child.stopService) for child in rest])

        d.addBoth(stop_the_rest)
        if handlers is not None:
            d.addBoth(lambda result: handlers.uninstall() or result)
        return d

    def privilegedStartService(self) -> None:
        start_children_privileged(self)


def build_service(
    config: Config,
    reactor,
    signals: bool = False,
    endpoint_for=None,
    prepare_config=None,
    notifier: Optional[Notifier] = None,
) -> ProxyService:
    """The whole proxy for ``config``: demo backends first, then one service per listener.

    A worker process passes ``endpoint_for`` (its listeners adopt the
    supervisor's sockets) and ``prepare_config`` (applied to tap.conf on reload).
    """
    root = ProxyService(
        config,
        reactor,
        ChatRoom(reactor),
        signals=signals,
        endpoint_for=endpoint_for,
        prepare_config=prepare_config,
        notifier=notifier,
    )
    for warning in config.warnings:
        log.warn("config: {detail}", detail=warning)
    if root.gate.descriptor_budget:
        log.info(
            "descriptor budget: {budget} connections (RLIMIT_NOFILE {descriptors}); "
            "accepting pauses at {limit}",
            budget=root.gate.descriptor_budget,
            descriptors=root.gate.descriptor_limit,
            limit=root.gate.limit,
        )
    warn_unverified(config.target_groups)
    for demo in config.demo_backends:
        service = demo_service(demo, root.room, reactor)
        service.demo = demo
        service.setServiceParent(root)
    groups = {group.name: TargetGroup(group, reactor) for group in config.target_groups}
    #: What the status page and metrics read (an IHealthView over the live groups).
    root.health = CheckedHealth(groups)
    try:
        observability = Observability(
            config,
            groups,
            reactor,
            health=root.health,
            gate_stats=root.gate.stats,
        )
    except AccessLogError as error:
        raise SystemExit(str(error)) from None
    observability.setServiceParent(root)
    root.observability = observability
    root.log_reopener.hooks.append(observability.reopen)
    root.use_groups(groups)
    for listener in config.listeners:
        try:
            service = listener_service(
                listener,
                groups,
                reactor,
                root.gate,
                endpoint_for=endpoint_for,
                access=observability.access_events,
            )
        except (CertificateError, OSError) as error:
            # A certificate changed since it was checked, or the demo one cannot be written.
            raise SystemExit(f"clbproxy: listener:{listener.name}: {error}") from None
        observability.watch_listener(listener, service)
        service.setServiceParent(root)
    admin = observability.admin_service()
    if admin is not None:
        admin.setServiceParent(root)
    return root
