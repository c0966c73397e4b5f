"""A forwarded request is freed by reference counting, not left to the cyclic collector.

Each request left in a reference cycle (the forwarder's exchange and the
backend's, each holding the other) costs every later request a share of the
collector's passes over it, its headers, its ID and its access record.
"""

from __future__ import annotations

import gc
import platform

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.upstream.balancer import TargetGroup
from tests.support.listener import ListenerHarness

BACKEND = BackendConfig("10.0.0.1", 8001)
RULES = (RuleConfig(target_group="public"),)
GET = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

#: Types whose instances must not be found only by the cyclic collector.
_PER_REQUEST = {"ListenerRequest", "_Exchange", "UpstreamExchange", "RequestRecord"}


class RequestCycleTests(unittest.TestCase):
    def setUp(self) -> None:
        if platform.python_implementation() != "CPython":
            raise unittest.SkipTest("reference counting frees objects at once only on CPython")
        clock = MemoryReactorClock()
        groups = {"public": TargetGroup(TargetGroupConfig("public", (BACKEND,)), clock)}
        self.harness = ListenerHarness(
            ListenerConfig(name="web", bind="tcp:0", rules=RULES), groups, clock
        )
        self.addCleanup(self.harness.close)
        gc.collect()
        flags = gc.get_debug()
        gc.set_debug(flags | gc.DEBUG_SAVEALL)

        def restore() -> None:
            gc.set_debug(flags)
            gc.garbage.clear()

        self.addCleanup(restore)
        gc.garbage.clear()

    def test_answered_keep_alive_requests_leave_nothing_for_the_cyclic_collector(self) -> None:
        client = self.harness.client(GET)
        backend = self.harness.accept()
        backend.receive(ANSWER)
        for _ in range(3):
            client.receive(GET)
            backend.receive(ANSWER)
        self.assertEqual(client.value().count(b"HTTP/1.1 200 OK\r\n"), 4)
        gc.collect()
        left = sorted({type(o).__name__ for o in gc.garbage} & _PER_REQUEST)
        self.assertEqual(left, [])
