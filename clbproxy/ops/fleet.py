"""Fleet mode at run time: start from etcd (or the cache), follow it, report presence.

``twistd clbproxy`` with a tap.conf that has ``[fleet]``:

- :func:`start_fleet` runs before the reactor (sockets are bound before
  privileges are dropped): it makes sure the cluster has a cookie secret (a
  transaction that writes one only if none exists), reads the document and the
  secrets with a linearizable range, merges the document with the local file
  and checks it as tap.conf is checked.  etcd unreachable for
  ``startup_timeout`` seconds: it starts from ``<cache_dir>`` with a warning,
  or without a cache exits 1 with one line;
- :class:`FleetService` then follows etcd (:class:`clbproxy.fleet.watch.ConfigWatch`)
  and applies each new document through the same reload as SIGHUP: the
  process's :class:`~clbproxy.ops.reload.Reloader`, or with ``workers = N`` the
  :class:`~clbproxy.ops.supervisor.Supervisor`, which alone talks to etcd,
  writes the accepted document to ``<cache_dir>/<cluster>.workers.json`` and
  has its workers reload from it.  Both read through :meth:`FleetService.load`,
  so SIGHUP re-reads the local file and re-applies the last accepted document.
  Each applied document is written to the cache; a refused one is logged, one
  line per problem, and the last good one keeps serving.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable, Optional

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from clbproxy import __version__
from clbproxy.config import Config, ConfigError
from clbproxy.config.fleet import LocalFile, Merged, merge, read_local
from clbproxy.fleet import messages
from clbproxy.fleet.access import Access, access_of
from clbproxy.fleet.blocking import BlockingGateway
from clbproxy.fleet.cache import Snapshot, cache_path, read_snapshot, snapshot_of, write_snapshot
from clbproxy.fleet.gateway import Gateway
from clbproxy.fleet.messages import FleetKeys, GatewayError
from clbproxy.fleet.presence import Presence
from clbproxy.fleet.watch import ConfigWatch, FleetStatus
from clbproxy.observability.fleet import FleetCollector
from clbproxy.ops.preflight import checked

log = Logger()


def load_snapshot(local_path: str, snapshot: Snapshot, keys: FleetKeys) -> Merged:
    """The local file (read again) with ``snapshot``'s document, checked; or ``ConfigError``."""
    local = read_local(local_path)
    if snapshot.document is None:
        raise ConfigError([f"{snapshot.source(keys)}: no document"])
    merged = merge(
        local,
        snapshot.document,
        snapshot.source(keys),
        snapshot.cookie_secret,
        snapshot.cookie_secret_previous,
    )
    return attrs.evolve(merged, config=checked(merged.config))


def fleet_worker_loader(local_path: str, snapshot_path: str) -> Callable[[], Config]:
    """What a worker of a fleet instance loads: its local file and the supervisor's document."""

    def load() -> Config:
        try:
            snapshot = read_snapshot(snapshot_path)
        except ValueError as error:
            raise ConfigError([str(error)]) from None
        if snapshot is None:
            raise ConfigError([f"{snapshot_path}: missing"])
        keys = FleetKeys(read_local(local_path).fleet.cluster)
        return load_snapshot(local_path, snapshot, keys).config

    return load


@attrs.define
class FleetStart:
    """What :func:`start_fleet` found: the document in use and where it came from."""

    local: LocalFile
    keys: FleetKeys
    snapshot: Snapshot
    merged: Merged
    status: FleetStatus
    #: The newest etcd revision read at start (0 when started from the cache).
    seen: int = 0
    #: The etcd credentials and TLS files of ``[fleet]``.
    access: Access = Access()


def start_fleet(
    path: str, clock: Callable[[], float] = time.monotonic, sleep=time.sleep
) -> FleetStart:
    """Read the configuration of the fleet instance whose local file is ``path`` (blocking).

    Raises ``ConfigError`` (problems of the local file or of the document, one
    line each) or ``SystemExit`` with one line when there is nothing to start from.
    """
    local = read_local(path)
    fleet = local.fleet
    keys = FleetKeys(fleet.cluster)
    cache = cache_path(fleet.cache_dir, fleet.cluster)
    access = access_of(fleet)
    client = BlockingGateway(
        fleet.endpoints, timeout=max(0.5, min(3.0, fleet.startup_timeout)), access=access
    )
    deadline = clock() + fleet.startup_timeout
    found: Optional[tuple[Snapshot, int]] = None
    last_error = "no attempt"
    while True:
        try:
            client.txn(
                messages.put_if_missing(keys.cookie_secret, secrets.token_urlsafe(32).encode())
            )
            result = client.range(*keys.watched)
            found = snapshot_of(keys, result.kvs), result.header.revision
            break
        except GatewayError as error:
            last_error = str(error)
        if clock() >= deadline:
            break
        sleep(0.5)
    try:
        cached = read_snapshot(cache)
    except ValueError as error:
        log.warn("fleet: ignoring the cache: {error}", error=str(error))
        cached = None
    status = FleetStatus(cluster=fleet.cluster, instance=fleet.instance or "")
    if found is None:
        if cached is None:
            raise SystemExit(
                f"clbproxy: fleet: etcd did not answer within {fleet.startup_timeout:g} s "
                f"({last_error}) and {cache} does not exist"
            )
        log.warn(
            "fleet: etcd did not answer within {timeout} s ({error}); "
            "serving revision {revision} from {cache}",
            timeout=fleet.startup_timeout,
            error=last_error,
            revision=cached.revision,
            cache=cache,
        )
        status.source = "cache"
        merged = load_snapshot(path, cached, keys)
        status.unserved = merged.unserved
        return FleetStart(local, keys, cached, merged, status, 0, access)
    snapshot, seen = found
    status.endpoint = client.endpoint
    if snapshot.document is None:
        if cached is None:
            raise SystemExit(
                f"clbproxy: fleet: etcd has no document at {keys.config.decode()} "
                "(push one with 'clbproxy fleet push')"
            )
        log.warn("fleet: etcd has no document; serving the cached one")
        snapshot = attrs.evolve(
            cached, cookie_secret=snapshot.cookie_secret or cached.cookie_secret
        )
    try:
        merged = load_snapshot(path, snapshot, keys)
    except ConfigError as error:
        if cached is None or cached.digest == snapshot.digest:
            raise
        for problem in error.problems:
            log.error("fleet: {problem}", problem=problem)
        log.error(
            "fleet: rejected {source}; starting with the last good one (revision {good}) "
            "from {cache}",
            source=snapshot.source(keys),
            good=cached.revision,
            cache=cache,
        )
        status.rejected_revision = snapshot.revision
        status.rejected_reason = error.problems[0] if error.problems else None
        merged = load_snapshot(path, cached, keys)
        snapshot = cached
    _write_cache(cache, snapshot)
    status.unserved = merged.unserved
    return FleetStart(local, keys, snapshot, merged, status, seen, access)


def _write_cache(path: str, snapshot: Snapshot) -> None:
    try:
        write_snapshot(path, snapshot)
    except OSError as error:
        log.warn("fleet: cannot write {path}: {error}", path=path, error=error.strerror)


class FleetService(Service):
    """Follows etcd for one instance and applies what it finds through ``target``'s reload.

    ``target`` is the :class:`~clbproxy.ops.services.ProxyService` of one process,
    or the :class:`~clbproxy.ops.supervisor.Supervisor` of ``workers = N``.
    """

    name = "fleet"

    def __init__(self, start: FleetStart, reactor, target, *, gateway=None) -> None:
        self.reactor = reactor
        self.target = target
        self.local_path = start.local.path
        self.keys = start.keys
        self.status = start.status
        self.accepted = start.snapshot
        self.pending: Optional[Snapshot] = None
        fleet = start.local.fleet
        self.cache = cache_path(fleet.cache_dir, fleet.cluster)
        self.workers_file = cache_path(fleet.cache_dir, fleet.cluster, ".workers")
        self.gateway = gateway or Gateway(reactor, fleet.endpoints, access=start.access)
        self.supervised = hasattr(target, "worker_arguments")
        if self.supervised:
            target.take_config_from(
                self.load, self.local_path, ["--fleet-snapshot", self.workers_file]
            )
            write_snapshot(self.workers_file, self.accepted)
        else:
            target.reloader.load = self.load
            target.reloader.config_path = self.local_path
        self.watch = ConfigWatch(
            reactor,
            self.gateway,
            self.keys,
            self.apply,
            self.status,
            applied=self.accepted,
            changed=self._changed,
        )
        if start.seen:
            self.watch.seen = start.seen
        instance = fleet.instance or ""
        self.presence = Presence(reactor, self.gateway, self.keys.instance(instance), self.describe)
        #: Called when the status changes (the metrics follow it).
        self.observers: list[Callable[[FleetStatus], None]] = []

    def load(self) -> Config:
        """What a reload applies: the local file and the document being applied, or the
        last accepted one."""
        snapshot = self.pending or self.accepted
        merged = load_snapshot(self.local_path, snapshot, self.keys)
        return merged.config

    def apply(self, snapshot: Snapshot) -> defer.Deferred:
        """Check ``snapshot``'s document, then reload with it; fires ``(applied, reason)``."""
        try:
            merged = load_snapshot(self.local_path, snapshot, self.keys)
        except ConfigError as error:
            for problem in error.problems:
                log.error("fleet: rejected: {problem}", problem=problem)
            return defer.succeed((False, error.problems[0] if error.problems else "invalid"))
        self.pending = snapshot
        if self.supervised:
            write_snapshot(self.workers_file, snapshot)
            d = self.target.reload()
            d.addCallback(lambda applied: (applied, None if applied else "the workers refused it"))
        else:
            d = self.target.reloader.attempt()
            d.addCallback(lambda outcome: (outcome.applied, outcome.reason))

        def done(result):
            self.pending = None
            applied, reason = result
            if applied:
                self.accepted = snapshot
                self.status.unserved = merged.unserved
                _write_cache(self.cache, snapshot)
            elif self.supervised:
                write_snapshot(self.workers_file, self.accepted)
            return result

        d.addCallback(done)
        return d

    def describe(self) -> dict:
        """The value of this instance's presence key."""
        status = self.status
        since = None
        if status.connected_since is not None:
            since = round(time.time() - (self.reactor.seconds() - status.connected_since), 3)
        return {
            "instance": status.instance,
            "version": __version__,
            "source": status.source,
            "applied_revision": status.applied_revision,
            "digest": status.applied_digest,
            "rejected_revision": status.rejected_revision,
            "rejected_reason": status.rejected_reason,
            "connected": status.connected,
            "connected_since": since,
            "unserved_listeners": list(status.unserved),
        }

    def _changed(self) -> None:
        self.presence.update()
        for observer in self.observers:
            observer(self.status)

    def startService(self) -> None:
        super().startService()
        self.watch.start()
        self.presence.start()

    def stopService(self):
        super().stopService()
        self.watch.stop()
        d = self.presence.stop()
        d.addBoth(lambda _: self.gateway.close())
        return d


def attach_fleet(start: FleetStart, reactor, root) -> FleetService:
    """Make ``root`` (a process's service or a supervisor) follow its fleet in etcd."""
    service = FleetService(start, reactor, root)
    service.setServiceParent(root)
    observability = getattr(root, "observability", None)
    if observability is not None:
        observability.follow_fleet(service.status)
    else:
        # The supervisor of workers: its admin listener shows the fleet.
        root.fleet = service.status
        root.registry.register(FleetCollector(service.status))
    return service
