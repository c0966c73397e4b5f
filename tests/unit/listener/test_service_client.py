"""The access record of a request the listener answers names the client admission named.

The listener works the client's address out once (the peer, or its trusted
proxies' ``X-Forwarded-For``) and the access record reuses it.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.observability.accesslog import NAMESPACE
from clbproxy.upstream.balancer import TargetGroup
from tests.support.listener import ListenerHarness

RULES = (RuleConfig(target_group="web", host="shop.test", path="/app"),)


class AccessClientTests(unittest.TestCase):
    def listener(self, **options) -> ListenerHarness:
        clock = MemoryReactorClock()
        groups = {
            "web": TargetGroup(TargetGroupConfig("web", (BackendConfig("10.0.0.1", 80),)), clock)
        }
        config = ListenerConfig(name="web", bind="tcp:0", rules=RULES, **options)
        harness = ListenerHarness(config, groups, clock)
        self.addCleanup(harness.close)
        return harness

    def records(self) -> list:
        events: list = []

        def observe(event: dict) -> None:
            if event.get("log_namespace") == NAMESPACE and event.get("type") == "http":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return events

    def answer(self, harness: ListenerHarness, request: bytes, ip: str) -> None:
        client = harness.client(request, ip=ip)
        if harness.backend_attempts():
            backend = harness.accept()
            backend.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 "), client.value())

    def test_a_trusted_proxys_request_is_logged_under_the_client_it_forwarded_for(self):
        records = self.records()
        harness = self.listener(trusted_proxies=("192.0.2.0/24",))
        request = b"GET /app HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n"
        self.answer(harness, request, "192.0.2.7")
        self.assertEqual([event["client"] for event in records], ["203.0.113.5"])
        self.assertEqual([event["status"] for event in records], [200])

    def test_an_untrusted_peers_claim_is_not_logged_as_the_client(self):
        records = self.records()
        harness = self.listener()
        request = b"GET /app HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n"
        self.answer(harness, request, "192.0.2.7")
        self.assertEqual([event["client"] for event in records], ["192.0.2.7"])

    def test_a_request_no_rule_matches_is_logged_under_the_forwarded_client(self):
        records = self.records()
        harness = self.listener(trusted_proxies=("192.0.2.0/24",))
        request = b"GET /x HTTP/1.1\r\nHost: other.test\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n"
        self.answer(harness, request, "192.0.2.7")
        self.assertEqual([event["client"] for event in records], ["203.0.113.5"])
        self.assertEqual([event["status"] for event in records], [404])
