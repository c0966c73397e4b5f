"""Keep the cyclic garbage collector away from what start-up built.

A full collection walks every object the collector tracks.  A started clbproxy
holds some 75 000 of them (modules, the configuration, the services) that live
as long as the process, and every full collection walked them all again:
about 13 µs of each WebSocket handshake's proxy CPU, measured with
``gc.callbacks`` (``bench/RESULTS.md``, run ``ab-ids-cost``).  ``gc.freeze``
moves them into a permanent generation that no collection walks.

Frozen objects are never collected, so one that later becomes garbage in a
reference cycle would stay for good.  Hence only start-up is frozen: the
freeze runs when the reactor starts, before any client connection exists (a
frozen connection would leak once closed), after a collection of start-up's
own garbage.  A reload thaws them (``gc.unfreeze``: back into the oldest
generation, collected as before), since it drops start-up objects (the old
configuration, replaced listeners); nothing is frozen again after that, as live
connections exist by then.
"""

from __future__ import annotations

import gc
from typing import Any, Optional


def freeze_after_start(reactor: Any, reloader: Optional[Any] = None) -> None:
    """Freeze start-up's objects when ``reactor`` runs; thaw them after a reload of ``reloader``.

    ``reloader`` is a :class:`clbproxy.ops.reload.Reloader` (its ``hooks``), or
    None for a process that never reloads.
    """
    reactor.callWhenRunning(freeze)
    if reloader is not None:
        reloader.hooks.append(thaw)


def freeze() -> None:
    """Collect start-up's garbage, then freeze every object left (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def thaw(config: object = None) -> None:
    """Let the collector walk the frozen objects again (``gc.unfreeze``); a reload hook."""
    gc.unfreeze()
