"""The watch loop against a fake gateway and a fake clock: what it reads, applies, and when."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.trial import unittest

from clbproxy.fleet.cache import Snapshot
from clbproxy.fleet.messages import (
    Event,
    FleetKeys,
    GatewayError,
    Header,
    KeyValue,
    RangeResult,
    WatchResponse,
)
from clbproxy.fleet.watch import MAX_BACKOFF, ConfigWatch, FleetStatus, backoff

KEYS = FleetKeys("prod")


class FakeWatch:
    def __init__(self, start: int, on_response, endpoint: str) -> None:
        self.start = start
        self.on_response = on_response
        self.endpoint = endpoint
        self.ended = defer.Deferred()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if not self.ended.called:
            self.ended.callback("cancelled")

    def send(self, **fields) -> None:
        self.on_response(WatchResponse(**fields))

    def put(self, revision: int, document: str, key: bytes = KEYS.config) -> None:
        kv = KeyValue(key=key, value=document.encode(), mod_revision=revision)
        self.send(header=Header(revision=revision), events=(Event("PUT", kv),))


class FakeGateway:
    """Answers nothing by itself: each test answers the reads and feeds the watches."""

    def __init__(self) -> None:
        self.endpoints = ["http://a:2379", "http://b:2379", "http://c:2379"]
        self.index = 0
        self.reads: list[tuple[dict, defer.Deferred]] = []
        self.watches: list[FakeWatch] = []

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.index]

    def rotate(self) -> str:
        self.index = (self.index + 1) % len(self.endpoints)
        return self.endpoint

    def range(self, key, range_end=None, timeout=None, endpoint=None) -> defer.Deferred:
        d = defer.Deferred()
        self.reads.append(({"key": key, "range_end": range_end, "endpoint": endpoint}, d))
        return d

    def watch(self, key, range_end, start_revision, on_response) -> FakeWatch:
        watch = FakeWatch(start_revision, on_response, self.endpoint)
        self.watches.append(watch)
        return watch

    def answer(self, revision: int, document=None, mod_revision=None) -> None:
        """Answer the oldest read still waiting."""
        _, d = next(r for r in self.reads if not r[1].called)
        kvs = ()
        if document is not None:
            kvs = (
                KeyValue(key=KEYS.config, value=document.encode(), mod_revision=mod_revision or 1),
            )
        d.callback(RangeResult(Header(revision=revision), kvs))

    def fail(self, error: str = "timed out") -> None:
        _, d = next(r for r in self.reads if not r[1].called)
        d.errback(GatewayError(error))

    @property
    def current(self) -> FakeWatch:
        return self.watches[-1]


class Applier:
    """Records what it was asked to apply; refuses documents containing ``bad``."""

    def __init__(self) -> None:
        self.applied: list[Snapshot] = []
        self.asked: list[Snapshot] = []
        self.hold = False
        self.pending: list[defer.Deferred] = []

    def __call__(self, snapshot: Snapshot) -> defer.Deferred:
        self.asked.append(snapshot)
        if "bad" in (snapshot.document or ""):
            return defer.succeed((False, "etcd:/clbproxy/prod/config: listener: bad"))
        if self.hold:
            d = defer.Deferred()
            d.addCallback(lambda _: self.applied.append(snapshot) or (True, None))
            self.pending.append(d)
            return d
        self.applied.append(snapshot)
        return defer.succeed((True, None))

    @property
    def documents(self) -> list:
        return [s.document for s in self.applied]


def started(applied=None, jitter=0.0):
    clock = task.Clock()
    gateway = FakeGateway()
    applier = Applier()
    status = FleetStatus(cluster="prod", instance="a")
    watch = ConfigWatch(
        clock, gateway, KEYS, applier, status, applied=applied, jitter=lambda: jitter
    )
    watch.start()
    return clock, gateway, applier, status, watch


class StartTests(unittest.TestCase):
    def test_starts_with_a_read_of_the_watched_keys_then_watches_from_the_next_revision(self):
        clock, gateway, applier, status, watch = started()
        self.assertEqual(gateway.reads[0][0]["key"], KEYS.config)
        self.assertEqual(gateway.reads[0][0]["range_end"], KEYS.cookie_secret_previous + b"\0")
        gateway.answer(12, "v1", mod_revision=9)
        self.assertEqual(applier.documents, ["v1"])
        self.assertEqual(gateway.current.start, 13)
        self.assertEqual(status.applied_revision, 9)

    def test_the_document_in_use_is_not_applied_again(self):
        clock, gateway, applier, status, watch = started(applied=Snapshot("v1", 9))
        gateway.answer(12, "v1", mod_revision=9)
        self.assertEqual(applier.asked, [])

    def test_created_marks_the_watch_connected(self):
        clock, gateway, applier, status, watch = started()
        gateway.answer(3, "v1")
        self.assertFalse(status.connected)
        gateway.current.send(header=Header(revision=3), created=True)
        self.assertTrue(status.connected)


class EventTests(unittest.TestCase):
    def setUp(self):
        self.clock, self.gateway, self.applier, self.status, self.watch = started()
        self.gateway.answer(5, "v1", mod_revision=5)
        self.gateway.current.send(header=Header(revision=5), created=True)

    def test_a_put_is_applied_and_its_revision_reported(self):
        self.gateway.current.put(6, "v2")
        self.assertEqual(self.applier.documents, ["v1", "v2"])
        self.assertEqual(self.status.applied_revision, 6)

    def test_one_apply_at_a_time_then_the_newest_state(self):
        self.applier.hold = True
        self.gateway.current.put(6, "v2")
        self.gateway.current.put(7, "v3")
        self.gateway.current.put(8, "v4")
        self.assertEqual([s.document for s in self.applier.asked], ["v1", "v2"])
        self.applier.pending.pop(0).callback(None)
        self.assertEqual([s.document for s in self.applier.asked], ["v1", "v2", "v4"])
        self.applier.pending.pop(0).callback(None)
        self.assertEqual(self.status.applied_revision, 8)

    def test_a_bad_document_is_rejected_once_and_the_last_good_one_stays(self):
        self.gateway.current.put(6, "bad")
        self.assertEqual(self.status.rejected_revision, 6)
        self.assertIn("listener: bad", self.status.rejected_reason)
        self.assertEqual(self.status.applied_revision, 5)
        self.gateway.current.send(header=Header(revision=9))  # progress
        self.assertEqual(len(self.applier.asked), 2)

    def test_a_good_document_after_a_bad_one_is_applied(self):
        self.gateway.current.put(6, "bad")
        self.gateway.current.put(7, "v2")
        self.assertEqual(self.applier.documents, ["v1", "v2"])
        self.assertEqual(self.status.applied_revision, 7)

    def test_deleting_the_document_empties_nothing(self):
        kv = KeyValue(key=KEYS.config, mod_revision=6)
        self.gateway.current.send(header=Header(revision=6), events=(Event("DELETE", kv),))
        self.assertEqual(self.applier.documents, ["v1"])
        self.assertEqual(self.watch.latest.document, "v1")

    def test_a_new_cookie_secret_is_applied_with_the_document(self):
        self.gateway.current.put(6, "s3cret-of-32-characters", key=KEYS.cookie_secret)
        self.assertEqual(self.applier.applied[-1].cookie_secret, "s3cret-of-32-characters")
        self.assertEqual(self.applier.applied[-1].document, "v1")


class ReconnectTests(unittest.TestCase):
    def setUp(self):
        self.clock, self.gateway, self.applier, self.status, self.watch = started()
        self.gateway.answer(5, "v1", mod_revision=5)
        self.gateway.current.send(header=Header(revision=5), created=True)
        self.gateway.current.put(6, "v2")

    def test_an_ended_stream_reconnects_on_the_next_endpoint_from_the_revision_after_the_last_seen(
        self,
    ):
        first = self.gateway.current
        first.ended.callback("connection lost")
        self.assertFalse(self.status.connected)
        self.clock.advance(0.39)
        self.assertIs(self.gateway.current, first)
        self.clock.advance(0.02)
        self.assertEqual(self.gateway.current.start, 7)
        self.assertEqual(self.gateway.current.endpoint, "http://b:2379")
        self.assertEqual(self.status.restarts, {"ended": 1})

    def test_the_backoff_doubles_up_to_30_seconds_and_resets_once_connected(self):
        delays = []
        for _ in range(9):
            before = self.clock.seconds()
            watch = self.gateway.current
            watch.ended.callback("refused")
            while self.gateway.current is watch:
                self.clock.advance(0.01)
            delays.append(round(self.clock.seconds() - before, 1))
        self.assertEqual(delays, [0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])
        self.gateway.current.send(header=Header(revision=6), created=True)
        self.gateway.current.ended.callback("lost")
        self.clock.advance(0.41)
        self.assertEqual(len(self.gateway.watches), 11)

    def test_the_gateways_error_line_cuts_the_watch_and_reconnects(self):
        first = self.gateway.current
        first.send(error="etcdserver: no leader")
        self.assertTrue(first.cancelled)
        self.clock.advance(0.41)
        self.assertEqual(self.gateway.current.start, 7)

    def test_a_compaction_reads_everything_again_and_reloads_only_if_the_content_changed(self):
        self.gateway.current.send(canceled=True, compact_revision=20)
        self.assertEqual(self.status.resyncs, {"compacted": 1})
        self.gateway.answer(30, "v2", mod_revision=6)
        self.assertEqual(self.applier.documents, ["v1", "v2"])
        self.assertEqual(self.gateway.current.start, 31)

    def test_a_compaction_that_hid_a_change_applies_it(self):
        self.gateway.current.send(canceled=True, compact_revision=20)
        self.gateway.answer(30, "v3", mod_revision=25)
        self.assertEqual(self.applier.documents, ["v1", "v2", "v3"])
        self.assertEqual(self.status.applied_revision, 25)

    def test_a_revision_lower_than_seen_is_a_reset_followed_from_there(self):
        self.gateway.current.send(header=Header(revision=2))  # progress from a rebuilt etcd
        self.assertEqual(self.status.resyncs, {"revision reset": 1})
        self.gateway.answer(2, "v2", mod_revision=2)
        self.assertEqual(self.applier.documents, ["v1", "v2"])
        self.assertEqual(self.status.applied_revision, 2)
        self.assertEqual(self.gateway.current.start, 3)

    def test_a_read_that_fails_is_retried_after_the_backoff(self):
        self.gateway.current.send(canceled=True, compact_revision=20)
        self.gateway.fail()
        self.clock.advance(0.41)
        self.gateway.answer(30, "v2", mod_revision=6)
        self.assertEqual(self.gateway.current.start, 31)


class FrozenMemberTests(unittest.TestCase):
    def setUp(self):
        self.clock, self.gateway, self.applier, self.status, self.watch = started()
        self.gateway.answer(5, "v1", mod_revision=5)
        self.gateway.current.send(header=Header(revision=5), created=True)

    def test_every_10_s_the_watched_member_is_read(self):
        self.clock.advance(10)
        query, _ = self.gateway.reads[-1]
        self.assertEqual(query["endpoint"], "http://a:2379")
        self.assertEqual(query["key"], KEYS.config)

    def test_a_member_that_does_not_answer_has_its_watch_moved_to_the_next_one(self):
        frozen = self.gateway.current
        self.clock.advance(10)
        self.gateway.fail("timed out")
        self.assertTrue(frozen.cancelled)
        self.assertEqual(self.status.restarts, {"check failed": 1})
        self.clock.advance(0.41)
        self.assertEqual(self.gateway.current.endpoint, "http://b:2379")
        self.assertEqual(self.gateway.current.start, 6)

    def test_a_watch_that_falls_behind_the_member_is_replaced_by_a_resync(self):
        self.clock.advance(10)
        self.gateway.answer(9, "v2", mod_revision=9)
        self.clock.advance(10)
        self.gateway.answer(9, "v2", mod_revision=9)
        self.assertEqual(self.status.restarts, {"stale": 1})
        self.clock.advance(0.41)
        self.gateway.answer(9, "v2", mod_revision=9)
        self.assertEqual(self.applier.documents, ["v1", "v2"])

    def test_stop_cancels_the_watch_and_the_timers(self):
        watch = self.gateway.current
        self.watch.stop()
        self.assertTrue(watch.cancelled)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BackoffTests(unittest.TestCase):
    def test_the_backoff_is_jittered_within_20_percent(self):
        self.assertEqual(backoff(1, 0.0), 0.4)
        self.assertAlmostEqual(backoff(1, 0.999), 0.6, places=2)
        self.assertEqual(backoff(30, 0.999), MAX_BACKOFF)


class SharedGatewayTests(unittest.TestCase):
    def test_the_check_reads_the_watched_member_even_if_another_call_moved_the_gateway(self):
        clock, gateway, applier, status, watch = started()
        gateway.answer(5, "v1", mod_revision=5)
        gateway.rotate()  # presence failed over to b
        clock.advance(10)
        query, _ = gateway.reads[-1]
        self.assertEqual(query["endpoint"], "http://a:2379")
        gateway.fail("timed out")
        clock.advance(0.41)
        self.assertNotEqual(gateway.current.endpoint, "http://a:2379")
