"""The signals an operator sends, for one process and for the supervisor alike.

SIGHUP reloads tap.conf, SIGUSR1 reopens log files.  SIGTERM and SIGINT are
twistd's: they stop the reactor, which stops the root service, which drains.
While it drains (:meth:`SignalHandlers.draining`), SIGHUP is only logged:
reloading a proxy on its way out would start new listeners, and SIGHUP's
default action (ending the process) would cut the drain short.

What a reload or a reopen does is the caller's (a
:class:`~clbproxy.ops.reload.Reloader` in one process, the supervisor's own
reload with workers); the handlers here only run it on the reactor and tell
systemd (:mod:`clbproxy.ops.notify`) that a reload began and ended.
"""

from __future__ import annotations

import signal
from typing import Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

from clbproxy.ops.notify import Notifier

log = Logger()


class SignalHandlers:
    """SIGHUP -> ``reload()``, SIGUSR1 -> ``reopen()``; ``uninstall`` restores the old handlers.

    ``reload`` returns (a Deferred firing with) whether the new tap.conf was
    applied; systemd hears ``RELOADING=1`` before it and ``READY=1`` after it.
    """

    def __init__(
        self,
        reactor,
        reload: Callable[[], object],
        reopen: Callable[[], object],
        notifier: Optional[Notifier] = None,
    ) -> None:
        self._reactor = reactor
        self._reload = reload
        self._reopen = reopen
        self._notifier = notifier or Notifier(None)
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for signum, action in ((signal.SIGHUP, self.reload), (signal.SIGUSR1, self._reopen)):
            self._previous[signum] = signal.signal(signum, self._handler(action))

    def reload(self) -> defer.Deferred:
        """What SIGHUP does: the reload, announced to systemd; fires whether it was applied."""
        self._notifier.reloading("reloading tap.conf")
        d = defer.maybeDeferred(self._reload)

        def done(applied):
            status = "serving; reload applied" if applied is True else "serving; reload refused"
            self._notifier.ready(status)
            return applied

        d.addBoth(done)
        return d

    def draining(self) -> None:
        """From now on SIGHUP logs one line instead of reloading; SIGUSR1 still reopens."""
        self._notifier.stopping("draining")
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
