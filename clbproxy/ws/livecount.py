"""A listener's live relay sessions, and the counts of them the status page's charts read.

The charts (:meth:`clbproxy.observability.series.SeriesStore.sample`, every
five seconds) show each listener's and backend's open sessions and how many
opened in each bucket.  Found by walking every live session, that was work in
proportion to the sessions twelve times a minute, idle or not (8.7 % of the CPU
of an idle proxy holding 5,000 sessions).  :class:`SessionSet` is the set of
live sessions the relay keeps anyway, and counts them as they get their 101 and
end, so a sample reads one number per backend and the few sessions opened since
the one before.
"""

from __future__ import annotations

from typing import Any, Optional

#: A session's backend as the charts name it: ``(group name, backend address)``.
BackendKey = tuple[str, Optional[str]]


def backend_key(session: Any) -> BackendKey:
    """The ``(group, address)`` a session relays to (address None: no backend chosen)."""
    config = session.backend_config
    return (session.group.name, config.address if config is not None else None)


class SessionSet(set):
    """The relay's live sessions (from the upgrade request until both hops are closed).

    A plain set of sessions to everything that adds, removes and iterates them;
    besides, the sessions whose client got its 101 are counted per backend
    (:meth:`switched`; :meth:`discard` takes a session out again, with the key
    it was counted under, kept in its ``live_key``), and the sessions whose hops
    both opened since the last :meth:`take_opened` are kept apart (:meth:`opened`).
    """

    __slots__ = ("open", "by_backend", "_recent")

    def __init__(self) -> None:
        super().__init__()
        #: Sessions whose client got its 101 and that have not ended.
        self.open = 0
        #: The same per :data:`BackendKey` (no key with a count of 0).
        self.by_backend: dict[BackendKey, int] = {}
        #: Counted sessions whose hops both opened since the last :meth:`take_opened`.
        self._recent: dict[Any, None] = {}

    def switched(self, session: Any) -> None:
        """``session``'s client got its 101: count it on its backend (once)."""
        if session.live_key is not None:
            return
        key = session.live_key = backend_key(session)
        self.open += 1
        self.by_backend[key] = self.by_backend.get(key, 0) + 1

    def opened(self, session: Any) -> None:
        """Both hops of the counted ``session`` are open (its ``opened_at`` is set)."""
        if session.live_key is not None:
            self._recent[session] = None

    def take_opened(self) -> list:
        """The live sessions :meth:`opened` since the last call (then forgotten here)."""
        recent = list(self._recent)
        self._recent.clear()
        return recent

    def discard(self, session: Any) -> None:
        """``session`` ended: no longer live, nor counted."""
        super().discard(session)
        key = getattr(session, "live_key", None)
        if key is None:
            return
        session.live_key = None
        self.open -= 1
        count = self.by_backend[key] - 1
        if count:
            self.by_backend[key] = count
        else:
            del self.by_backend[key]
        self._recent.pop(session, None)

    def remove(self, session: Any) -> None:
        if session not in self:
            raise KeyError(session)
        self.discard(session)
