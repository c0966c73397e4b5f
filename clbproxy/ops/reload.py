"""Applying a new tap.conf to a running proxy: what SIGHUP does in one process (or a worker).

- :class:`Reloader` re-reads tap.conf.  An invalid file is logged, one problem per
  line, and the running configuration keeps serving.  A valid one is applied:
  listeners are matched by their ``bind`` string; a kept listener keeps its socket
  and its open connections and gets the new settings, rules and target groups for
  every new request and session
  (:meth:`~clbproxy.listener.service.ListenerService.swap`); a listener with a
  new ``bind`` is started (if any new socket cannot be bound, nothing changes and
  the error is logged); a listener whose ``bind`` is gone stops accepting, and its
  open connections and WebSocket sessions run on until they end (its HTTP/2
  connections get ``GOAWAY``: they end after their open streams, as do those
  of a kept listener whose TLS or HTTP/2 settings changed).  Target groups
  whose configuration is unchanged keep their balancing state; a changed one
  is built again and takes over, backend by backend address, the live sessions
  and requests (so ``least_conn`` and ``max_conns`` count them) and the runtime
  state set through the admin API.  Open sessions keep running on their backend
  with the settings they started with.  Access
  log files, demo backends and the admin listener follow the new file too
  (:func:`plan_side_services`); a new file or socket that cannot be opened
  refuses the reload like a listener's.

Every attempt ends in a :class:`ReloadOutcome`: applied, or refused with the
one line that says why (a worker hands it to its supervisor as it is).

Certificates are not a hook: tap.conf is validated with its certificate files
(a broken one refuses the reload), and every kept HTTPS listener loads its files
again when it swaps to the new settings
(:meth:`~clbproxy.listener.service.ListenerService.swap` ->
:meth:`clbproxy.net.tls.ServerTLS.reload`, which keeps the old certificates, logging
one line, if the files changed for the worse in between).

Hooks: ``Reloader.hooks`` are called on every SIGHUP, after tap.conf was applied
or refused, with the :class:`~clbproxy.config.Config` now in effect; a hook may
return a Deferred, and its errors are logged without stopping the others
(nothing of clbproxy's own registers there).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import attrs
from twisted.application.service import IService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from clbproxy.config import AdminConfig, Config, ConfigError
from clbproxy.demo.backend import demo_service
from clbproxy.listener.service import listener_service
from clbproxy.net.certificates import CertificateError
from clbproxy.net.tls import server_tls
from clbproxy.observability.service import AccessLogError
from clbproxy.ops.binding import describe_listen_error
from clbproxy.ops.preflight import load_checked
from clbproxy.upstream.balancer import TargetGroup

log = Logger()

#: Ends every "reload refused" line of one process.
_KEEPS_SERVING = "the running configuration keeps serving"


@attrs.frozen
class ReloadOutcome:
    """How a reload ended: ``applied``, or refused for ``reason`` (one line)."""

    applied: bool
    reason: Optional[str] = None


class Reloader:
    """Applies a new tap.conf to a running :class:`~clbproxy.ops.services.ProxyService`.

    ``root`` is that service: the reload reads and replaces its ``config``,
    ``groups``, listeners and side services through its public attributes and
    methods, and calls its ``listener_started``, ``listener_kept`` and
    ``reloaded`` so the observers follow.
    """

    def __init__(self, config_path: str, root_service, reactor) -> None:
        self.config_path = config_path
        self.root = root_service
        self.reactor = reactor
        #: ``hook(config)`` called after every reload attempt (see the module docstring).
        self.hooks: list[Callable[[Config], object]] = []
        #: What a reload reads: tap.conf, or in fleet mode the local file and the last
        #: accepted document (:mod:`clbproxy.ops.fleet`); raises ``ConfigError``.
        self.load: Callable[[], Config] = lambda: load_checked(self.config_path)

    def reload(self) -> defer.Deferred:
        """Re-read and apply the configuration; fires True when it was applied."""
        d = self.attempt()
        d.addCallback(lambda outcome: outcome.applied)
        return d

    def attempt(self) -> defer.Deferred:
        """Re-read and apply the configuration; fires with its :class:`ReloadOutcome`."""
        log.info("reloading {path}", path=self.config_path)
        try:
            config = self.load()
            if self.root.prepare_config is not None:
                config = self.root.prepare_config(config)
        except ConfigError as error:
            for problem in error.problems:
                log.error("reload refused: {problem}", problem=problem)
            log.warn(
                "reload refused: {count} problem(s); the running configuration keeps serving",
                count=len(error.problems),
            )
            d = defer.succeed(ReloadOutcome(False, error.problems[0] if error.problems else None))
        else:
            d = defer.maybeDeferred(self._apply, config)
            d.addErrback(self._failed)
        d.addCallback(self._run_hooks)
        return d

    def _groups(self, config: Config) -> dict[str, TargetGroup]:
        """The target groups of ``config``: unchanged ones are kept as they are; a
        changed one is built again and takes over the live sessions, counts and
        runtime state of the backends it keeps (:meth:`TargetGroup.take_over`)."""
        groups = {}
        for group_config in config.target_groups:
            old = self.root.groups.get(group_config.name)
            if old is not None and old.config == group_config:
                groups[group_config.name] = old
                continue
            group = TargetGroup(group_config, self.reactor)
            if old is not None:
                group.take_over(old)
            groups[group_config.name] = group
        return groups

    def _apply(self, config: Config) -> Union[ReloadOutcome, defer.Deferred]:
        root = self.root
        groups = self._groups(config)
        old_listeners = {service.listener.bind: service for service in root.listener_services()}
        kept, started = [], []
        #: The listeners this reload starts, with their settings (for the observers).
        new_listeners: dict[IService, object] = {}
        for listener in config.listeners:
            service = old_listeners.pop(listener.bind, None)
            if service is not None:
                kept.append((service, listener))
            else:
                service = listener_service(
                    listener,
                    groups,
                    self.reactor,
                    root.gate,
                    endpoint_for=root.endpoint_for,
                    access=root.observability.access_events if root.observability else None,
                )
                new_listeners[service] = listener
                started.append(service)
        build_admin = root.observability.admin_service if root.observability else _no_admin
        side_started, side_stopped, retune_admin = plan_side_services(
            root, config, self.reactor, build_admin
        )
        started.extend(side_started)

        new_tls = {}
        for service, listener in kept:
            if service.needs_new_tls(listener):
                try:
                    new_tls[service] = server_tls(listener)
                except (CertificateError, OSError) as error:
                    return _refused(
                        f"listener:{listener.name}: {error}",
                        "reload refused: listener:{listener}: {error}; " + _KEEPS_SERVING,
                        listener=listener.name,
                        error=error,
                    )
        access_logs = None
        if root.observability is not None:
            try:
                access_logs = root.observability.prepare(config)
            except AccessLogError as error:
                return _refused(
                    str(error), "reload refused: {error}; " + _KEEPS_SERVING, error=str(error)
                )

        running = []
        for service in started:
            try:
                service.privilegedStartService()
                service.startService()
            except (CannotListenError, SystemExit) as error:
                for other in running:
                    other.stopService()
                if access_logs is not None:
                    access_logs.discard()
                reason = describe_listen_error(error)
                return _refused(
                    f"{service.name}: {reason}",
                    "reload refused: {service}: {error}; " + _KEEPS_SERVING,
                    service=service.name,
                    error=reason,
                )
            running.append(service)

        for service, listener in kept:
            before = service.listener
            service.swap(listener, groups, tls=new_tls.get(service))
            if before.protocol != listener.protocol:
                log.info(
                    "listener {listener}: now {protocol} on {bind} (open connections go on)",
                    listener=listener.name,
                    protocol=listener.protocol,
                    bind=listener.bind,
                )
            root.listener_kept(before, listener)
        if access_logs is not None:
            access_logs.commit()
        retune_admin()
        stopping = []
        for service in [*old_listeners.values(), *side_stopped]:
            stopping.append(defer.maybeDeferred(root.removeService, service))
        for service in old_listeners.values():
            service.goaway_http2("the listener was removed")
            if service.limiter.protocols:
                root.retired.add(service)
        for service in running:
            root.adopt(service)
            if service in new_listeners:
                root.listener_started(new_listeners[service], service)
        root.gate.set_limit(config.max_connections)
        root.config = config
        root.use_groups(groups)
        log.info(
            "reloaded {path}: {kept} listener(s) kept, {added} started, {removed} stopped",
            path=self.config_path,
            kept=len(kept),
            added=len(started),
            removed=len(old_listeners) + len(side_stopped),
        )
        d = defer.DeferredList(stopping, consumeErrors=True)
        d.addCallback(lambda _: ReloadOutcome(True))
        return d

    def _failed(self, failure) -> ReloadOutcome:
        log.failure("reload failed; the running configuration keeps serving", failure)
        return ReloadOutcome(False, f"reload failed: {failure.getErrorMessage()}")

    def _run_hooks(self, outcome: ReloadOutcome) -> defer.Deferred:
        self.root.reloaded(outcome.applied)
        results = []
        for hook in list(self.hooks):
            d = defer.maybeDeferred(hook, self.root.config)
            d.addErrback(lambda failure: log.failure("reload hook failed", failure))
            results.append(d)
        d = defer.gatherResults(results)
        d.addCallback(lambda _: outcome)
        return d


def _refused(reason: str, format: str, **fields) -> ReloadOutcome:
    """Log a refusal as it always was (operators and tests read its fields); return its outcome."""
    log.error(format, **fields)
    return ReloadOutcome(False, reason)


def _no_admin(admin: AdminConfig) -> Optional[IService]:
    return None


def plan_side_services(
    root, config: Config, reactor, build_admin: Callable[[AdminConfig], Optional[IService]]
) -> tuple[list[IService], list[IService], Callable[[], None]]:
    """What a reload changes besides listeners: the demo backends and the admin listener.

    Returns the services to start (the caller binds them with the new listeners,
    so a port in use refuses the whole reload), the services to stop once the
    reload is committed, and a function that applies what needs no new socket
    (a new ``metrics_path``, ``allowed_hosts`` or token on the same admin ``bind``).  ``root`` has
    ``config``, ``room``, ``demo_services()`` and maybe a child named ``admin``.
    """
    started: list[IService] = []
    old_demos = {(s.demo.name, s.demo.bind): s for s in root.demo_services()}
    for demo in config.demo_backends:
        if old_demos.pop((demo.name, demo.bind), None) is None:
            service = demo_service(demo, root.room, reactor)
            service.demo = demo
            started.append(service)
    stopped: list[IService] = list(old_demos.values())

    def retune() -> None:
        pass

    before, after = root.config.admin, config.admin
    running_admin = root.namedServices.get("admin")
    if before != after:
        if after is not None and running_admin is not None and before.bind == after.bind:
            resource = running_admin.factory.resource

            def retune() -> None:
                resource.configure(after)
        else:
            admin = build_admin(after) if after is not None else None
            if admin is not None:
                started.append(admin)
            if running_admin is not None:
                stopped.append(running_admin)
    return started, stopped, retune
