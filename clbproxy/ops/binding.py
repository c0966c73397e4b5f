"""Binding listening sockets, at start and on reload, and saying why one cannot be bound.

One process and the supervisor both bind before serving (in
``privilegedStartService``, before twistd drops privileges) and both bind a
reload's new sockets first; :func:`describe_listen_error` is the one text
either logs or exits with.
"""

from __future__ import annotations

from twisted.application.service import IService, MultiService
from twisted.internet.error import CannotListenError


def describe_listen_error(error: BaseException) -> str:
    """One line saying why a socket could not be bound (``cannot listen on *:80: ...``).

    ``SystemExit`` carries its own line (a listener that cannot start for
    another reason, such as a socket a worker did not inherit).
    """
    if isinstance(error, SystemExit):
        return str(error.code)
    if isinstance(error, CannotListenError):
        reason = error.socketError
        detail = getattr(reason, "strerror", None) or str(reason)
        where = f"{error.interface or '*'}:{error.port}" if error.port is not None else "socket"
        return f"cannot listen on {where}: {detail}"
    return str(error)


def start_children_privileged(parent: MultiService) -> None:
    """Bind every child's port before twistd drops privileges.

    A port that cannot be bound stops the start with one line naming the child
    and the reason, never a traceback.
    """
    for child in parent:
        try:
            child.privilegedStartService()
        except CannotListenError as error:
            message = f"clbproxy: {child.name}: {describe_listen_error(error)}"
            raise SystemExit(message) from None


def adopt_running(parent: MultiService, service: IService) -> None:
    """Make an already running service (started by a reload) a child without starting it again."""
    service.parent = parent
    if service.name is not None:
        parent.namedServices[service.name] = service
    parent.services.append(service)
