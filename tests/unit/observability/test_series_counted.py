"""Tests for :meth:`clbproxy.observability.series.SeriesStore.sample` on counted sessions.

A relay's sessions come in a :class:`~clbproxy.ws.livecount.SessionSet`, which
counts them per backend as they open and end; the sampler reads those counts
and the sessions opened since the last sample, and its charts are the same as
when it walked every live session.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.config import BackendConfig
from clbproxy.observability import accesslog
from clbproxy.observability.series import BUCKET_SECONDS, SeriesStore
from clbproxy.observability.service import Observability
from clbproxy.ws.livecount import SessionSet
from tests.unit.observability.test_series import config


class Group:
    name = "pool"


class Session:
    """A relay session as the sampler and the session set see it."""

    group = Group()

    def __init__(self, port: int = 8181) -> None:
        self.backend_config = BackendConfig("127.0.0.1", port)
        self.record = accesslog.SessionRecord(status=0)
        self.opened_at: Optional[float] = None
        self.live_key = None


class Both:
    """The same sessions in a plain set (walked) and a session set (counted), one store each."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.plain: set = set()
        self.counted = SessionSet()
        self.stores = []
        for sessions in (self.plain, self.counted):
            observability = Observability(config(), {}, clock)
            observability.live.add_listener(config().listeners[0], sessions)
            self.stores.append(SeriesStore(clock, observability.live))

    def open(self, port: int = 8181) -> tuple[Session, Session]:
        """A session on each side gets its 101 and opens now."""
        pair = Session(port), Session(port)
        for session, sessions in zip(pair, (self.plain, self.counted)):
            sessions.add(session)
            session.record.status = 101
            session.opened_at = self.clock.seconds()
        self.counted.switched(pair[1])
        self.counted.opened(pair[1])
        return pair

    def end(self, pair: tuple[Session, Session]) -> None:
        self.plain.discard(pair[0])
        self.counted.discard(pair[1])
        duration = self.clock.seconds() - pair[0].opened_at
        record = accesslog.SessionRecord(
            listener="web",
            group="pool",
            backend=pair[0].backend_config.address,
            status=101,
            duration_s=duration,
        )
        for store in self.stores:
            store({"log_namespace": accesslog.NAMESPACE, **record.fields()})

    def sample(self) -> None:
        for store in self.stores:
            store.sample()

    def raws(self) -> list[dict]:
        return [store.raw() for store in self.stores]


class CountedSampleTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.both = Both(self.clock)

    def test_the_charts_are_those_of_walking_every_session(self) -> None:
        both, clock = self.both, self.clock
        clock.advance(1)
        first = both.open()
        both.open(8182)  # a backend not in the configuration
        clock.advance(BUCKET_SECONDS)
        both.sample()
        clock.advance(1)
        both.open()
        short = both.open()
        clock.advance(1)
        both.end(short)  # ended before any sample saw it
        clock.advance(3)
        both.sample()
        both.open()  # opened at the sample's time: the next sample's
        both.sample()
        clock.advance(2)
        both.end(first)
        clock.advance(3)
        both.sample()
        clock.advance(BUCKET_SECONDS)
        both.sample()
        walked, counted = both.raws()
        # A backend no longer configured comes in the order its sessions were met
        # (a set's order, when walked).
        for raw in (walked, counted):
            raw["backends"].sort(key=lambda entry: (entry["group"], entry["address"]))
        self.assertEqual(counted, walked)
        web = counted["listeners"][0]
        self.assertEqual(sum(web["sessions"]), 5)
        self.assertEqual(web["live_sessions"][-4:], [0, 2, 4, 3])

    def test_a_session_is_counted_once_in_the_bucket_it_opened_in(self) -> None:
        self.clock.advance(1)
        self.both.open()
        self.clock.advance(BUCKET_SECONDS)
        self.both.sample()
        self.both.sample()
        self.clock.advance(BUCKET_SECONDS)
        sessions = self.both.raws()[1]["listeners"][0]["sessions"]
        self.assertEqual((sessions[-2:], sum(sessions)), ([1, 0], 1))

    def test_live_sessions_follow_the_counts_per_listener_and_backend(self) -> None:
        opened = [self.both.open() for _ in range(3)]
        self.both.open(8182)
        self.both.end(opened[0])
        self.both.sample()
        self.clock.advance(BUCKET_SECONDS)
        raw = self.both.raws()[1]
        live = {b["address"]: b["live_sessions"][-1] for b in raw["backends"]}
        self.assertEqual(raw["listeners"][0]["live_sessions"][-1], 3)
        self.assertEqual(live, {"127.0.0.1:8181": 2, "127.0.0.1:8182": 1})

    def test_a_sample_reads_only_the_sessions_opened_since_the_last_one(self) -> None:
        for _ in range(100):
            self.both.open()
        self.clock.advance(1)
        self.both.sample()
        fresh = self.both.open()[1]
        self.clock.advance(1)
        self.assertEqual(self.both.counted.take_opened(), [fresh])
