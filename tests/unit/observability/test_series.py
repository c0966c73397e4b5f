"""Tests for :mod:`clbproxy.observability.series`: the status page's 15 minutes of charts.

Every series is a ring of fixed-size arrays: its memory does not grow with the
traffic, a bucket counts exactly the events of its five seconds, and workers'
buckets merge by summing counts and latency histograms.
"""

from __future__ import annotations

import json
import tracemalloc

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.config import (
    AdminConfig,
    BackendConfig,
    Config,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
)
from clbproxy.observability import accesslog
from clbproxy.observability.admin import AdminResource
from clbproxy.observability.aggregate import GroupAdminResource
from clbproxy.observability.series import (
    BUCKET_SECONDS,
    BUCKETS,
    LATENCY_BOUNDS_MS,
    SLOTS,
    Series,
    SeriesStore,
    merge_raw,
    percentile,
    render,
)
from clbproxy.observability.service import Observability
from tests.unit.observability.test_admin import request

BACKEND = "127.0.0.1:8181"


def http_event(status: int = 200, response_ms=1.0, backend=BACKEND, listener="web") -> dict:
    record = accesslog.RequestRecord(
        listener=listener, group="pool", backend=backend, status=status, response_ms=response_ms
    )
    return {"log_namespace": accesslog.NAMESPACE, **record.fields()}


def session_event(duration_s: float, status: int = 101, backend=BACKEND) -> dict:
    record = accesslog.SessionRecord(
        listener="web", group="pool", backend=backend, status=status, duration_s=duration_s
    )
    return {"log_namespace": accesslog.NAMESPACE, **record.fields()}


def config() -> Config:
    group = TargetGroupConfig(name="pool", backends=(BackendConfig("127.0.0.1", 8181),))
    return Config(
        path="test.conf",
        listeners=(
            ListenerConfig(name="web", bind="tcp:0", rules=(RuleConfig(target_group="pool"),)),
        ),
        target_groups=(group,),
        admin=AdminConfig(),
    )


class FakeSession:
    """What the sampler reads of an open relay session."""

    class group:
        name = "pool"

    backend_config = BackendConfig("127.0.0.1", 8181)

    def __init__(self, opened_at: float) -> None:
        self.opened_at = opened_at
        self.record = accesslog.SessionRecord(status=101)


def last(raw: dict, name: str, kind: str = "listeners") -> int:
    """The newest complete bucket's ``name`` count of the first listener (or backend)."""
    return raw[kind][0][name][-1]


def worker(seconds: float, responses: list, requests: int) -> dict:
    """One worker's raw series: ``requests`` answered in one bucket, its last."""
    clock = Clock()
    clock.advance(seconds)
    store = SeriesStore(clock)
    for i in range(requests):
        store(http_event(response_ms=responses[i % len(responses)]))
    clock.advance(BUCKET_SECONDS)
    return store.raw()


class RingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)  # a bucket boundary (1e6 is a multiple of 5)
        self.store = SeriesStore(self.clock)

    def test_each_bucket_counts_the_requests_errors_of_its_five_seconds(self) -> None:
        for status in (200, 200, 502):
            self.store(http_event(status))
        self.clock.advance(4.9)
        self.store(http_event(504))
        self.clock.advance(0.1)
        self.store(http_event(200))
        self.clock.advance(BUCKET_SECONDS)
        raw = self.store.raw()
        web = raw["listeners"][0]
        self.assertEqual((web["requests"][-2:], web["errors"][-2:]), ([4, 1], [2, 0]))
        backend = raw["backends"][0]
        self.assertEqual((backend["group"], backend["address"]), ("pool", BACKEND))
        self.assertEqual(backend["requests"][-2:], [4, 1])

    def test_the_bucket_being_filled_is_not_shown(self) -> None:
        self.store(http_event())
        self.assertEqual(sum(self.store.raw()["listeners"][0]["requests"]), 0)
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(last(self.store.raw(), "requests"), 1)

    def test_a_request_without_a_backend_counts_on_its_listener_only(self) -> None:
        self.store(http_event(503, response_ms=None, backend=None))
        self.clock.advance(BUCKET_SECONDS)
        raw = self.store.raw()
        self.assertEqual((last(raw, "requests"), last(raw, "errors")), (1, 1))
        self.assertEqual(raw["backends"], [])

    def test_other_log_events_are_ignored(self) -> None:
        self.store({"log_namespace": "clbproxy.ws", "status": 500, "listener": "web"})
        self.assertEqual(self.store.raw()["listeners"], [])

    def test_buckets_skipped_by_a_gap_read_zero_and_older_ones_are_kept(self) -> None:
        self.store(http_event())
        self.clock.advance(60)
        self.store(http_event())
        self.store(http_event())
        self.clock.advance(BUCKET_SECONDS)
        requests = self.store.raw()["listeners"][0]["requests"]
        self.assertEqual(requests[-13:], [1] + [0] * 11 + [2])

    def test_a_gap_longer_than_the_window_clears_every_bucket(self) -> None:
        for _ in range(3):
            self.store(http_event())
            self.clock.advance(BUCKET_SECONDS)
        self.clock.advance(BUCKETS * BUCKET_SECONDS)
        self.store(http_event())
        self.clock.advance(BUCKET_SECONDS)
        requests = self.store.raw()["listeners"][0]["requests"]
        self.assertEqual((len(requests), sum(requests), requests[-1]), (BUCKETS, 1, 1))

    def test_a_slot_reused_after_a_full_turn_starts_from_zero(self) -> None:
        self.store(http_event())
        self.clock.advance(SLOTS * BUCKET_SECONDS)
        self.store(http_event())
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(sum(self.store.raw()["listeners"][0]["requests"]), 1)

    def test_an_event_older_than_the_window_is_dropped(self) -> None:
        series = Series(newest=1000)
        series.count(1000 - SLOTS, 200, 1.0)
        series.count(1000 - SLOTS + 1, 200, 1.0)
        self.assertEqual(sum(series.requests), 1)

    def test_memory_is_constant_over_100k_events_in_an_hour(self) -> None:
        event = http_event()
        for _ in range(SLOTS + 1):  # every slot used once, every series made
            self.store(event)
            self.clock.advance(BUCKET_SECONDS)
        series = self.store.listeners["web"]
        size = series.nbytes()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(100_000):
                event["status"] = 500 if i % 7 == 0 else 200
                event["response_ms"] = (i % 5000) / 10
                self.store(event)
                self.clock.advance(0.036)  # 100 k events over one hour
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertLess(grown, 4096)
        self.assertEqual(series.nbytes(), size)
        self.assertIs(self.store.listeners["web"], series)
        self.assertEqual(len(self.store.backends["pool"]), 1)
        self.assertEqual(size, 4 * SLOTS * (4 + len(LATENCY_BOUNDS_MS) + 1))


class SessionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        observability = Observability(config(), {}, self.clock)
        self.live = observability.live
        self.sessions: set = set()
        self.live.add_listener(config().listeners[0], self.sessions)
        self.store = SeriesStore(self.clock, self.live)

    def test_a_session_is_counted_once_in_the_bucket_it_opened_in(self) -> None:
        self.clock.advance(1)
        self.sessions.add(FakeSession(self.clock.seconds()))
        self.clock.advance(BUCKET_SECONDS)
        self.store.sample()
        self.store.sample()
        self.sessions.clear()
        self.store(session_event(duration_s=BUCKET_SECONDS))
        self.clock.advance(BUCKET_SECONDS)
        sessions = self.store.raw()["listeners"][0]["sessions"]
        self.assertEqual((sessions[-2:], sum(sessions)), ([1, 0], 1))

    def test_a_session_no_sample_saw_is_counted_when_it_ends(self) -> None:
        self.store.sample()
        self.clock.advance(2)
        self.store(session_event(duration_s=1.5))
        self.clock.advance(BUCKET_SECONDS)
        raw = self.store.raw()
        self.assertEqual(last(raw, "sessions"), 1)
        self.assertEqual(last(raw, "sessions", "backends"), 1)

    def test_a_session_a_sample_saw_is_not_counted_again_however_late_its_end_is_counted(
        self,
    ) -> None:
        opened = self.clock.seconds() + 1
        self.clock.advance(1.001)
        self.sessions.add(FakeSession(opened))
        self.store.sample()  # 1 ms after it opened: counted here
        self.sessions.clear()
        # Its end is counted 2 ms after its record was made: by its duration alone it
        # would look opened after the sample.
        self.clock.advance(1)
        event = session_event(duration_s=self.clock.seconds() - opened - 0.002)
        self.store({**event, "opened_at": opened})
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(sum(self.store.raw()["listeners"][0]["sessions"]), 1)

    def test_live_sessions_are_sampled_per_listener_and_backend_and_carried_on(self) -> None:
        self.sessions.update({FakeSession(0.0), FakeSession(0.0)})
        self.store.sample()
        self.clock.advance(3 * BUCKET_SECONDS)
        raw = self.store.raw()
        self.assertEqual(raw["listeners"][0]["live_sessions"][-3:], [2, 2, 2])
        self.assertEqual(raw["backends"][0]["live_sessions"][-3:], [2, 2, 2])

    def test_a_refused_handshake_is_a_request(self) -> None:
        self.store(session_event(0.0, status=502))
        self.clock.advance(BUCKET_SECONDS)
        raw = self.store.raw()
        self.assertEqual([last(raw, n) for n in ("requests", "errors", "sessions")], [1, 1, 0])

    def test_a_removed_backend_is_forgotten_once_its_window_is_past(self) -> None:
        self.store(http_event(backend="10.0.0.9:80"))
        self.store.sample()
        self.assertIn("10.0.0.9:80", self.store.backends["pool"])
        self.clock.advance((SLOTS + 1) * BUCKET_SECONDS)
        self.store.sample()
        self.assertEqual(list(self.store.backends["pool"]), [BACKEND])

    def test_the_service_samples_every_bucket(self) -> None:
        observability = Observability(config(), {}, self.clock)
        observability.live.add_listener(config().listeners[0], {FakeSession(0.0)})
        observability.startService()
        self.addCleanup(observability.stopService)
        self.clock.advance(BUCKET_SECONDS)
        self.clock.advance(BUCKET_SECONDS)
        self.assertEqual(last(observability.series.raw(), "live_sessions"), 1)


class PercentileTests(unittest.TestCase):
    def test_an_empty_histogram_has_no_percentile(self) -> None:
        self.assertIsNone(percentile([], 0.5))

    def test_a_percentile_lies_in_the_bucket_that_holds_it(self) -> None:
        # 98 responses in the bucket (0.707, 1] ms, 2 in (45.255, 64] ms.
        histogram = [[LATENCY_BOUNDS_MS.index(1.0), 98], [len(LATENCY_BOUNDS_MS) - 25, 2]]
        p50 = percentile(histogram, 0.5)
        p99 = percentile(histogram, 0.99)
        self.assertTrue(0.707 < p50 <= 1.0, p50)
        self.assertTrue(LATENCY_BOUNDS_MS[10] < p99 <= LATENCY_BOUNDS_MS[11], p99)

    def test_each_response_time_lands_in_the_bucket_of_its_bound(self) -> None:
        clock = Clock()
        store = SeriesStore(clock)
        for ms in (0.1, 0.25, 0.26, 8.0, 8.01, 1e9):
            store(http_event(response_ms=ms))
        clock.advance(BUCKET_SECONDS)
        histogram = dict(store.raw()["listeners"][0]["latency"][-1])
        self.assertEqual(LATENCY_BOUNDS_MS[10], 8.0)
        self.assertEqual(histogram, {0: 2, 1: 1, 10: 1, 11: 1, len(LATENCY_BOUNDS_MS): 1})

    def test_percentiles_beyond_the_last_bound_are_the_last_bound(self) -> None:
        self.assertEqual(percentile([[len(LATENCY_BOUNDS_MS), 3]], 0.99), LATENCY_BOUNDS_MS[-1])


class MergeTests(unittest.TestCase):
    def test_counts_are_summed_and_percentiles_come_from_the_summed_histograms(self) -> None:
        fast = worker(1_000_000, [1.0], 99)
        slow = worker(1_000_000, [1000.0], 1)
        merged = render(merge_raw([fast, slow]))
        web = merged["listeners"][0]
        self.assertEqual(web["requests"][-1], 100)
        self.assertEqual(web["requests_per_s"][-1], 100 / BUCKET_SECONDS)
        # One slow response in 100: the merged p50 stays fast (an average of the
        # workers' p50s would be about 500 ms); the p99 is still a fast one.
        self.assertLessEqual(web["p50_ms"][-1], 1.0)
        self.assertLessEqual(web["p99_ms"][-1], 1.0)
        slower = render(merge_raw([fast, worker(1_000_000, [1000.0], 2)]))
        self.assertGreater(slower["listeners"][0]["p99_ms"][-1], 700)
        self.assertEqual(merged["backends"][0]["requests"][-1], 100)

    def test_workers_answering_a_bucket_apart_are_aligned_on_the_bucket_numbers(self) -> None:
        early = worker(1_000_000, [1.0], 3)
        late = worker(1_000_000 + BUCKET_SECONDS, [1.0], 4)
        merged = merge_raw([early, late])
        self.assertEqual(merged["last"], late["last"])
        self.assertEqual(merged["listeners"][0]["requests"][-2:], [3, 4])

    def test_a_worker_that_did_not_answer_adds_nothing(self) -> None:
        one = worker(1_000_000, [1.0], 3)
        self.assertEqual(merge_raw([one, {}])["listeners"][0]["requests"][-1], 3)
        self.assertEqual(merge_raw([])["listeners"], [])


class SeriesAPITests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.observability = Observability(config(), {}, self.clock)
        self.resource = AdminResource(
            self.observability.live,
            self.observability.registry,
            config().admin,
            self.observability.series,
        )

    def get(self, path: bytes) -> dict:
        req = request(b"GET", path)
        body = self.resource.render(req)
        self.assertEqual(req.responseCode or 200, 200)
        return json.loads(body)

    def test_the_api_answers_rates_and_percentiles_per_listener_and_backend(self) -> None:
        for _ in range(10):
            self.observability.series(http_event(response_ms=2.0))
        self.clock.advance(BUCKET_SECONDS)
        data = self.get(b"/api/series")
        self.assertEqual(
            (data["bucket_seconds"], data["buckets"], data["end"]),
            (BUCKET_SECONDS, BUCKETS, 1_000_005),
        )
        names = {"requests_per_s", "sessions_per_s", "errors_per_s", "live_sessions"}
        names |= {"p50_ms", "p99_ms", "requests"}
        for entry in (data["listeners"][0], data["backends"][0]):
            self.assertTrue(names <= set(entry), entry.keys())
            self.assertTrue(all(len(entry[name]) == BUCKETS for name in names))
            self.assertEqual(entry["requests_per_s"][-1], 2.0)
            self.assertTrue(1.414 < entry["p50_ms"][-1] <= 2.0)
            self.assertIsNone(entry["p50_ms"][0])
        self.assertEqual(data["listeners"][0]["name"], "web")
        self.assertEqual(
            (data["backends"][0]["group"], data["backends"][0]["address"]), ("pool", BACKEND)
        )

    def test_configured_listeners_and_backends_have_series_before_any_traffic(self) -> None:
        self.observability.live.add_listener(config().listeners[0])
        data = self.get(b"/api/series")
        self.assertEqual([e["name"] for e in data["listeners"]], ["web"])
        self.assertEqual([e["address"] for e in data["backends"]], [BACKEND])

    def test_raw_answers_counts_and_sparse_histograms(self) -> None:
        self.observability.series(http_event(response_ms=2.0))
        self.clock.advance(BUCKET_SECONDS)
        data = self.get(b"/api/series?raw=1")
        self.assertEqual(data["last"], 1_000_000 // BUCKET_SECONDS)
        self.assertEqual(data["latency_bounds_ms"], list(LATENCY_BOUNDS_MS))
        self.assertEqual(data["listeners"][0]["latency"][-1], [[LATENCY_BOUNDS_MS.index(2.0), 1]])

    def test_only_get_is_allowed(self) -> None:
        req = request(b"POST", b"/api/series")
        self.resource.render(req)
        self.assertEqual(req.responseCode, 405)


class FakeGroup:
    """The supervisor's side that the group admin resource asks (no real workers)."""

    config_path = "test.conf"

    def uptime(self) -> float:
        return 1.0

    def admin_targets(self) -> list:
        return []


class GroupSeriesTests(unittest.TestCase):
    def test_the_supervisor_answers_the_sum_of_its_workers_series(self) -> None:
        answers = [
            ({"index": 1}, (200, json.dumps(worker(1_000_000, [1.0], 99)).encode())),
            ({"index": 2}, (200, json.dumps(worker(1_000_000, [1000.0], 2)).encode())),
            ({"index": 3}, None),
        ]
        resource = GroupAdminResource(FakeGroup(), None, config().admin, Clock())
        asked = []

        def ask_all(method, path, body=b""):
            asked.append((method, path))
            return defer.succeed(answers)

        resource._ask_all = ask_all
        req = request(b"GET", b"/api/series")
        resource.render(req)
        self.assertEqual(asked, [(b"GET", b"/api/series?raw=1")])
        data = json.loads(b"".join(req.written))
        web = data["listeners"][0]
        self.assertEqual(web["requests"][-1], 101)
        self.assertGreater(web["p99_ms"][-1], 700)
        self.assertLessEqual(web["p50_ms"][-1], 1.0)
