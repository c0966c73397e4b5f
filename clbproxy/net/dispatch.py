"""Lean event dispatch for the epoll reactor: one Python call less per socket event.

Twisted's epoll reactor hands each ready socket to ``_doReadOrWrite`` through
``log.callWithLogger``, which asks the connection for its log prefix, pushes it
as the legacy logging context (``callWithContext``, two more frames) and
catches what escapes.  For a proxy relaying small messages that wrapping is
about a quarter of the CPU (``bench/RESULTS.md``, run ``dispatch``), once for
every read and every write, and it only labels the ``[system]`` column of
legacy log lines that Twisted itself emits while handling the event.

:func:`lean_dispatch` makes one reactor instance call ``_doReadOrWrite``
directly.  Everything else stays Twisted's: the poll itself, the read and
write handling, the disconnect path, the logging of an application's exception
(``_doReadOrWrite`` catches and logs those itself).  What escapes it (an error
inside a ``connectionLost``, even a ``SystemExit``) is logged here and the loop
goes on, as ``callWithLogger`` did; only ``KeyboardInterrupt`` goes through.
clbproxy's own log lines carry their fields (client, backend, listener) and
never depended on that context.

Only a reactor of exactly Twisted's ``EPollReactor`` class, whose ``doPoll`` is
the one this replaces, is changed; anything else is left alone.
"""

from __future__ import annotations

import errno

from twisted.logger import Logger

log = Logger()

try:  # pragma: no cover - epoll exists on Linux only
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # pragma: no cover
    EPollReactor = None


def lean_dispatch(reactor) -> bool:
    """Dispatch ``reactor``'s socket events without the legacy log context; True if done."""
    if EPollReactor is None or type(reactor) is not EPollReactor:
        return False
    if getattr(EPollReactor, "doIteration", None) is not EPollReactor.doPoll:
        return False  # a Twisted whose loop is not the one this was written for
    poller = reactor._poller
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite

    def doPoll(timeout):
        if timeout is None:
            timeout = -1
        try:
            ready = poller.poll(timeout, len(selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.failure("while handling an event on {selectable!r}", selectable=selectable)

    reactor.doIteration = reactor.doPoll = doPoll
    return True
