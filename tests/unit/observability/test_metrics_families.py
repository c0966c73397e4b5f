"""The session metrics, kept as plain integers, expose what ``prometheus_client``'s own would.

:class:`~clbproxy.observability.metrics.Metrics` counts a session's end in
plain integers (``_Counts``, ``_Latency``); a scrape must read exactly what
``prometheus_client``'s ``Counter`` and ``Histogram`` would have given for the
same sessions (``_created`` aside: a time).
"""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.metrics import LATENCY_BUCKETS, Metrics
from tests.unit.observability.test_tally import EDGES, samples


def _label(value) -> str:
    return "-" if value is None else str(value)


class SessionFamiliesTests(unittest.TestCase):
    def test_random_sessions_expose_the_same_samples_as_prometheus_client(self) -> None:
        metrics = Metrics(CollectorRegistry(), live=None)
        reference = CollectorRegistry()
        latency = Histogram(
            "clbproxy_websocket_handshake_seconds",
            "",
            ["listener"],
            buckets=LATENCY_BUCKETS,
            registry=reference,
        )
        sessions = Counter(
            "clbproxy_websocket_sessions", "", ["listener", "group", "backend"], registry=reference
        )
        closes = Counter(
            "clbproxy_websocket_closes", "", ["listener", "side", "code"], registry=reference
        )
        closed_first = Counter(
            "clbproxy_websocket_closed_first", "", ["listener", "side"], registry=reference
        )
        rng = random.Random(19)
        for _ in range(1500):
            event = {
                "log_namespace": accesslog.NAMESPACE,
                "type": "websocket",
                "listener": rng.choice(["web", None]),
                "group": rng.choice(["g", None]),
                "backend": rng.choice(["b:1", "b:2", None]),
                "status": rng.choice([101, 101, 403, 502]),
                "handshake_ms": rng.choice([None, *EDGES]),
                "client_close_code": rng.choice([None, 1000, 1006]),
                "backend_close_code": rng.choice([None, 1000, 1011]),
                "closed_by": rng.choice([None, "client", "backend"]),
            }
            if event["status"] == 101 and event["backend"] is None:
                event["backend"] = "b:3"
            metrics(event)
            listener = _label(event["listener"])
            if event["backend"] is not None and event["handshake_ms"] is not None:
                latency.labels(listener).observe(event["handshake_ms"] / 1000)
            if event["status"] != 101:
                continue
            sessions.labels(listener, _label(event["group"]), event["backend"]).inc()
            for side in ("client", "backend"):
                code = event[f"{side}_close_code"]
                closes.labels(listener, side, "none" if code is None else str(code)).inc()
            closed_first.labels(listener, _label(event["closed_by"])).inc()
        for mine, theirs in (
            (metrics.sessions, sessions),
            (metrics.closes, closes),
            (metrics.closed_first, closed_first),
            (metrics.handshake_latency, latency),
        ):
            mine, theirs = samples(mine), samples(theirs)
            self.assertEqual(mine.keys(), theirs.keys())
            for key, value in theirs.items():
                self.assertAlmostEqual(mine[key], value, places=6, msg=key)

    def test_a_created_sample_goes_with_each_label_set(self) -> None:
        metrics = Metrics(CollectorRegistry(), live=None)
        metrics.sessions.inc(("web", "g", "b:1"))
        (family,) = metrics.sessions.collect()
        self.assertEqual(
            [sample.name for sample in family.samples],
            ["clbproxy_websocket_sessions_total", "clbproxy_websocket_sessions_created"],
        )
