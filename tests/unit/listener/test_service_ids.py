"""A listener's request-ID header on the wire, before and after a reload renames it.

The ID goes to the backend and back to the client under the listener's
``request_id_header``; a reload (:meth:`ListenerService.swap`) that renames or
turns it off applies to the next request, on both sides.
"""

from __future__ import annotations

import re

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import BackendConfig, ListenerConfig, RuleConfig, TargetGroupConfig
from clbproxy.upstream.balancer import TargetGroup
from tests.support.listener import ListenerHarness

BACKEND = BackendConfig("10.0.0.1", 8001)
RULES = (RuleConfig(target_group="public"),)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: backend-said\r\n\r\nok"


class RenamedIdTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.groups = {"public": TargetGroup(TargetGroupConfig("public", (BACKEND,)), self.clock)}
        self.harness = ListenerHarness(
            ListenerConfig(name="web", bind="tcp:0", rules=RULES), self.groups, self.clock
        )
        self.addCleanup(self.harness.close)

    def exchange(self) -> tuple[bytes, bytes]:
        """One GET through the listener: what the backend got, what the client got."""
        client = self.harness.client(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        backend = self.harness.accept()
        sent = backend.value()
        backend.receive(ANSWER)
        return sent, client.value()

    def test_the_id_the_backend_was_sent_is_the_one_the_client_gets(self) -> None:
        sent, answer = self.exchange()
        (sent_id,) = re.findall(rb"\r\nX-Request-Id: ([0-9a-f]{32})\r\n", sent)
        self.assertEqual(re.findall(rb"\r\nX-Request-Id: ([^\r]*)\r\n", answer), [sent_id])

    def test_a_reload_that_renames_the_header_renames_it_on_both_sides(self) -> None:
        renamed = ListenerConfig(
            name="web", bind="tcp:0", rules=RULES, request_id_header="X-Correlation-Id"
        )
        self.harness.service.swap(renamed, self.groups)
        sent, answer = self.exchange()
        (sent_id,) = re.findall(rb"\r\nX-Correlation-Id: ([0-9a-f]{32})\r\n", sent)
        self.assertEqual(re.findall(rb"\r\nX-Correlation-Id: ([^\r]*)\r\n", answer), [sent_id])
        # The backend's own X-Request-Id is no longer the proxy's: passed on as it came.
        self.assertIn(b"\r\nX-Request-Id: backend-said\r\n", answer)

    def test_a_reload_that_turns_ids_off_sends_none(self) -> None:
        off = ListenerConfig(name="web", bind="tcp:0", rules=RULES, request_id_header="")
        self.harness.service.swap(off, self.groups)
        sent, answer = self.exchange()
        self.assertNotIn(b"x-request-id", sent.lower())
        self.assertIn(b"\r\nX-Request-Id: backend-said\r\n", answer)
