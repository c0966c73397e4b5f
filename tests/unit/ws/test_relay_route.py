"""The relay takes the listener's routing decision for an upgrade and never routes again."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.routing.settings import ListenerSettings
from clbproxy.upstream.balancer import TargetGroup
from clbproxy.ws.relay import RelayServerFactory, Route

UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: public.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)

PUBLIC = RuleConfig(target_group="public", host="public.test")
INTERNAL = RuleConfig(target_group="internal", host="internal.test")


class _Recorder:
    """A backend connector that records where the relay connects, and never connects."""

    def __init__(self) -> None:
        self.backends: list[tuple[BackendConfig, str]] = []

    def __call__(self, backend: BackendConfig, group: TargetGroupConfig):
        self.backends.append((backend, group.name))
        return self

    def connect(self, factory):
        return defer.Deferred()


class _Transport(StringTransport):
    """A client connection; Autobahn unregisters a producer it may never have registered."""

    def unregisterProducer(self) -> None:
        self.producer = None


def _settings() -> ListenerSettings:
    listener = ListenerConfig(name="web", bind="tcp:0", rules=(PUBLIC, INTERNAL))
    groups = {
        name: TargetGroup(TargetGroupConfig(name, (BackendConfig("127.0.0.1", port),)))
        for name, port in (("public", 8001), ("internal", 8002))
    }
    return ListenerSettings.from_config(listener, groups)


class RouteHandOffTests(unittest.TestCase):
    def handshake(self, route):
        recorder = _Recorder()
        factory = RelayServerFactory(_settings(), MemoryReactorClock(), connector=recorder)
        # What RelayServerFactory.upgrade does around Autobahn's resource.
        factory._route = route
        protocol = factory.buildProtocol(None)
        factory._route = None
        transport = _Transport()
        protocol.makeConnection(transport)
        protocol.dataReceived(UPGRADE)
        return recorder, protocol, transport

    def test_the_backend_is_the_one_of_the_rule_the_listener_matched(self):
        # Host says public.test; the listener's decision (internal) is what counts.
        settings = _settings()
        recorder, protocol, _ = self.handshake(Route(settings, INTERNAL, "/chat?room=1"))
        self.assertEqual(recorder.backends, [(BackendConfig("127.0.0.1", 8002), "internal")])
        self.assertIs(protocol.session.rule, INTERNAL)

    def test_the_backend_gets_the_target_the_listener_matched(self):
        settings = _settings()
        _, protocol, _ = self.handshake(Route(settings, PUBLIC, "/routed;"))
        self.assertEqual(protocol.session.target, "/routed;")

    def test_no_rule_is_answered_404(self):
        recorder, _, transport = self.handshake(Route(_settings(), None, "/"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "), transport.value())
        self.assertEqual(recorder.backends, [])

    def test_an_upgrade_no_listener_routed_is_refused(self):
        recorder, _, transport = self.handshake(None)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 "), transport.value())
        self.assertEqual(recorder.backends, [])
