"""The two state vocabularies of a backend: its health and its admin state.

Both are enums whose values are the words logs, the admin API JSON, metrics
labels and the status page show; a member formats as its value, so a log line
or a label reads as it always did.
"""

from __future__ import annotations

import enum


class TextEnum(str, enum.Enum):
    """An enum whose members are their text: equal to it, formatted as it, JSON as it."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Health(TextEnum):
    """A backend's health, as active checks and real traffic decided it."""

    #: In service.
    HEALTHY = "healthy"
    #: Out of service: active checks failed.
    UNHEALTHY = "unhealthy"
    #: Out of service for a while: real traffic failed (passive ejection).
    EJECTED = "ejected"
    #: Nothing checks this backend.
    UNKNOWN = "unknown"

    @property
    def reported(self) -> Health:
        """The state observers show: an ejected backend is reported ``unhealthy``."""
        return Health.UNHEALTHY if self is Health.EJECTED else self


#: The health states observers report (metrics labels, the status page), in this order.
HEALTH_STATES = (Health.HEALTHY, Health.UNHEALTHY, Health.UNKNOWN)


class AdminState(TextEnum):
    """What an operator made of a backend at run time (the admin API; a reload resets it)."""

    #: Takes new traffic.
    READY = "ready"
    #: No new traffic; live sessions continue.
    DRAIN = "drain"
    #: Disabled (maintenance): no new traffic; live sessions continue.
    MAINT = "maint"
