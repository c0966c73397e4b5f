"""Telling systemd how the proxy is doing: the ``sd_notify`` protocol, in a few lines of our own.

Under a ``Type=notify`` unit systemd sets ``$NOTIFY_SOCKET`` to a unix datagram
socket (a path, or ``@name`` in the abstract namespace) and waits for
``READY=1`` before it counts the service as started.  clbproxy sends
``READY=1`` once every listener serves (with ``workers = N``: once every worker
serves), ``RELOADING=1`` and then ``READY=1`` around a SIGHUP reload (so
``systemctl reload`` returns when the reload is done), ``STOPPING=1`` when it
starts to drain, and a human-readable ``STATUS=`` line with each (shown by
``systemctl status``).  Without ``$NOTIFY_SOCKET`` nothing is sent.

A message that cannot be sent is logged once and otherwise ignored: the proxy
serves whether or not systemd listens.  Worker processes never notify (the
unit says ``NotifyAccess=main``; the supervisor speaks for them).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping, Optional

from twisted.logger import Logger

log = Logger()

#: The environment variable systemd names its notification socket in.
NOTIFY_SOCKET = "NOTIFY_SOCKET"


def socket_address(value: str) -> Optional[str]:
    """The address to send to for ``$NOTIFY_SOCKET``: a path, or abstract for ``@name``.

    Other forms (``vsock:``) are not supported: None.
    """
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, as systemd wants it with ``RELOADING=1``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends state changes to systemd's notification socket (or nothing, without one)."""

    def __init__(self, address: Optional[str] = None) -> None:
        #: The socket address (abstract ones start with NUL), or None: send nothing.
        self.address = address
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier ``$NOTIFY_SOCKET`` asks for (one that sends nothing without it)."""
        value = environ.get(NOTIFY_SOCKET, "")
        if not value:
            return cls(None)
        address = socket_address(value)
        if address is None:
            log.warn("systemd: ignoring NOTIFY_SOCKET={value!r}: not a unix socket", value=value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ...) as one datagram; True if it was sent."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self.address)
        except OSError as error:
            if not self._failed:
                self._failed = True
                log.warn(
                    "systemd: cannot notify {address!r}: {error}", address=self.address, error=error
                )
            return False
        return True

    def ready(self, status: Optional[str] = None) -> bool:
        """Every listener serves (again, after a reload)."""
        return self.send("READY=1", *_status(status))

    def reloading(self, status: Optional[str] = None) -> bool:
        """A reload begins: systemd waits for the next ``READY=1``."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *_status(status))

    def stopping(self, status: Optional[str] = None) -> bool:
        """The proxy drains and will exit."""
        return self.send("STOPPING=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))


def _status(status: Optional[str]) -> tuple[str, ...]:
    # One line: a newline would start another field.
    return (f"STATUS={' '.join(status.split())}",) if status else ()
