"""Backend health as observers read it: one interface, one record, one vocabulary.

Active and passive health checking live in :mod:`clbproxy.upstream.health.checks`,
which keeps each target group's :class:`~clbproxy.upstream.health.checks.GroupHealth`;
observers (metrics, the status page, the admin API) only read conclusions
through :class:`IHealthView`, so the checker can change without touching them.
There are two sources: the checker
(:class:`~clbproxy.upstream.health.checks.CheckedHealth`, over the live target
groups) and nothing at all (:class:`UnknownHealth`: every configured backend is
``unknown``).
"""

from __future__ import annotations

import warnings
from typing import Iterable, Optional

import attrs
from zope.interface import Interface, implementer

from clbproxy.config import TargetGroupConfig
from clbproxy.upstream.states import HEALTH_STATES, Health

__all__ = [
    "HEALTH_STATES",
    "BackendStatus",
    "Health",
    "IHealthView",
    "UnknownHealth",
    "all_backends",
]


@attrs.frozen
class BackendStatus:
    """One backend of one target group as observers see it."""

    group: str
    address: str
    #: As the checker sees it (``ejected`` included); see :attr:`health` for reports.
    state: Health = Health.UNKNOWN
    weight: int = 0
    #: Weight 0 or not ``ready``: no new traffic, live sessions continue.
    draining: bool = False
    #: Live WebSocket sessions plus in-flight HTTP requests.
    live: int = 0
    max_conns: int = 0
    #: Clock time of the last state change, or None if it never changed.
    last_change: Optional[float] = None
    last_error: Optional[str] = None
    #: Clock time a passive ejection ends, while ejected.
    ejected_until: Optional[float] = None

    @property
    def health(self) -> Health:
        """The reported state: ``healthy``, ``unhealthy`` or ``unknown``."""
        return self.state.reported

    @property
    def detail(self) -> str:
        """Why, in a few words: the last error seen, else the state when reported otherwise."""
        if self.last_error:
            return self.last_error
        return self.state.value if self.state is not self.health else ""


class IHealthView(Interface):
    """Read-only health of every configured backend, by target group."""

    def groups() -> list:
        """The target group names."""

    def backends(group: str) -> list:
        """A :class:`BackendStatus` per backend of ``group``, in configuration order."""


def all_backends(view: IHealthView) -> list[BackendStatus]:
    """Every backend of every group of ``view``."""
    return [status for group in view.groups() for status in view.backends(group)]


@implementer(IHealthView)
class UnknownHealth:
    """Every configured backend is ``unknown``: no health checks run."""

    def __init__(self, groups: Iterable[TargetGroupConfig]) -> None:
        self._records = {
            group.name: [
                BackendStatus(
                    group.name,
                    backend.address,
                    weight=backend.weight,
                    max_conns=backend.max_conns,
                )
                for backend in group.backends
            ]
            for group in groups
        }

    def groups(self) -> list[str]:
        return list(self._records)

    def backends(self, group: str) -> list[BackendStatus]:
        return list(self._records[group])


def __getattr__(name: str):
    """The former names, for one release, with a DeprecationWarning."""
    if name == "BackendHealth":
        warnings.warn(
            "clbproxy.upstream.health.view.BackendHealth is deprecated: "
            "use clbproxy.upstream.health.view.BackendStatus",
            DeprecationWarning,
            stacklevel=2,
        )
        return BackendStatus
    if name == "CheckedHealth":
        warnings.warn(
            "clbproxy.upstream.health.view.CheckedHealth is deprecated: "
            "clbproxy.upstream.health.checks.CheckedHealth is the view itself",
            DeprecationWarning,
            stacklevel=2,
        )
        return _same_view
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _same_view(view: IHealthView) -> IHealthView:
    """What ``CheckedHealth(state)`` was: the checker's state is now the view itself."""
    return view
