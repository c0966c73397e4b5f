"""``twistd clbproxy``: command-line options and the service tree built from tap.conf.

As in Twisted's own ``twisted/web/tap.py``, this module holds only :class:`Options`
and :func:`makeService`; the services are built in :mod:`clbproxy.ops`.
"""

from __future__ import annotations

import sys
from typing import Optional

from twisted.application.service import IService
from twisted.python import usage

from clbproxy.config import Config, ConfigError, default_config_path
from clbproxy.config.fleet import has_fleet, read_local
from clbproxy.net import dispatch
from clbproxy.ops.fleet import FleetStart, attach_fleet, start_fleet
from clbproxy.ops.notify import Notifier
from clbproxy.ops.preflight import load_checked
from clbproxy.ops.services import build_service
from clbproxy.ops.supervisor import build_supervisor
from clbproxy.util import gcfreeze


class Options(usage.Options):
    """Options of ``twistd clbproxy``.

    Problems in the configuration file are printed by us, one line each, and end
    the process with status 1: ``usage.UsageError`` would print twistd's whole usage
    text first, so it is kept for mistakes in the command line itself.
    """

    synopsis = "[--config PATH] [--check]"
    optParameters = [
        ["config", "c", None, "Configuration file (default: ./tap.conf, else the shipped demo)."],
    ]
    optFlags = [
        ["check", None, "Validate the configuration, print 'ok' or every problem, and exit."],
    ]

    def postOptions(self) -> None:
        path = self["config"] or default_config_path()
        #: In fleet mode (``[fleet]`` in the file): what etcd or the cache gave at start.
        self.fleet: Optional[FleetStart] = None
        try:
            if has_fleet(path):
                if self["check"]:
                    read_local(path)
                    print(
                        f"{path}: ok (a fleet instance: 'clbproxy fleet push' checks its document)"
                    )
                    sys.exit(0)
                self.fleet = start_fleet(path)
                self.loaded: Config = self.fleet.merged.config
            else:
                self.loaded = load_checked(path)
        except ConfigError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            sys.exit(1)
        except SystemExit as error:
            if isinstance(error.code, str):
                print(error.code, file=sys.stderr)
                sys.exit(1)
            raise
        if self["check"]:
            for warning in self.loaded.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            print(f"{path}: ok")
            sys.exit(0)


def makeService(options: Options) -> IService:
    """One proxy process, or with ``workers = N`` a supervisor of N worker processes.

    Under systemd (``$NOTIFY_SOCKET``) either tells systemd when it serves.
    """
    from twisted.internet import reactor

    dispatch.lean_dispatch(reactor)
    notifier = Notifier.from_environment()
    if options.loaded.workers > 1:
        root = build_supervisor(options.loaded, reactor, notifier=notifier)
    else:
        root = build_service(options.loaded, reactor, signals=True, notifier=notifier)
    if options.fleet is not None:
        attach_fleet(options.fleet, reactor, root)
    gcfreeze.freeze_after_start(reactor, getattr(root, "reloader", None))
    return root
