"""The status page's session charts from real sessions, on both relay paths.

The series sampler reads the counts the relay keeps as sessions get their 101
and end (:class:`clbproxy.ws.livecount.SessionSet`) instead of walking every
session; here they agree with a walk of the live sessions, for sessions passed
through (the default) and relayed by Autobahn (``per_hop``), open and ended.
"""

from __future__ import annotations

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from clbproxy.observability.series import BUCKET_SECONDS, SLOTS
from tests.support.network import BackendFactory
from tests.support.observed import Observed


class SeriesSessionsTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def proxy(self, **listener_options):
        self.net = Observed(self)
        factory = BackendFactory()
        self.net.connections.append(factory)
        backend_port = yield self.net.listen(factory)
        self.port = yield self.net.start([backend_port], log_path=self.mktemp(), **listener_options)
        self.address = f"127.0.0.1:{backend_port}"

    def sampled(self) -> tuple[int, int, int]:
        """Sample now: the listener's live sessions, the backend's, and the listener's opened."""
        series = self.net.observability.series
        series.sample()
        slot = int(reactor.seconds() // BUCKET_SECONDS) % SLOTS
        listener = series.listeners["web"]
        backend = series.backends["pool"][self.address]
        opened = sum(listener.sessions)
        return listener.live_sessions[slot], backend.live_sessions[slot], opened

    def walked(self) -> int:
        return len(self.net.observability.live.listeners["web"].open_sessions())

    @defer.inlineCallbacks
    def sessions_are_counted_while_open(self):
        clients = [self.net.client(self.port) for _ in range(3)]
        protocols = []
        for client in clients:
            protocols.append((yield client.opened))
        self.assertEqual(self.walked(), 3)
        self.assertEqual(self.sampled(), (3, 3, 3))
        for protocol in protocols[:2]:
            protocol.sendClose(1000)
        for client in clients[:2]:
            yield client.closed
        for _ in range(100):
            if self.walked() == 1:
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(self.sampled(), (1, 1, 3))
        protocols[2].sendClose(1000)
        yield clients[2].closed

    @defer.inlineCallbacks
    def test_passed_through_sessions_are_counted_from_their_101_until_they_end(self):
        yield self.proxy()
        yield self.sessions_are_counted_while_open()

    @defer.inlineCallbacks
    def test_per_hop_sessions_are_counted_from_their_101_until_they_end(self):
        yield self.proxy(websocket_deflate="per_hop")
        yield self.sessions_are_counted_while_open()
