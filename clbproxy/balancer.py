"""Target groups at run time: which backend takes the next session.

The policy is nginx's smooth weighted round robin: over any window of
``sum(weights)`` picks each backend is chosen exactly ``weight`` times, and the
picks are interleaved rather than bunched.  A weight of 0 takes no new traffic.
"""

from __future__ import annotations

from typing import Iterable, Optional

from clbproxy.config import BackendConfig, TargetGroupConfig


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin over a fixed list of backends."""

    def __init__(self, backends: Iterable[BackendConfig]) -> None:
        self._backends = list(backends)
        self._current = [0] * len(self._backends)

    def pick(self, exclude: Iterable[BackendConfig] = ()) -> Optional[BackendConfig]:
        """The next backend, skipping those in ``exclude`` and weight-0 ones; None if none."""
        excluded = set(exclude)
        total = 0
        best_index = -1
        for index, backend in enumerate(self._backends):
            if backend.weight <= 0 or backend in excluded:
                continue
            self._current[index] += backend.weight
            total += backend.weight
            if best_index == -1 or self._current[index] > self._current[best_index]:
                best_index = index
        if best_index == -1:
            return None
        self._current[best_index] -= total
        return self._backends[best_index]


class TargetGroup:
    """A configured target group with its balancing state."""

    def __init__(self, config: TargetGroupConfig) -> None:
        self.config = config
        self._policy = SmoothWeightedRoundRobin(config.backends)

    @property
    def name(self) -> str:
        return self.config.name

    def pick(self, exclude: Iterable[BackendConfig] = ()) -> Optional[BackendConfig]:
        """The backend for a new session or request, or None when none can take it."""
        return self._policy.pick(exclude)
