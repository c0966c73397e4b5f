"""What metrics and the status page know about backend health: one small read-only interface.

Active and passive health checking live elsewhere (:mod:`clbproxy.upstream.health.checks`);
observers only read their conclusions through :class:`IHealthView`, so the
checker can change without touching metrics or the admin API.
:class:`UnknownHealth` is the view when nothing checks health: every configured
backend is ``unknown``.
"""

from __future__ import annotations

from typing import Iterable

import attrs
from zope.interface import Interface, implementer

from clbproxy.config import TargetGroupConfig

#: The states a view may report.
HEALTH_STATES = ("healthy", "unhealthy", "unknown")


@attrs.frozen
class BackendHealth:
    """The health of one backend of one target group."""

    group: str
    address: str
    state: str = "unknown"
    #: Why, in a few words (the last check's result); empty when nothing is known.
    detail: str = ""


class IHealthView(Interface):
    """Read-only access to the health of every configured backend."""

    def backends() -> list[BackendHealth]:
        """One record per (target group, backend)."""


@implementer(IHealthView)
class UnknownHealth:
    """Every configured backend is ``unknown``: no health checks run."""

    def __init__(self, groups: Iterable[TargetGroupConfig]) -> None:
        self._records = [
            BackendHealth(group.name, backend.address)
            for group in groups
            for backend in group.backends
        ]

    def backends(self) -> list[BackendHealth]:
        return list(self._records)


@implementer(IHealthView)
class CheckedHealth:
    """The view over the checker's state (:class:`clbproxy.upstream.health.checks.HealthState`).

    A passively ejected backend is ``unhealthy`` here, with ``ejected`` as the detail.
    """

    def __init__(self, state) -> None:
        self._state = state

    def backends(self) -> list[BackendHealth]:
        records = []
        for group in self._state.groups():
            for status in self._state.backends(group):
                state = status.state if status.state in HEALTH_STATES else "unhealthy"
                detail = status.last_error or ("" if state == status.state else status.state)
                records.append(BackendHealth(group, status.address, state, detail))
        return records
