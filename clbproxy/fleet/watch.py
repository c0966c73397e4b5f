"""The watch loop: an instance follows its cluster's document in etcd, revision by revision.

:class:`ConfigWatch` is a state machine with the reactor passed in:

1. a linearizable range of the watched keys (the document and the cookie
   secrets, :attr:`~clbproxy.fleet.messages.FleetKeys.watched`) gives the state
   and its revision; the document is applied if its content differs from the
   one in use;
2. a watch from that revision + 1, with progress notifications; every event
   updates the latest state, which is applied (one apply at a time, the newest
   state next);
3. any end of the stream (etcd's error, a lost connection, a member that lost
   its leader) reconnects after a jittered backoff (0.5 s doubling to 30 s) on
   the next endpoint, resuming from the last revision seen + 1, so no revision
   is ever skipped; a ``canceled`` watch after a compaction, or a revision lower
   than one already seen (etcd was rebuilt), starts again at 1 (a resync, which
   reloads only if the content changed);
4. every ``check_interval`` seconds a linearizable read of the document on the
   watched member (``check_timeout``): a member that does not answer (frozen,
   cut off) has its watch replaced, as does one whose watch fell behind.

``apply(snapshot)`` returns a Deferred firing ``(applied, reason)``.  A refused
document is not retried until a newer revision comes; the last good one keeps
serving.  A deleted document empties nothing (:meth:`~clbproxy.fleet.cache.Snapshot.updated`).
"""

from __future__ import annotations

import random
from typing import Callable, Optional

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from clbproxy.fleet.cache import Snapshot, snapshot_of
from clbproxy.fleet.messages import FleetKeys, RangeResult, WatchResponse

log = Logger()

#: The first reconnection delay, doubled per failure in a row up to ``MAX_BACKOFF``.
BASE_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Seconds between the reads that catch a frozen member, and how long each may take.
CHECK_INTERVAL = 10.0
CHECK_TIMEOUT = 3.0


def backoff(failures: int, jitter: float) -> float:
    """Seconds before reconnection attempt number ``failures`` (1, 2...); ``jitter`` in [0, 1)."""
    delay = BASE_BACKOFF * 2 ** max(failures - 1, 0)
    return min(MAX_BACKOFF, delay * (0.8 + 0.4 * jitter))


@attrs.define
class FleetStatus:
    """What an instance knows of its fleet, for the status page, metrics and presence."""

    cluster: str
    instance: str
    #: Where the configuration in use came from: ``etcd`` or ``cache``.
    source: str = "etcd"
    endpoint: str = ""
    connected: bool = False
    #: Since when (reactor seconds) the watch has been connected, if it is.
    connected_since: Optional[float] = None
    applied_revision: int = 0
    applied_digest: str = ""
    rejected_revision: int = 0
    rejected_reason: Optional[str] = None
    #: Listeners of the document with no local bind (not served here).
    unserved: tuple[str, ...] = ()
    #: Full resyncs and watch restarts, by reason.
    resyncs: dict[str, int] = attrs.Factory(dict)
    restarts: dict[str, int] = attrs.Factory(dict)

    def as_dict(self, now: float) -> dict:
        return {
            "cluster": self.cluster,
            "instance": self.instance,
            "source": self.source,
            "endpoint": self.endpoint,
            "connected": self.connected,
            "connected_for": None
            if self.connected_since is None
            else round(now - self.connected_since, 1),
            "applied_revision": self.applied_revision,
            "applied_digest": self.applied_digest,
            "rejected_revision": self.rejected_revision,
            "rejected_reason": self.rejected_reason,
            "unserved_listeners": list(self.unserved),
            "resyncs": dict(self.resyncs),
            "watch_restarts": dict(self.restarts),
        }


class ConfigWatch:
    """Follows ``keys``' document through ``gateway`` and hands each new state to ``apply``.

    ``applied`` is the snapshot in use at start (from etcd or the cache), if any.
    ``gateway`` has ``range(key, range_end, timeout=, endpoint=)``, ``watch(...)``,
    ``rotate()`` and ``endpoint`` (:class:`clbproxy.fleet.gateway.Gateway`).
    ``changed()`` is called whenever the status changes (presence, metrics).
    """

    def __init__(
        self,
        reactor,
        gateway,
        keys: FleetKeys,
        apply: Callable[[Snapshot], defer.Deferred],
        status: FleetStatus,
        *,
        applied: Optional[Snapshot] = None,
        changed: Callable[[], None] = lambda: None,
        jitter: Callable[[], float] = random.random,
        check_interval: float = CHECK_INTERVAL,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.gateway = gateway
        self.keys = keys
        self._apply = apply
        self.status = status
        self._changed = changed
        self._jitter = jitter
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        #: The snapshot in use, and the newest one etcd has shown.
        self.applied = applied
        self.latest = applied
        #: The newest revision whose events were all taken into ``latest``.
        self.seen = applied.revision if applied is not None else 0
        self.failures = 0
        self.running = False
        self._watch = None
        self._watched = ""
        self._timer = None
        self._check = None
        self._applying = False
        self._suspect = 0
        self._resync_reason: Optional[str] = None
        if applied is not None:
            status.applied_revision = applied.revision
            status.applied_digest = applied.digest

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self._resync(None)
        self._schedule_check()

    def stop(self) -> None:
        self.running = False
        for call in (self._timer, self._check):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._check = None
        self._cut()
        self.status.connected = False
        self.status.connected_since = None

    def _cut(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    # -- reading the state ------------------------------------------------------------------

    def _resync(self, reason: Optional[str]) -> None:
        """Read the whole state at the newest revision, then watch from there."""
        if reason is not None:
            self.status.resyncs[reason] = self.status.resyncs.get(reason, 0) + 1
            log.info("fleet: resync ({reason})", reason=reason)
        self._cut()
        self._resync_reason = reason
        start, end = self.keys.watched
        d = self.gateway.range(start, end)
        d.addCallbacks(self._read, self._unreachable)
        d.addErrback(lambda failure: log.failure("fleet: resync", failure))

    def _read(self, result: RangeResult) -> None:
        if not self.running:
            return
        revision = result.header.revision
        reset = revision < self.seen
        if reset:
            log.warn(
                "fleet: etcd is at revision {revision}, below {seen} seen before: "
                "etcd was rebuilt; following it from there",
                revision=revision,
                seen=self.seen,
            )
            if self._resync_reason != "revision reset":
                self.status.resyncs["revision reset"] = (
                    self.status.resyncs.get("revision reset", 0) + 1
                )
            self.status.rejected_revision = 0
        self.seen = revision
        snapshot = snapshot_of(self.keys, result.kvs)
        if snapshot.document is None and self.latest is not None:
            # No document in etcd (deleted, or a new cluster): keep ours; after a
            # reset its old revision means nothing in the new etcd.
            kept = snapshot.revision if reset else (snapshot.revision or self.latest.revision)
            snapshot = attrs.evolve(self.latest, revision=kept)
        self.latest = snapshot
        self.status.endpoint = self.gateway.endpoint
        self._offer()
        self._start_watch(revision + 1)

    def _unreachable(self, failure) -> None:
        if not self.running:
            return
        self._lost(f"read failed: {failure.getErrorMessage()}", "unreachable", resync=True)

    def _start_watch(self, revision: int) -> None:
        start, end = self.keys.watched
        # Other calls on the gateway (presence) may move it to another endpoint later:
        # the check reads from the member this watch is on.
        self._watched = self.gateway.endpoint
        watch = self.gateway.watch(start, end, revision, lambda r: self._on_response(watch, r))
        self._watch = watch
        self.status.endpoint = self._watched
        watch.ended.addCallback(lambda reason: self._ended(watch, reason))

    def _on_response(self, watch, response: WatchResponse) -> None:
        if watch is not self._watch or not self.running:
            return
        if response.error is not None:
            self._lost(f"etcd: {response.error}", "error")
            return
        if response.canceled:
            if response.compact_revision:
                log.warn(
                    "fleet: revisions up to {compacted} were compacted away; reading it all again",
                    compacted=response.compact_revision,
                )
                self._restart_now("compacted")
            else:
                self._lost(f"watch canceled: {response.cancel_reason or 'by etcd'}", "canceled")
            return
        revision = response.header.revision
        if revision and revision < self.seen:
            self._restart_now("revision reset")
            return
        if response.created:
            self.failures = 0
            if not self.status.connected:
                self.status.connected = True
                self.status.connected_since = self.reactor.seconds()
                log.info("fleet: watching {endpoint}", endpoint=self.gateway.endpoint)
                self._changed()
            return
        if response.events:
            latest = self.latest or Snapshot(document=None, revision=0)
            for event in response.events:
                if event.type == "DELETE" and event.kv.key == self.keys.config:
                    log.warn(
                        "fleet: etcd:{key} was deleted at revision {revision}; "
                        "the configuration in use stays",
                        key=self.keys.config.decode(),
                        revision=event.kv.mod_revision,
                    )
                latest = latest.updated(self.keys, event.kv, deleted=event.type == "DELETE")
            self.latest = latest
        self.seen = max(self.seen, revision)
        self._offer()

    def _ended(self, watch, reason: str) -> None:
        if watch is not self._watch or not self.running:
            return
        self._lost(f"watch ended: {reason}", "ended")

    def _lost(self, reason: str, kind: str, resync: bool = False) -> None:
        """The stream is over: reconnect after the backoff, on the next endpoint."""
        self._cut()
        self.status.restarts[kind] = self.status.restarts.get(kind, 0) + 1
        if self.status.connected:
            self.status.connected = False
            self.status.connected_since = None
            self._changed()
        self.failures += 1
        delay = backoff(self.failures, self._jitter())
        endpoint = self.gateway.rotate()
        if endpoint == self._watched:
            endpoint = self.gateway.rotate()
        log.warn(
            "fleet: {reason}; reconnecting to {endpoint} in {delay:.1f} s",
            reason=reason,
            endpoint=endpoint,
            delay=delay,
        )
        resume = (lambda: self._resync(None)) if resync or self.seen == 0 else self._resume
        self._timer = self.reactor.callLater(delay, resume)

    def _resume(self) -> None:
        self._timer = None
        if self.running:
            self._start_watch(self.seen + 1)

    def _restart_now(self, reason: str) -> None:
        """A compaction or a reset: read everything again at once."""
        self.status.restarts[reason] = self.status.restarts.get(reason, 0) + 1
        self._resync(reason)

    # -- the frozen-member check ------------------------------------------------------------

    def _schedule_check(self) -> None:
        if self.running:
            self._check = self.reactor.callLater(self.check_interval, self._run_check)

    def _run_check(self) -> None:
        self._check = None
        watch = self._watch
        if watch is None:
            self._schedule_check()
            return
        endpoint = self._watched
        d = self.gateway.range(self.keys.config, timeout=self.check_timeout, endpoint=endpoint)

        def answered(result: RangeResult) -> None:
            if watch is not self._watch or not self.running:
                return
            if result.header.revision < self.seen:
                self._restart_now("revision reset")
                return
            newest = max((kv.mod_revision for kv in result.kvs), default=0)
            if self._suspect and self.seen < self._suspect:
                self._suspect = 0
                self._lost(f"the watch on {endpoint} fell behind", "stale", resync=True)
                return
            self._suspect = newest if newest > self.seen else 0

        def failed(failure) -> None:
            if watch is not self._watch or not self.running:
                return
            self._lost(
                f"{endpoint} did not answer a read in {self.check_timeout:g} s "
                f"({failure.getErrorMessage()})",
                "check failed",
            )

        d.addCallbacks(answered, failed)
        d.addErrback(lambda failure: log.failure("fleet: check", failure))
        d.addBoth(lambda _: self._schedule_check())

    # -- applying ---------------------------------------------------------------------------

    def _offer(self) -> None:
        """Apply the latest state if it is new, one apply at a time."""
        latest = self.latest
        if self._applying or latest is None or latest.document is None:
            return
        if self.applied is not None and latest.digest == self.applied.digest:
            if latest.revision != self.status.applied_revision:
                # The same content at a newer revision (a push of what is in use).
                self.applied = latest
                self.status.applied_revision = latest.revision
                self._changed()
            return
        if latest.revision == self.status.rejected_revision:
            return
        self._applying = True
        d = defer.maybeDeferred(self._apply, latest)
        d.addErrback(lambda failure: (False, failure.getErrorMessage()))
        d.addCallback(self._applied, latest)
        d.addErrback(lambda failure: log.failure("fleet: apply", failure))

    def _applied(self, outcome: tuple, snapshot: Snapshot) -> None:
        self._applying = False
        applied, reason = outcome
        if applied:
            self.applied = snapshot
            self.status.source = "etcd"
            self.status.applied_revision = snapshot.revision
            self.status.applied_digest = snapshot.digest
            log.info(
                "fleet: applied {source}",
                source=snapshot.source(self.keys),
                revision=snapshot.revision,
            )
        else:
            self.status.rejected_revision = snapshot.revision
            self.status.rejected_reason = reason
            log.error(
                "fleet: rejected {source}: {reason}; the last good configuration "
                "(revision {good}) keeps serving",
                source=snapshot.source(self.keys),
                reason=reason,
                good=self.status.applied_revision,
            )
        self._changed()
        if self.running:
            self._offer()
