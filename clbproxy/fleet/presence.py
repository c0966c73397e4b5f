"""An instance's own key in etcd, ``/clbproxy/<cluster>/instances/<name>``, under a lease.

The value (JSON) says what the instance applied and rejected, the content
hash, its version and since when it is connected; ``clbproxy fleet status``
reads these keys.  The lease (``ttl`` seconds, kept alive every ``interval``)
makes the key vanish with the instance; a lease etcd forgot (it was away
longer than the TTL) is granted anew.  Errors are logged once per outage and
never stop the loop.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()

TTL = 15
INTERVAL = 5.0


class Presence:
    """Keeps ``key`` alive in etcd with ``describe()`` as its value."""

    def __init__(
        self,
        reactor,
        gateway,
        key: bytes,
        describe: Callable[[], dict],
        ttl: int = TTL,
        interval: float = INTERVAL,
    ) -> None:
        self.reactor = reactor
        self.gateway = gateway
        self.key = key
        self.describe = describe
        self.ttl = ttl
        self.interval = interval
        self.lease: Optional[int] = None
        self._timer = None
        self._running = False
        self._failing = False
        self._busy = False
        self._dirty = False

    def start(self) -> None:
        self._running = True
        self._tick()

    def stop(self) -> defer.Deferred:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        lease, self.lease = self.lease, None
        if lease is None:
            return defer.succeed(None)
        d = self.gateway.call("/v3/lease/revoke", {"ID": str(lease)}, 1.0)
        d.addErrback(lambda _: None)
        return d

    def update(self) -> None:
        """The instance's state changed: write it now (or after the write under way)."""
        if self._busy:
            self._dirty = True
        elif self.lease is not None and self._running:
            self._run(self._write())

    def _tick(self) -> None:
        self._timer = None
        if not self._running:
            return
        if self._busy:
            self._schedule()
            return
        self._run(self._keep())

    @defer.inlineCallbacks
    def _keep(self):
        if self.lease is not None:
            ttl = yield self.gateway.keepalive(self.lease)
            if ttl > 0:
                return
            self.lease = None
        self.lease = yield self.gateway.grant(self.ttl)
        yield self._write()

    def _write(self) -> defer.Deferred:
        value = json.dumps(self.describe(), sort_keys=True).encode()
        return self.gateway.put(self.key, value, self.lease or 0)

    def _run(self, d: defer.Deferred) -> None:
        self._busy = True

        def ok(_):
            if self._failing:
                log.info("fleet: presence written again to etcd")
            self._failing = False

        def failed(failure):
            if not self._failing:
                log.warn("fleet: cannot write presence: {error}", error=failure.getErrorMessage())
            self._failing = True

        def done(_):
            self._busy = False
            if self._dirty and self._running and self.lease is not None:
                self._dirty = False
                self._run(self._write())
            elif self._timer is None:
                self._schedule()

        d.addCallbacks(ok, failed)
        d.addBoth(done)

    def _schedule(self) -> None:
        if self._running and self._timer is None:
            self._timer = self.reactor.callLater(self.interval, self._tick)
