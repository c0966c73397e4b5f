"""A listener at its seams: raw requests in; which backend gets what, and the client's answer.

The listener routes each request once (its rules, its admission) and hands the
decision on: plain HTTP to the forwarder, upgrades to the relay.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import (
    BackendConfig,
    FixedResponseConfig,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
)
from clbproxy.upstream.balancer import TargetGroup
from tests.support.handshakes import upgrade_request
from tests.support.listener import ListenerHarness

PUBLIC = BackendConfig("10.0.0.1", 8001)
INTERNAL = BackendConfig("10.0.0.2", 8002)
RULES = (
    RuleConfig(target_group="internal", host="internal.test", path="/admin"),
    RuleConfig(target_group="public", host="public.test"),
    RuleConfig(
        host="status.test",
        fixed_response=FixedResponseConfig(status=200, body="up", content_type="text/plain"),
    ),
)


def _groups(clock, public=PUBLIC, internal=INTERNAL) -> dict[str, TargetGroup]:
    return {
        "public": TargetGroup(TargetGroupConfig("public", (public,)), clock),
        "internal": TargetGroup(TargetGroupConfig("internal", (internal,)), clock),
    }


class ListenerServiceTests(unittest.TestCase):
    def listener(self, rules=RULES, **options) -> ListenerHarness:
        clock = MemoryReactorClock()
        config = ListenerConfig(name="web", bind="tcp:0", rules=rules, **options)
        harness = ListenerHarness(config, _groups(clock), clock)
        self.addCleanup(harness.close)
        return harness

    def test_a_request_goes_to_the_group_of_the_rule_its_host_matches(self):
        harness = self.listener()
        harness.client(b"GET /admin HTTP/1.1\r\nHost: internal.test\r\n\r\n")
        harness.client(b"GET / HTTP/1.1\r\nHost: public.test\r\n\r\n")
        self.assertEqual(harness.backend_attempts(), [("10.0.0.2", 8002), ("10.0.0.1", 8001)])

    def test_an_upgrade_goes_to_the_group_of_the_rule_its_host_matches(self):
        harness = self.listener()
        harness.client(upgrade_request("/admin/chat", host="internal.test"))
        self.assertEqual(harness.backend_attempts(), [("10.0.0.2", 8002)])
        request = harness.accept().value()
        self.assertTrue(request.startswith(b"GET /admin/chat HTTP/1.1\r\n"), request)

    def test_a_request_no_rule_matches_is_answered_404_without_a_backend(self):
        harness = self.listener()
        client = harness.client(b"GET /other HTTP/1.1\r\nHost: internal.test\r\n\r\n")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 404 "), client.value())
        self.assertEqual(harness.backend_attempts(), [])

    def test_an_upgrade_no_rule_matches_is_answered_404_without_a_backend(self):
        harness = self.listener()
        client = harness.client(upgrade_request("/chat", host="internal.test"))
        self.assertTrue(client.value().startswith(b"HTTP/1.1 404 "), client.value())
        self.assertEqual(harness.backend_attempts(), [])

    def test_a_fixed_response_rule_answers_itself(self):
        harness = self.listener()
        client = harness.client(b"GET / HTTP/1.1\r\nHost: status.test\r\n\r\n")
        answer = client.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nup"), answer)
        self.assertEqual(harness.backend_attempts(), [])

    def test_a_denied_client_is_refused_403_before_any_backend(self):
        harness = self.listener(deny=("192.0.2.0/24",))
        client = harness.client(upgrade_request("/chat", host="public.test"))
        self.assertTrue(client.value().startswith(b"HTTP/1.1 403 "), client.value())
        self.assertEqual(harness.backend_attempts(), [])

    def test_swap_gives_new_requests_the_new_rules_and_groups(self):
        harness = self.listener()
        moved = BackendConfig("10.0.0.3", 8003)
        rules = (RuleConfig(target_group="public", host="internal.test", path="/admin"),)
        config = ListenerConfig(name="web", bind="tcp:0", rules=rules)
        harness.service.swap(config, _groups(harness.clock, public=moved))
        harness.client(b"GET /admin HTTP/1.1\r\nHost: internal.test\r\n\r\n")
        self.assertEqual(harness.backend_attempts(), [("10.0.0.3", 8003)])
