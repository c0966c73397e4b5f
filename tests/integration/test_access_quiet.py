"""Access lines go where ``[access_log]`` sends them, not into twistd's own log.

Single process: the proxy as twistd builds it, with an observer on the global
publisher standing for twistd's log.  Workers: the real ``twistd -n clbproxy``
with ``workers = 2``, whose standard output is twistd's log.
"""

from __future__ import annotations

import os
import signal

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.observability.accesslog import NAMESPACE
from tests.integration.test_observability import HTTP_RESPONSE, production_config
from tests.integration.test_workers import WorkerGroup, _http_backend
from tests.support.network import raw_request
from tests.support.observed import ProductionProxy, sample, scrape, wait_for_lines

SECOND = """
[[listener]]
name = "second"
bind = "tcp:0:interface=127.0.0.1:backlog=20"
  [[listener.rule]]
  target_group = "pool"
"""

REQUEST = b"GET /quiet-%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


class SingleProcessTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_request_reaches_the_access_log_and_metrics_but_not_the_global_publisher(self):
        twistd_log: list[dict] = []
        globalLogPublisher.addObserver(twistd_log.append)
        self.addCleanup(globalLogPublisher.removeObserver, twistd_log.append)
        proxy = ProductionProxy(self)
        backend = yield proxy.raw_backend(HTTP_RESPONSE)
        path = os.path.abspath(self.mktemp())
        yield proxy.start(production_config(backend) + f'[access_log]\npath = "{path}"\n')

        answer = yield raw_request(proxy.port(), REQUEST % 1)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)

        [line] = yield wait_for_lines(path, 1)
        self.assertIn('"GET /quiet-1 HTTP/1.1" 200 ', line)
        found = yield scrape(proxy)
        labels = {"listener": "web", "backend": f"127.0.0.1:{backend}", "status": "200"}
        self.assertEqual(sample(found, "clbproxy_http_requests_total", **labels), 1)
        self.assertEqual([e for e in twistd_log if e.get("log_namespace") == NAMESPACE], [])

    @defer.inlineCallbacks
    def test_a_listener_a_reload_adds_writes_to_the_access_log_too(self):
        proxy = ProductionProxy(self)
        backend = yield proxy.raw_backend(HTTP_RESPONSE)
        path = os.path.abspath(self.mktemp())
        access = f'[access_log]\npath = "{path}"\n'
        yield proxy.start(production_config(backend) + access)
        proxy.write(production_config(backend, listeners=SECOND) + access)
        self.assertTrue((yield proxy.reloader.reload()))

        yield raw_request(proxy.port("second"), REQUEST % 2)
        [line] = yield wait_for_lines(path, 1)
        self.assertIn('"GET /quiet-2 HTTP/1.1" 200 ', line)
        self.assertIn("listener=second ", line)


class WorkerTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_workers_request_is_in_the_access_log_and_not_in_twistds_log(self):
        group = WorkerGroup(self)
        backend = yield group.listen(_http_backend())
        access_log = os.path.join(group.directory, "access.log")
        group.write(backend, top=f'[access_log]\npath = "{access_log}"\n')
        yield group.start()

        for n in range(2):
            yield raw_request(group.port, REQUEST % n)
        lines = yield wait_for_lines(access_log, 2)
        self.assertEqual(
            sorted(line.split('"')[1] for line in lines),
            ["GET /quiet-0 HTTP/1.1", "GET /quiet-1 HTTP/1.1"],
        )
        # Each worker logs this after its access events: had it sent them, they came first.
        os.kill(group.process.pid, signal.SIGUSR1)
        yield group.wait_for(lambda: group.log().count("log files reopened") == 3)
        self.assertNotIn("/quiet-", group.log())
