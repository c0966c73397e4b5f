"""``twistd clbproxy``: command-line options and the service tree built from tap.conf."""

from __future__ import annotations

import sys

from twisted.application.service import IService, MultiService
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage

from clbproxy.balancer import TargetGroup
from clbproxy.config import Config, ConfigError, default_config_path, load_config
from clbproxy.tls import CertificateError, warn_unverified

log = Logger()


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
        try:
            self.loaded: Config = load_config(path)
        except ConfigError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            sys.exit(1)
        if self["check"]:
            for warning in self.loaded.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            print(f"{path}: ok")
            sys.exit(0)


class ProxyService(MultiService):
    """The root service: its children listen; a socket that cannot be bound stops start-up.

    Binding happens in ``privilegedStartService`` (before twistd drops
    privileges); a port in use or a permission problem becomes one line naming the
    service and its endpoint, and exit status 1, rather than a traceback.
    """

    def privilegedStartService(self) -> None:
        for child in self:
            try:
                child.privilegedStartService()
            except CannotListenError as error:
                message = f"clbproxy: {child.name}: {_describe_listen_error(error)}"
                raise SystemExit(message) from None


def _describe_listen_error(error: CannotListenError) -> str:
    reason = error.socketError
    detail = getattr(reason, "strerror", None) or str(reason)
    where = f"{error.interface or '*'}:{error.port}" if error.port is not None else "socket"
    return f"cannot listen on {where}: {detail}"


def build_service(config: Config, reactor) -> MultiService:
    """The whole proxy for ``config``: demo backends first, then one service per listener."""
    from clbproxy.demo import ChatRoom, demo_service
    from clbproxy.listener import listener_service

    root = ProxyService()
    for warning in config.warnings:
        log.warn("config: {warning}", warning=warning)
    warn_unverified(config.target_groups)
    if config.demo_backends:
        room = ChatRoom(reactor)
        for demo in config.demo_backends:
            demo_service(demo, room, reactor).setServiceParent(root)
    groups = {group.name: TargetGroup(group) for group in config.target_groups}
    for listener in config.listeners:
        try:
            service = listener_service(listener, groups, reactor)
        except (CertificateError, OSError) as error:
            # A certificate changed since it was checked, or the demo one cannot be written.
            raise SystemExit(f"clbproxy: listener:{listener.name}: {error}") from None
        service.setServiceParent(root)
    return root


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    return build_service(options.loaded, reactor)
