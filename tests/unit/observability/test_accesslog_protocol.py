"""A WebSocket session's access line names its client's HTTP version (HTTP/2: RFC 8441)."""

from __future__ import annotations

import io
import json

from twisted.trial import unittest

from clbproxy.observability.accesslog import AccessLog, SessionRecord
from tests.unit.observability.test_accesslog import event


def line(record: SessionRecord, format: str) -> str:
    out = io.StringIO()
    AccessLog("-", format, stdout=out)(event(record))
    return out.getvalue()


class SessionProtocolTests(unittest.TestCase):
    def test_an_http11_session_keeps_its_plain_line(self) -> None:
        self.assertIn(
            '"GET /chat WebSocket" 101', line(SessionRecord(path="/chat", status=101), "plain")
        )

    def test_an_http2_session_is_a_connect_in_the_plain_line(self) -> None:
        record = SessionRecord(path="/chat", status=101, protocol="HTTP/2.0")
        self.assertIn('"CONNECT /chat WebSocket HTTP/2.0" 101', line(record, "plain"))

    def test_the_json_line_has_the_protocol(self) -> None:
        record = SessionRecord(path="/chat", status=101, protocol="HTTP/2.0")
        self.assertEqual(json.loads(line(record, "json"))["protocol"], "HTTP/2.0")
