"""What the listener's resource reads of a request's fields: Upgrade, Host, traceparent.

A listener's request holds ``FieldHeaders``, read in one call; the decisions
are those :func:`~clbproxy.listener.service.is_websocket_upgrade` and
``getRawHeaders`` make.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.listener.service import is_websocket_upgrade
from clbproxy.upstream.balancer import TargetGroup
from tests.support.handshakes import upgrade_request
from tests.support.listener import ListenerHarness

WEB = BackendConfig("10.0.0.1", 80)
API = BackendConfig("10.0.0.2", 80)
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class ResourceFieldTests(unittest.TestCase):
    def listener(self) -> ListenerHarness:
        clock = MemoryReactorClock()
        groups = {
            name: TargetGroup(TargetGroupConfig(name, (backend,)), clock)
            for name, backend in (("web", WEB), ("api", API))
        }
        rules = (
            RuleConfig(target_group="api", host="api.test"),
            RuleConfig(target_group="web", host="shop.test"),
        )
        harness = ListenerHarness(
            ListenerConfig(name="web", bind="tcp:0", rules=rules), groups, clock
        )
        self.addCleanup(harness.close)
        return harness

    def test_websocket_among_the_upgrade_tokens_is_an_upgrade(self):
        harness = self.listener()
        harness.client(upgrade_request("/chat", host="shop.test", upgrade="h2c, WebSocket"))
        sent = harness.accept().value()
        self.assertIn(b"\r\nSec-WebSocket-Key: ", sent)

    def test_an_upgrade_to_another_protocol_is_forwarded_as_a_request(self):
        harness = self.listener()
        harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\nUpgrade: h2c\r\n\r\n")
        sent = harness.accept().value()
        self.assertTrue(sent.startswith(b"GET / HTTP/1.1\r\n"), sent)
        self.assertNotIn(b"Sec-WebSocket", sent)

    def test_the_host_field_chooses_the_rule(self):
        harness = self.listener()
        harness.client(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
        harness.client(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        self.assertEqual(harness.backend_attempts(), [("10.0.0.2", 80), ("10.0.0.1", 80)])

    def test_a_valid_traceparent_goes_on_to_the_backend_with_a_new_parent(self):
        harness = self.listener()
        harness.client(
            b"GET / HTTP/1.1\r\nHost: shop.test\r\ntraceparent: %s\r\n\r\n" % TRACEPARENT
        )
        sent = harness.accept().value()
        self.assertIn(b"4bf92f3577b34da6a3ce929d0e0e4736", sent)


class UpgradeTokenTests(unittest.TestCase):
    def test_websocket_is_found_alone_or_among_tokens_in_any_case(self):
        class Request:
            def __init__(self, values) -> None:
                self.requestHeaders = Headers({b"upgrade": values} if values else {})

        table = [
            ([b"websocket"], True),
            ([b" WebSocket\t"], True),
            ([b"h2c, websocket"], True),
            ([b"h2c", b"WEBSOCKET , x"], True),
            ([b"websocketx"], False),
            ([b"h2c, web socket"], False),
            ([b""], False),
            ([], False),
        ]
        for values, expected in table:
            self.assertEqual(is_websocket_upgrade(Request(values)), expected, values)
