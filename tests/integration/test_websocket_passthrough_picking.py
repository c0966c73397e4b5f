"""A passed-through upgrade is balanced by what its request carries when the policy reads it.

The request's fields (headers, cookies, query) are read for picking only when
the group's policy or persistence looks at them; these tests pin that a
policy which does still gets them.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from tests.integration.test_websocket_passthrough import SWITCH, ScriptedBackend
from tests.support.handshakes import upgrade_request
from tests.support.network import Listening


class CountingBackend(ScriptedBackend):
    """A :class:`ScriptedBackend` that takes any number of upgrades (each its own head)."""

    def connectionMade(self):
        self.factory.got_head = defer.Deferred()
        super().connectionMade()


class PickingTests(unittest.TestCase):
    timeout = 15

    @defer.inlineCallbacks
    def backends(self, count: int):
        net = self.net = Listening(self)
        factories, ports = [], []
        for _ in range(count):
            factory = Factory.forProtocol(CountingBackend)
            factory.answer = SWITCH + b"\r\n"
            factory.seen = []
            factory.got_after = None
            ports.append((yield net.listen(factory)))
            factories.append(factory)
            self.addCleanup(lambda f=factory: [p.transport.abortConnection() for p in f.seen])
        return factories, ports

    @defer.inlineCallbacks
    def upgrade(self, port: int, extra: bytes) -> defer.Deferred:
        """One upgrade through the proxy; fires once the proxy answered it."""
        answered = defer.Deferred()

        class Client(Protocol):
            def connectionMade(self):
                self.transport.write(upgrade_request(extra=extra))

            def dataReceived(self, data):
                if not answered.called:
                    answered.callback(data)
                    self.transport.abortConnection()

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        yield endpoint.connect(Factory.forProtocol(Client))
        answer = yield answered
        return answer

    @defer.inlineCallbacks
    def test_a_header_hash_policy_sends_one_key_to_one_backend(self):
        factories, ports = yield self.backends(2)
        port = yield self.net.proxy(
            ports, group_options={"policy": "consistent_hash", "hash_key": "header:x-user"}
        )
        for _ in range(4):
            answer = yield self.upgrade(port, b"X-User: alice\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer)
        self.assertEqual(sorted(len(f.seen) for f in factories), [0, 4])

    @defer.inlineCallbacks
    def test_round_robin_without_reading_the_request_alternates(self):
        factories, ports = yield self.backends(2)
        port = yield self.net.proxy(ports)
        for _ in range(4):
            answer = yield self.upgrade(port, b"X-User: alice\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer)
        self.assertEqual([len(f.seen) for f in factories], [2, 2])
