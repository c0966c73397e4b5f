"""A session with rate limits is freed by reference counting too.

Its limiters record calm reads on the hops, and the hops keep the session's
time on the client's: ending the session must let go of all of it without
the cyclic collector (see ``test_websocket_cycles``).
"""

from __future__ import annotations

import gc

from twisted.internet import defer, reactor, task

from tests.integration import test_websocket_cycles as cycles
from tests.support.handshakes import upgrade_request

_WITH_LIMITS = cycles._PER_SESSION | {
    "LimitedHop",
    "RateLimiter",
    "_OwnRecord",
    "TokenBucket",
    "SessionControls",
}


class LimitedSessionCycleTests(cycles.SessionCycleTests):
    @defer.inlineCallbacks
    def test_an_ended_session_leaves_nothing_for_the_cyclic_collector(self):
        backend, port = yield self.proxy(
            websocket_message_rate=1000.0, websocket_byte_rate=1_000_000
        )
        answer = self.exchange(port, upgrade_request(), close_after=0.2)
        seen = yield backend.got_head
        got = yield answer
        self.assertTrue(got.startswith(b"HTTP/1.1 101 "))
        seen.transport.abortConnection()
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.net.service.relay.sessions, set())
        gc.collect()
        left = sorted({type(o).__name__ for o in gc.garbage} & _WITH_LIMITS)
        self.assertEqual(left, [])
