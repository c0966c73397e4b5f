"""Running clbproxy like nginx or HAProxy: SIGHUP reloads, SIGTERM drains, SIGUSR1 reopens logs.

- :class:`Reloader` re-reads tap.conf.  An invalid file is logged, one problem per
  line, and the running configuration keeps serving.  A valid one is applied:
  listeners are matched by their ``bind`` string; a kept listener keeps its socket
  and its open connections and gets the new settings, rules and target groups for
  every new request and session
  (:meth:`~clbproxy.listener.service.ListenerService.swap`); a listener with a
  new ``bind`` is started (if any new socket cannot be bound, nothing changes and
  the error is logged); a listener whose ``bind`` is gone stops accepting, and its
  open connections and WebSocket sessions run on until they end.  Target groups
  whose configuration is unchanged keep their balancing state.  Open sessions
  keep running on their backend with the settings they started with.  Access
  log files, demo backends and the admin listener follow the new file too
  (:func:`plan_side_services`); a new file or socket that cannot be opened
  refuses the reload like a listener's.
- :func:`drain` stops accepting, sends 1001 to every WebSocket client and a
  normal close to its backend, lets HTTP requests under way finish (answered
  with ``Connection: close``), closes idle keep-alive connections, and gives up
  after ``drain_timeout`` seconds by cutting whatever is left.
- :class:`LogReopener` reopens twistd's ``--logfile`` after logrotate moved it.

Certificates are not a hook: tap.conf is validated with its certificate files
(a broken one refuses the reload), and every kept HTTPS listener loads its files
again when it swaps to the new settings
(:meth:`~clbproxy.listener.service.ListenerService.swap` ->
:meth:`clbproxy.net.tls.ServerTLS.reload`, which keeps the old certificates, logging
one line, if the files changed for the worse in between).

Hooks: ``Reloader.hooks`` are called on every SIGHUP, after tap.conf was applied
or refused, with the :class:`~clbproxy.config.Config` now in effect; a hook may
return a Deferred, and its errors are logged without stopping the others
(nothing of clbproxy's own registers there).  ``LogReopener.hooks`` are called
with no argument on every SIGUSR1 (the access logs register there).
"""

from __future__ import annotations

import signal
from typing import Callable, Iterable, Optional

from twisted.application.service import IService
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, globalLogPublisher

from clbproxy.config import AdminConfig, Config, ConfigError, load_config
from clbproxy.listener.channel import ListenerChannel
from clbproxy.net.tls import CertificateError, server_tls
from clbproxy.observability.service import AccessLogError
from clbproxy.upstream.balancer import TargetGroup

log = Logger()

#: How often a drain looks whether everything has ended.
DRAIN_POLL = 0.05


class Reloader:
    """Applies a new tap.conf to a running :class:`~clbproxy.tap.ProxyService`."""

    def __init__(self, config_path: str, root_service, reactor) -> None:
        self.config_path = config_path
        self.root = root_service
        self.reactor = reactor
        #: ``hook(config)`` called after every reload attempt (see the module docstring).
        self.hooks: list[Callable[[Config], object]] = []

    def reload(self) -> defer.Deferred:
        """Re-read and apply the configuration; fires True when it was applied."""
        log.info("reloading {path}", path=self.config_path)
        try:
            config = load_config(self.config_path)
            prepare = getattr(self.root, "prepare_config", None)
            if prepare is not None:
                config = prepare(config)
        except ConfigError as error:
            for problem in error.problems:
                log.error("reload refused: {problem}", problem=problem)
            log.warn(
                "reload refused: {count} problem(s); the running configuration keeps serving",
                count=len(error.problems),
            )
            d = defer.succeed(False)
        else:
            d = defer.maybeDeferred(self._apply, config)
            d.addErrback(self._failed)
        d.addCallback(self._run_hooks)
        return d

    def _apply(self, config: Config):
        root = self.root
        from clbproxy.listener.service import listener_service

        groups = {}
        for group_config in config.target_groups:
            old = root.groups.get(group_config.name)
            same = old is not None and old.config == group_config
            groups[group_config.name] = old if same else TargetGroup(group_config, self.reactor)

        old_listeners = {service.listener.bind: service for service in root.listener_services()}
        kept, started = [], []
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
                    endpoint_for=getattr(root, "endpoint_for", None),
                )
                service.listener_config = listener
                started.append(service)
        side_started, side_stopped, retune_admin = plan_side_services(
            root, config, self.reactor, _admin_builder(root)
        )
        started.extend(side_started)

        new_tls = {}
        for service, listener in kept:
            if service.needs_new_tls(listener):
                try:
                    new_tls[service] = server_tls(listener)
                except (CertificateError, OSError) as error:
                    log.error(
                        "reload refused: listener:{listener}: {error}; "
                        "the running configuration keeps serving",
                        listener=listener.name,
                        error=error,
                    )
                    return False
        access_logs = None
        observability = getattr(root, "observability", None)
        if observability is not None:
            try:
                access_logs = observability.prepare(config)
            except AccessLogError as error:
                log.error(
                    "reload refused: {error}; the running configuration keeps serving",
                    error=str(error),
                )
                return False

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
                log.error(
                    "reload refused: {service}: {error}; the running configuration keeps serving",
                    service=service.name,
                    error=_listen_error(error),
                )
                return False
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
            kept_listener = getattr(root, "listener_kept", None)
            if kept_listener is not None:
                kept_listener(before, listener)
        if access_logs is not None:
            access_logs.commit()
        retune_admin()
        stopping = []
        for service in [*old_listeners.values(), *side_stopped]:
            stopping.append(defer.maybeDeferred(root.removeService, service))
            if hasattr(service, "limiter") and service.limiter.protocols:
                root.retired.add(service)
        for service in running:
            root.adopt(service)
            if getattr(service, "listener_config", None) is not None:
                root.listener_started(service.listener_config, service)
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
        d.addCallback(lambda _: True)
        return d

    def _failed(self, failure) -> bool:
        log.failure("reload failed; the running configuration keeps serving", failure)
        return False

    def _run_hooks(self, applied: bool) -> defer.Deferred:
        reloaded = getattr(self.root, "reloaded", None)
        if reloaded is not None:
            reloaded(applied)
        results = []
        for hook in list(self.hooks):
            d = defer.maybeDeferred(hook, self.root.config)
            d.addErrback(lambda failure: log.failure("reload hook failed", failure))
            results.append(d)
        d = defer.gatherResults(results)
        d.addCallback(lambda _: applied)
        return d


def plan_side_services(
    root, config: Config, reactor, build_admin: Callable[[AdminConfig], IService]
) -> tuple[list[IService], list[IService], Callable[[], None]]:
    """What a reload changes besides listeners: the demo backends and the admin listener.

    Returns the services to start (the caller binds them with the new listeners,
    so a port in use refuses the whole reload), the services to stop once the
    reload is committed, and a function that applies what needs no new socket
    (a new ``metrics_path``, ``allowed_hosts`` or token on the same admin ``bind``).  ``root`` has
    ``config``, ``room``, ``demo_services()`` and maybe a child named ``admin``.
    """
    from clbproxy.demo.backend import demo_service

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


def _admin_builder(root) -> Callable[[AdminConfig], Optional[IService]]:
    observability = getattr(root, "observability", None)
    if observability is None:
        return lambda admin: None
    return observability.admin_service


def _listen_error(error: Exception) -> str:
    if isinstance(error, SystemExit):
        return str(error.code)
    reason = getattr(error, "socketError", None)
    detail = getattr(reason, "strerror", None) or str(reason or error)
    return f"cannot listen on {error.interface or '*'}:{error.port}: {detail}"


def drain(listeners: Iterable, reactor, timeout: float) -> defer.Deferred:
    """Stop ``listeners`` gracefully; fires True if everything ended within ``timeout``.

    Each listener stops accepting; WebSocket clients get 1001 and backends a
    normal close; HTTP requests under way finish (with ``Connection: close``);
    idle connections close now.  At ``timeout``, what is left is cut.
    """
    listeners = list(listeners)
    stopping = []
    for service in listeners:
        service.admission.draining = True
        if service.running:
            stopping.append(defer.maybeDeferred(service.stopService))
        for session in list(service.relay.sessions):
            session.shut_down()
        for connection in list(service.limiter.protocols):
            if not connection.started:
                # Still waiting for its PROXY header: nothing under way to finish.
                connection.transport.abortConnection()
                continue
            channel = connection.wrappedProtocol
            if isinstance(channel, ListenerChannel):
                channel.drain()

    def remaining() -> int:
        return sum(len(s.limiter.protocols) + len(s.relay.sessions) for s in listeners)

    log.info(
        "draining: {count} connection(s) and session(s), at most {timeout:g} s",
        count=remaining(),
        timeout=timeout,
    )
    done = defer.Deferred()
    started = reactor.seconds()

    def poll() -> None:
        left = remaining()
        if left == 0:
            loop.stop()
            log.info("drained in {seconds:.3f} s", seconds=reactor.seconds() - started)
            done.callback(True)
        elif reactor.seconds() - started >= timeout:
            loop.stop()
            log.warn("drain timeout: cutting {count} connection(s) left", count=left)
            _cut(listeners)
            done.callback(False)

    loop = task.LoopingCall(poll)
    loop.clock = reactor
    loop.start(DRAIN_POLL, now=True)

    def close_pools(drained: bool) -> defer.Deferred:
        # Responses that ended during the drain returned their backend connection
        # to the keep-alive pool after the listener first emptied it.
        closing = [defer.maybeDeferred(s.forwarder.close) for s in listeners]
        d = defer.gatherResults(closing, consumeErrors=True)
        d.addBoth(lambda _: drained)
        return d

    done.addCallback(close_pools)
    result = defer.gatherResults([done, *stopping], consumeErrors=True)
    result.addCallback(lambda results: results[0])
    return result


def _cut(listeners: list) -> None:
    for service in listeners:
        for session in list(service.relay.sessions):
            for hop in (session.front, session.backend):
                if hop is not None and hop.transport is not None:
                    hop.transport.abortConnection()
        for connection in list(service.limiter.protocols):
            if connection.transport is not None:
                connection.transport.abortConnection()


class LogReopener:
    """Reopens log files after logrotate moved them (SIGUSR1).

    twistd's ``--logfile`` is found among the global log observers; ``hooks`` are
    called too (the access log registers its own reopen function there).
    """

    def __init__(self, publisher=globalLogPublisher) -> None:
        self._publisher = publisher
        self.hooks: list[Callable[[], object]] = []

    def log_files(self) -> list:
        """twistd's log files: the ``LogFile`` objects behind file observers."""
        files = []
        for observer in getattr(self._publisher, "_observers", ()):
            target = getattr(observer, "_outFile", None)
            if target is not None and callable(getattr(target, "reopen", None)):
                files.append(target)
        return files

    def reopen(self) -> None:
        for log_file in self.log_files():
            try:
                log_file.reopen()
            except OSError as error:
                log.error("cannot reopen log file {path}: {error}", path=log_file.path, error=error)
        for hook in list(self.hooks):
            try:
                hook()
            except Exception:
                log.failure("log reopen hook failed")
        log.info("log files reopened")


class SignalHandlers:
    """SIGHUP -> reload, SIGUSR1 -> reopen logs; ``uninstall`` restores the old handlers.

    SIGTERM and SIGINT are twistd's: they stop the reactor, which stops the root
    service, which drains.  While it drains (:meth:`draining`), SIGHUP is only
    logged: reloading a proxy on its way out would start new listeners, and
    SIGHUP's default action (ending the process) would cut the drain short.
    """

    def __init__(self, reactor, reloader: Reloader, reopener: LogReopener) -> None:
        self._reactor = reactor
        self._reloader = reloader
        self._reopener = reopener
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for signum, action in (
            (signal.SIGHUP, self._reloader.reload),
            (signal.SIGUSR1, self._reopener.reopen),
        ):
            self._previous[signum] = signal.signal(signum, self._handler(action))

    def draining(self) -> None:
        """From now on SIGHUP logs one line instead of reloading; SIGUSR1 still reopens."""
        if signal.SIGHUP in self._previous:
            signal.signal(signal.SIGHUP, self._handler(_reload_ignored))

    def _handler(self, action: Callable[[], object]):
        def handle(signum, frame) -> None:
            self._reactor.callFromThread(action)

        return handle

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def _reload_ignored() -> None:
    log.warn("reload ignored while draining")


def signal_handlers(root, config_path: Optional[str], reactor) -> SignalHandlers:
    """The handlers of a running proxy (``root.reloader`` and ``root.log_reopener`` set)."""
    root.reloader = Reloader(config_path, root, reactor)
    root.log_reopener = LogReopener()
    return SignalHandlers(reactor, root.reloader, root.log_reopener)
