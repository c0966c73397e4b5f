"""One worker process of ``workers = N`` (started by :mod:`clbproxy.ops.supervisor`, not by users).

``python -m clbproxy.ops.worker_process --config PATH --index I`` runs the whole proxy, as
``twistd clbproxy`` does with one process, except that:

- its listeners adopt the listening sockets the supervisor opened (their
  descriptors and address families are in ``CLBPROXY_WORKER_SOCKETS``);
- its control channel (descriptor 4, a unix socket) brings the supervisor's
  reloads: the sockets of the new tap.conf's binds (passed with ``SCM_RIGHTS``),
  then a line asking for the reload.  The worker applies the file in place, as
  one process does on SIGHUP (new binds adopt the sockets passed, binds that
  are gone stop accepting, open sessions go on), closes the sockets it did not
  take, and answers whether it applied the file (and if not, why: the
  :class:`~clbproxy.ops.reload.ReloadOutcome` of its reload); once it serves,
  it says so there too (the supervisor tells systemd when all of them do);
- its log events go to the supervisor as JSON records on descriptor 3, access
  events excepted: those are on its own access publisher, and it writes its
  access logs (files, or the standard output it shares with the supervisor)
  itself, so the supervisor's twistd log shows none;
- its admin API answers the supervisor only, on a private unix socket;
- it stops (draining, as on SIGTERM) when its stdin closes: the supervisor is gone.

SIGUSR1 reopens log files and SIGTERM drains and exits, as with one process;
the supervisor sends them.  A SIGHUP sent to a worker itself reloads that
worker alone, with no new socket.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Optional

from twisted.internet import protocol
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver
from zope.interface import implementer

from clbproxy.config import ConfigError
from clbproxy.net import dispatch
from clbproxy.observability.admin import APIError, backend_action
from clbproxy.ops.control import (
    CONTROL_FD,
    ENV_ACTIONS,
    ENV_ADMIN,
    ENV_SECRET,
    ENV_SOCKETS,
    LOG_FD,
    InheritedSockets,
    SupervisorControl,
    worker_config,
)
from clbproxy.ops.fleet import fleet_worker_loader
from clbproxy.ops.preflight import load_checked
from clbproxy.ops.services import build_service
from clbproxy.util import gcfreeze

log = Logger()


@implementer(IReadDescriptor)
class ParentWatch:
    """Reads the worker's stdin, which only ever ends: then the supervisor is gone."""

    def __init__(self, reactor, on_gone) -> None:
        self._reactor = reactor
        self._on_gone = on_gone
        self.gone = False

    def fileno(self) -> int:
        return -1 if self.gone else 0

    def _ended(self) -> bool:
        """Whether the pipe is at its end (rather than merely empty)."""
        try:
            return not os.read(0, 4096)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def doRead(self):
        if self._ended():
            self._reactor.removeReader(self)
            self.connectionLost(None)
        return None

    def connectionLost(self, reason) -> None:
        # epoll reports a pipe whose writer is gone as a hang-up, without a read; the
        # reactor also calls this when it shuts down, while the supervisor is alive.
        if not self.gone and self._ended():
            self.gone = True
            self._on_gone()

    def logPrefix(self) -> str:
        return "supervisor"


def apply_actions(groups, actions: list, index: int) -> None:
    """The runtime actions the other workers took since the last reload, before serving."""
    for action in actions:
        try:
            backend_action(
                groups, action["group"], action["address"], action["action"], action["body"]
            )
        except APIError as error:
            log.warn(
                "worker {index}: runtime action not applied: {error}",
                index=index,
                error=error.message,
            )
    if actions:
        log.info(
            "worker {index}: {count} runtime action(s) applied", index=index, count=len(actions)
        )


def _supervisor_gone(reactor, index: int) -> None:
    log.warn("worker {index}: the supervisor is gone; stopping", index=index)
    if reactor.running:
        reactor.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clbproxy.ops.worker_process")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--fleet-snapshot", help="fleet mode: the document the supervisor accepted")
    options = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the supervisor, which stops the workers in order.
    os.setpgrp()
    stream = open(LOG_FD, "w", encoding="utf-8", errors="backslashreplace")
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(stream)], redirectStandardIO=False)

    from twisted.internet import reactor

    admin_socket = os.environ[ENV_ADMIN]
    secret = os.environ[ENV_SECRET]
    if options.fleet_snapshot:
        load = fleet_worker_loader(options.config, options.fleet_snapshot)
    else:

        def load():
            return load_checked(options.config)

    try:
        config = load()
    except ConfigError as error:
        for problem in error.problems:
            log.error("worker {index}: {problem}", index=options.index, problem=problem)
        return 1

    def prepare(config):
        return worker_config(config, admin_socket, secret)

    if os.path.exists(admin_socket):
        os.unlink(admin_socket)
    sockets = InheritedSockets(reactor, json.loads(os.environ[ENV_SOCKETS]))
    root = build_service(
        prepare(config), reactor, signals=True, endpoint_for=sockets, prepare_config=prepare
    )
    root.reloader.load = load
    apply_actions(root.groups, json.loads(os.environ.get(ENV_ACTIONS) or "[]"), options.index)
    try:
        root.privilegedStartService()
    except SystemExit as failure:
        log.error("worker {index}: {error}", index=options.index, error=str(failure.code))
        return 1
    # The supervisor's scrapes are not traffic: no request log lines for them.
    root.getServiceNamed("admin").factory.log = lambda request: None
    sockets.close_unused()
    root.startService()
    reactor.addSystemEventTrigger("before", "shutdown", root.stopService)
    control = SupervisorControl(sockets, root.reloader.attempt, options.index)
    reactor.adoptStreamConnection(
        CONTROL_FD, socket.AF_UNIX, protocol.Factory.forProtocol(lambda: control)
    )
    os.close(CONTROL_FD)
    # Written now, read once the reactor runs: the listeners serve by then.
    control.serving()
    os.set_blocking(0, False)
    watch = ParentWatch(reactor, lambda: _supervisor_gone(reactor, options.index))
    reactor.addReader(watch)
    log.info("worker {index} serving (pid {pid})", index=options.index, pid=os.getpid())
    dispatch.lean_dispatch(reactor)
    gcfreeze.freeze_after_start(reactor, root.reloader)
    reactor.run()
    if watch.gone:
        # The supervisor could not clean up: the last worker out removes the directory.
        try:
            os.rmdir(os.path.dirname(admin_socket))
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
