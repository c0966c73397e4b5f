"""The contract between the supervisor and a worker process, both ends of it.

A worker (:mod:`clbproxy.ops.worker_process`) is started by the supervisor
(:mod:`clbproxy.ops.supervisor`) with its listening sockets, log pipe and
control channel on the descriptors and environment variables named here, and
runs tap.conf as :func:`worker_config` says.  The control channel is a unix
socket carrying JSON lines: :class:`ControlChannel` is the supervisor's end,
:class:`SupervisorControl` the worker's.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import attrs
from twisted.internet import defer
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import IFileDescriptorReceiver, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from clbproxy.config import AdminConfig, Config
from clbproxy.observability.aggregate import WORKER_HOST
from clbproxy.ops.reload import ReloadOutcome

log = Logger()

#: Environment variables that hand a worker what it needs.
ENV_SOCKETS = "CLBPROXY_WORKER_SOCKETS"
ENV_ADMIN = "CLBPROXY_WORKER_ADMIN"
ENV_SECRET = "CLBPROXY_WORKER_SECRET"
ENV_ACTIONS = "CLBPROXY_WORKER_ACTIONS"
#: The worker's end of its log pipe (JSON events) and of the parent-alive pipe (stdin).
LOG_FD = 3
#: The worker's end of its control channel (a unix socket: reloads and their sockets).
CONTROL_FD = 4
#: Inherited listening sockets are numbered from here in a worker.
FIRST_SOCKET_FD = 10


def worker_config(config: Config, admin_socket: str, secret: str) -> Config:
    """``config`` as a worker runs it.

    The worker answers its admin API on a private unix socket (the supervisor
    asks it), runs no demo backend (the supervisor does), uses the group's
    cookie secret where tap.conf sets none, and leaves warnings to the
    supervisor (logged once, not once per worker).
    """
    groups = []
    for group in config.target_groups:
        persistence = group.persistence
        if persistence is not None and persistence.type == "cookie" and not persistence.secret:
            group = attrs.evolve(group, persistence=attrs.evolve(persistence, secret=secret))
        groups.append(group)
    return attrs.evolve(
        config,
        target_groups=tuple(groups),
        demo_backends=(),
        admin=AdminConfig(
            bind=f"unix:{admin_socket}:lockfile=0",
            metrics_path="/metrics",
            allowed_hosts=(WORKER_HOST,),
        ),
        warnings=(),
    )


@attrs.define
class Socket:
    """A listening socket the supervisor opened for a listener's ``bind``."""

    bind: str
    port: object

    @property
    def fileno(self) -> int:
        return self.port.fileno()

    @property
    def family(self) -> int:
        return self.port.socket.family


@implementer(IStreamServerEndpoint)
class NotInherited:
    """A ``bind`` the supervisor did not open: listening on it is refused."""

    def __init__(self, bind: str) -> None:
        self.bind = bind

    def listen(self, factory):
        return defer.fail(
            SystemExit(
                f"{self.bind}: this socket was not opened by the supervisor "
                "(it opens new sockets on SIGHUP to itself)"
            )
        )


class InheritedSockets:
    """``endpoint_for(bind)`` of a worker: the supervisor's sockets, each adopted once."""

    def __init__(self, reactor, sockets: dict[str, list[int]]) -> None:
        self._reactor = reactor
        self._sockets = dict(sockets)

    def offer(self, sockets: dict[str, list[int]]) -> None:
        """The sockets of a reload's binds, for the listeners it starts."""
        self.close_unused()
        self._sockets = dict(sockets)

    def close_unused(self) -> None:
        """Close the sockets no listener took: a bind that is gone must stop listening."""
        for fileno, _ in self._sockets.values():
            try:
                os.close(fileno)
            except OSError:
                pass
        self._sockets.clear()

    def __call__(self, bind: str) -> IStreamServerEndpoint:
        found = self._sockets.pop(bind, None)
        if found is None:
            return NotInherited(bind)
        fileno, family = found
        # Under ``haproxy:`` the listener's connection limiter reads the PROXY header.
        return AdoptedStreamServerEndpoint(self._reactor, fileno, family)


class ControlChannel(LineReceiver):
    """The supervisor's end of a worker's control channel.

    A reload is one JSON line, ``{"reload": n, "sockets": [[bind, family], ...]}``,
    after the descriptors of those sockets (``SCM_RIGHTS``, in the same order);
    the worker answers ``{"reload": n, "applied": bool, "error": str}`` once it
    applied the file or refused it.  Once its listeners serve, the worker sends
    ``{"serving": true}``, which fires :attr:`serving`.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self) -> None:
        self._number = 0
        self._waiting: dict[int, defer.Deferred] = {}
        #: Fires (None) when the worker says it serves.
        self.serving = defer.Deferred()

    def reload(self, sockets: list[Socket]) -> defer.Deferred:
        """Ask the worker to reload with ``sockets``; fires with its answer (a dict).

        An answer has ``lost`` set when the worker ended before it answered.
        """
        if not self.connected or self.transport is None:
            return defer.succeed({"applied": False, "lost": True, "error": "the worker ended"})
        self._number += 1
        answered = defer.Deferred()
        self._waiting[self._number] = answered
        for sock in sockets:
            self.transport.sendFileDescriptor(sock.fileno)
        message = {"reload": self._number, "sockets": [[s.bind, s.family] for s in sockets]}
        self.sendLine(json.dumps(message).encode("utf-8"))
        return answered

    def lineReceived(self, line: bytes) -> None:
        try:
            answer = json.loads(line)
            if answer.get("serving") is True:
                if not self.serving.called:
                    self.serving.callback(None)
                return
            number = answer["reload"]
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        answered = self._waiting.pop(number, None)
        if answered is not None and not answered.called:
            answered.callback(answer)

    def connectionLost(self, reason=None) -> None:
        self.connected = False
        waiting, self._waiting = self._waiting, {}
        for answered in waiting.values():
            if not answered.called:
                answered.callback({"applied": False, "lost": True, "error": "the worker ended"})


@implementer(IFileDescriptorReceiver)
class SupervisorControl(LineReceiver):
    """A worker's end of its control channel (:class:`ControlChannel` is the other)."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(
        self, sockets: InheritedSockets, reload: Callable[[], defer.Deferred], index: int
    ) -> None:
        """``reload()`` fires with a :class:`~clbproxy.ops.reload.ReloadOutcome`."""
        self._sockets = sockets
        self._reload = reload
        self._index = index
        self._received: list[int] = []

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self._received.append(descriptor)

    def lineReceived(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            number, offered = message["reload"], message["sockets"]
        except (ValueError, TypeError, KeyError):
            log.error("worker {index}: unreadable control message", index=self._index)
            return
        descriptors = self._received[: len(offered)]
        del self._received[: len(offered)]
        self._sockets.offer(
            {bind: [fd, family] for (bind, family), fd in zip(offered, descriptors)}
        )
        d = defer.maybeDeferred(self._reload)

        def answer(outcome) -> None:
            self._sockets.close_unused()
            if not isinstance(outcome, ReloadOutcome):
                outcome = ReloadOutcome(False, None)
            reply: dict = {"reload": number, "applied": outcome.applied}
            if not outcome.applied:
                reply["error"] = outcome.reason or "see its log"
            if self.transport is not None:
                self.sendLine(json.dumps(reply).encode("utf-8"))

        d.addBoth(answer)

    def serving(self) -> None:
        """Tell the supervisor this worker's listeners serve."""
        self.sendLine(json.dumps({"serving": True}).encode("utf-8"))
