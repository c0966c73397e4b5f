"""An ended WebSocket session is freed by reference counting, not left to the cyclic collector.

Each session left in reference cycles costs every later handshake a share of
the collector's passes over it; the session, its hops, its timers and its
listener connection's parser must go as soon as the last reference does.
"""

from __future__ import annotations

import gc
import platform

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests.integration.test_websocket_passthrough import PassThroughTestCase
from tests.support.handshakes import upgrade_request

#: Types whose instances must not be found only by the cyclic collector.
_PER_SESSION = {"PassThroughSession", "Hop", "SessionTimers", "ReadPauses", "_Splitter"}


class SessionCycleTests(PassThroughTestCase):
    def setUp(self):
        if platform.python_implementation() != "CPython":
            raise unittest.SkipTest("reference counting frees objects at once only on CPython")
        super().setUp()
        gc.collect()
        flags = gc.get_debug()
        gc.set_debug(flags | gc.DEBUG_SAVEALL)

        def restore():
            gc.set_debug(flags)
            gc.garbage.clear()

        self.addCleanup(restore)
        gc.garbage.clear()

    @defer.inlineCallbacks
    def test_an_ended_session_leaves_nothing_for_the_cyclic_collector(self):
        backend, port = yield self.proxy()
        answer = self.exchange(port, upgrade_request(), close_after=0.2)
        seen = yield backend.got_head
        got = yield answer
        self.assertTrue(got.startswith(b"HTTP/1.1 101 "))
        seen.transport.abortConnection()
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.net.service.relay.sessions, set())
        gc.collect()
        left = sorted({type(o).__name__ for o in gc.garbage} & _PER_SESSION)
        self.assertEqual(left, [])
