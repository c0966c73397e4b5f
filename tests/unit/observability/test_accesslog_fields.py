"""An access record's event fields: every field of the record, by name, and its type."""

from __future__ import annotations

import attrs
from twisted.trial import unittest

from clbproxy.observability.accesslog import RequestRecord, SessionRecord


class FieldsTests(unittest.TestCase):
    def test_an_http_record_gives_every_field_and_its_type(self) -> None:
        record = RequestRecord(
            listener="web",
            status=502,
            response_ms=1.5,
            request_id="abc",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            parent_id="00f067aa0ba902b7",
        )
        self.assertEqual(record.fields(), {"type": "http", **attrs.asdict(record)})

    def test_a_websocket_record_gives_every_field_and_its_type(self) -> None:
        record = SessionRecord(
            listener="ws", status=101, duration_s=0.25, closed_by="client", request_id="abc"
        )
        self.assertEqual(record.fields(), {"type": "websocket", **attrs.asdict(record)})

    def test_a_field_set_after_the_record_was_made_is_given(self) -> None:
        record = SessionRecord()
        record.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        self.assertEqual(record.fields()["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736")
