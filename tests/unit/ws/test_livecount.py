"""Tests for :mod:`clbproxy.ws.livecount`: a listener's live sessions, counted as they go."""

from __future__ import annotations

from typing import Optional

from twisted.trial import unittest

from clbproxy.config import BackendConfig
from clbproxy.ws.livecount import SessionSet


class Group:
    def __init__(self, name: str) -> None:
        self.name = name


class Session:
    """What the set reads of a relay session: its group, backend and count key."""

    def __init__(self, group: str = "pool", port: Optional[int] = 8181) -> None:
        self.group = Group(group)
        self.backend_config = BackendConfig("127.0.0.1", port) if port else None
        self.live_key = None


class SessionSetTests(unittest.TestCase):
    def setUp(self) -> None:
        self.sessions = SessionSet()

    def switched(self, **kwargs) -> Session:
        session = Session(**kwargs)
        self.sessions.add(session)
        self.sessions.switched(session)
        return session

    def test_a_session_counts_on_its_backend_from_its_101_until_it_ends(self) -> None:
        session = Session()
        self.sessions.add(session)
        self.assertEqual((self.sessions.open, self.sessions.by_backend), (0, {}))
        self.sessions.switched(session)
        self.assertEqual(
            (self.sessions.open, self.sessions.by_backend), (1, {("pool", "127.0.0.1:8181"): 1})
        )
        self.sessions.discard(session)
        self.assertEqual(
            (len(self.sessions), self.sessions.open, self.sessions.by_backend), (0, 0, {})
        )

    def test_sessions_are_counted_per_group_and_backend(self) -> None:
        self.switched()
        self.switched()
        self.switched(port=8182)
        self.switched(group="other")
        self.assertEqual(
            self.sessions.by_backend,
            {
                ("pool", "127.0.0.1:8181"): 2,
                ("pool", "127.0.0.1:8182"): 1,
                ("other", "127.0.0.1:8181"): 1,
            },
        )
        self.assertEqual(self.sessions.open, 4)

    def test_a_session_switched_twice_counts_once(self) -> None:
        session = self.switched()
        self.sessions.switched(session)
        self.assertEqual(self.sessions.open, 1)

    def test_a_session_refused_before_its_101_was_never_counted(self) -> None:
        kept = self.switched()
        refused = Session()
        self.sessions.add(refused)
        self.sessions.discard(refused)
        self.sessions.discard(refused)  # ended twice: still nothing to take back
        self.assertEqual((self.sessions.open, set(self.sessions)), (1, {kept}))

    def test_a_session_ended_twice_is_taken_out_of_the_counts_once(self) -> None:
        first, _ = self.switched(), self.switched()
        self.sessions.discard(first)
        self.sessions.discard(first)
        self.assertEqual(
            (self.sessions.open, self.sessions.by_backend), (1, {("pool", "127.0.0.1:8181"): 1})
        )

    def test_the_sessions_opened_are_taken_once(self) -> None:
        first, second = self.switched(), self.switched()
        self.sessions.opened(first)
        self.sessions.opened(second)
        self.assertEqual(self.sessions.take_opened(), [first, second])
        self.assertEqual(self.sessions.take_opened(), [])

    def test_a_session_that_ended_is_not_among_those_opened(self) -> None:
        first, second = self.switched(), self.switched()
        self.sessions.opened(first)
        self.sessions.opened(second)
        self.sessions.remove(first)
        self.assertEqual(self.sessions.take_opened(), [second])

    def test_remove_refuses_a_session_not_in_the_set(self) -> None:
        self.assertRaises(KeyError, self.sessions.remove, Session())
