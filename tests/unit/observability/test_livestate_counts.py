"""The status page's session counts come from the relay's counts, not a walk of every session.

:class:`~clbproxy.observability.livestate.ListenerState` answers how many
sessions are open, in all and per backend; with a relay's
:class:`~clbproxy.ws.livecount.SessionSet` it reads the counts that set keeps,
and the answers are the same as walking a plain set of the same sessions.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.observability.livestate import ListenerState
from clbproxy.ws.livecount import SessionSet
from tests.unit.observability.test_series import config
from tests.unit.observability.test_series_counted import Both, Session


class Unwalkable(Session):
    """A session whose record must not be read: the counts answer without it."""

    @property
    def record(self):
        raise AssertionError("the session was walked")

    @record.setter
    def record(self, value) -> None:
        pass


class CountedListenerStateTests(unittest.TestCase):
    def setUp(self) -> None:
        self.both = Both(Clock())
        self.plain, self.counted = (
            self.both.stores[0].live.listeners["web"],
            self.both.stores[1].live.listeners["web"],
        )

    def test_counts_match_walking_the_same_sessions(self) -> None:
        self.both.open(8181)
        self.both.open(8181)
        gone = self.both.open(8182)
        self.both.open(8183)
        self.both.end(gone)
        self.assertEqual(self.counted.open_count(), 3)
        self.assertEqual(self.plain.open_count(), 3)
        expected = {("pool", "127.0.0.1:8181"): 2, ("pool", "127.0.0.1:8183"): 1}
        self.assertEqual(self.counted.open_by_backend(), expected)
        self.assertEqual(self.plain.open_by_backend(), expected)

    def test_the_status_snapshot_reads_the_same_counts(self) -> None:
        self.both.open(8181)
        self.both.open(8182)
        plain, counted = (store.live.snapshot() for store in self.both.stores)
        self.assertEqual(plain["listeners"][0]["sessions"], 2)
        self.assertEqual(counted["listeners"][0]["sessions"], 2)
        self.assertEqual(
            self.both.stores[1].live.sessions_by_backend(),
            self.both.stores[0].live.sessions_by_backend(),
        )

    def test_counted_sessions_are_not_walked(self) -> None:
        sessions = SessionSet()
        listener = ListenerState(config().listeners[0], sessions)
        for port in (8181, 8181, 8182):
            session = Unwalkable(port)
            sessions.add(session)
            sessions.switched(session)
        self.assertEqual(listener.open_count(), 3)
        self.assertEqual(
            listener.open_by_backend(),
            {("pool", "127.0.0.1:8181"): 2, ("pool", "127.0.0.1:8182"): 1},
        )

    def test_a_session_without_a_backend_counts_as_open_but_on_no_backend(self) -> None:
        sessions = SessionSet()
        listener = ListenerState(config().listeners[0], sessions)
        session = Unwalkable()
        session.backend_config = None
        sessions.add(session)
        sessions.switched(session)
        self.assertEqual(listener.open_count(), 1)
        self.assertEqual(listener.open_by_backend(), {})
