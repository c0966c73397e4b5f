"""The status page's charts in headless Chromium, with real requests through the proxy.

The requests are sent inside one 5-second bucket of the wall clock (the
reactor's time); once that bucket is complete, the series API and the page's
requests/s sparkline both end with it: the number of requests sent, per second.
"""

from __future__ import annotations

import json
import re

import treq
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from clbproxy.observability.series import BUCKET_SECONDS
from tests.integration.test_status_page import CHROMIUM, chromium
from tests.support.network import raw_request
from tests.support.observed import Observed

HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

REQUEST = b"GET /chart HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"

#: Requests sent in the bucket under test.
SENT = 7


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, max(seconds, 0.0), lambda: None)


def bucket_now() -> int:
    return int(reactor.seconds() // BUCKET_SECONDS)


class StatusChartsTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        if CHROMIUM is None:
            raise unittest.SkipTest("chromium is not installed (apt-get install chromium)")
        self.net = Observed(self)
        self.http_port = yield self.net.raw_backend(HTTP_RESPONSE)
        self.port = yield self.net.start([self.http_port], log_path=self.mktemp())

    @defer.inlineCallbacks
    def requests_in_one_bucket(self):
        """Send :data:`SENT` requests within one bucket; wait until it is complete."""
        for _ in range(3):
            yield sleep(BUCKET_SECONDS - reactor.seconds() % BUCKET_SECONDS + 0.05)
            bucket = bucket_now()
            for _ in range(SENT):
                response = yield raw_request(self.port, REQUEST)
                self.assertTrue(response.startswith(b"HTTP/1.1 200"), response)
            if bucket_now() == bucket:
                yield sleep((bucket + 1) * BUCKET_SECONDS - reactor.seconds() + 0.1)
                return bucket
        raise AssertionError("the requests never fitted in one 5-second bucket")

    @defer.inlineCallbacks
    def test_sparklines_render_and_end_with_the_requests_sent_in_the_last_bucket(self):
        bucket = yield self.requests_in_one_bucket()
        pool = self.net.pool
        response = yield treq.get(self.net.admin_url("/api/series"), pool=pool)
        series = json.loads((yield response.content()))
        out, err, code = yield chromium("--dump-dom", self.net.admin_url("/"))
        if bucket_now() != bucket + 1:
            raise unittest.SkipTest("the machine was too slow: another bucket began meanwhile")
        self.assertEqual(code, 0, err.decode("utf-8", "replace")[-2000:])
        dom = out.decode("utf-8", "replace")

        self.assertEqual(series["end"], (bucket + 1) * BUCKET_SECONDS)
        web = series["listeners"][0]
        self.assertEqual(web["requests"][-1], SENT)
        self.assertEqual(web["requests_per_s"][-1], SENT / BUCKET_SECONDS)
        backend = series["backends"][0]
        self.assertEqual(backend["requests"][-1], SENT)
        self.assertIsNotNone(backend["p50_ms"][-1])

        listener_card = dom[dom.index('data-series="listener:web"') :]
        requests_chart = re.search(r'<svg [^>]*class="spark-requests_per_s"[^>]*>', listener_card)
        self.assertIsNotNone(requests_chart, listener_card[:2000])
        self.assertIn(f'data-last="{SENT / BUCKET_SECONDS:g}"', requests_chart.group(0))
        self.assertIn(f'data-series="backend:pool/127.0.0.1:{self.http_port}"', dom)
        paths = re.findall(r'<path d="(M[^"]+)" class="(\w+)"', dom)
        self.assertEqual(len(paths), 2 * 6, paths[:3])  # a listener and a backend, 6 paths each
        self.assertTrue(all(d.count("L") == 179 for d, kind in paths if kind == "requests"))
