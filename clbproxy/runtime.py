"""Runtime backend controls: drain, disable, enable and reweight without a reload.

Like HAProxy's runtime API (``set server ... state drain|maint|ready``,
``set server ... weight``), these act on the live balancer only; tap.conf is
unchanged and a reload starts from it again.

:class:`ControlledTargetGroup` wraps a :class:`~clbproxy.balancer.TargetGroup`
(same ``name``/``config``/``pick``) rather than changing it: its ``pick``
leaves out drained and disabled backends, and a new weight rebuilds the inner
balancer from the configuration with that weight.  Backends are named by
address (``host:port``), as users write them.

States: ``ready`` takes new sessions; ``drain`` takes none but lets open ones
finish (it is shown as drained once it has no live sessions); ``maint``
(disable) takes none either and marks the backend out of service.  Neither
cuts open sessions.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import attrs

from clbproxy.balancer import TargetGroup
from clbproxy.config import BackendConfig, TargetGroupConfig

READY = "ready"
DRAIN = "drain"
MAINT = "maint"

#: The largest weight a backend may be given (as in tap.conf).
MAX_WEIGHT = 100


class UnknownBackend(KeyError):
    """No backend with that address in that target group."""


@attrs.frozen
class BackendControl:
    """The runtime state of one backend: its admin state and effective weight."""

    address: str
    configured_weight: int
    weight: int
    state: str = READY


class ControlledTargetGroup:
    """A target group whose backends can be drained, disabled and reweighted at run time."""

    def __init__(
        self,
        config: TargetGroupConfig,
        balancer: Callable[[TargetGroupConfig], TargetGroup] = TargetGroup,
    ) -> None:
        self.config = config
        self._balancer = balancer
        self._controls = {
            backend.address: BackendControl(backend.address, backend.weight, backend.weight)
            for backend in config.backends
        }
        self._inner = balancer(config)

    @property
    def name(self) -> str:
        return self.config.name

    def pick(self, exclude: Iterable[BackendConfig] = ()) -> Optional[BackendConfig]:
        """The backend for a new session or request, leaving out drained and disabled ones."""
        excluded = {backend.address for backend in exclude}
        excluded.update(a for a, control in self._controls.items() if control.state != READY)
        if not excluded:
            return self._inner.pick()
        skip = [backend for backend in self._inner.config.backends if backend.address in excluded]
        return self._inner.pick(exclude=skip)

    def controls(self) -> list[BackendControl]:
        """Every backend's runtime state, in configuration order."""
        return [self._controls[backend.address] for backend in self.config.backends]

    def control(self, address: str) -> BackendControl:
        try:
            return self._controls[address]
        except KeyError:
            raise UnknownBackend(address) from None

    def set_state(self, address: str, state: str) -> BackendControl:
        """Put a backend in ``ready``, ``drain`` or ``maint``."""
        if state not in (READY, DRAIN, MAINT):
            raise ValueError(f"unknown state {state!r}")
        control = attrs.evolve(self.control(address), state=state)
        self._controls[address] = control
        return control

    def set_weight(self, address: str, weight: int) -> BackendControl:
        """Give a backend a new weight (0-100) until the next reload."""
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ValueError("weight must be an integer")
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight {weight} out of range 0-{MAX_WEIGHT}")
        control = attrs.evolve(self.control(address), weight=weight)
        self._controls[address] = control
        backends = tuple(
            attrs.evolve(backend, weight=self._controls[backend.address].weight)
            for backend in self.config.backends
        )
        self._inner = self._balancer(attrs.evolve(self.config, backends=backends))
        return control
