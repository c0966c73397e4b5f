"""Tests for :func:`clbproxy.observability.accesslog.emit`: the event logs and observers get."""

from __future__ import annotations

import attrs
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.accesslog import RequestRecord, SessionRecord


class EmitTests(unittest.TestCase):
    def emitted(self, record) -> dict:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        accesslog.emit(record)
        (event,) = [e for e in events if accesslog.is_access_event(e)]
        return event

    def test_a_request_event_reads_as_the_access_line(self):
        record = RequestRecord(
            listener="web", client="10.0.0.1", method="GET", path="/a", host="h", status=200
        )
        record.backend, record.request_id = "10.0.0.2:80", "id-1"
        text = formatEvent(self.emitted(record))
        self.assertEqual(text, "access: 10.0.0.1 web GET h/a -> 10.0.0.2:80: 200 request_id=id-1")

    def test_braces_the_client_sent_are_written_as_sent(self):
        record = RequestRecord(client="c", method="GET", path="/{x}}{", host="{h}", status=404)
        text = formatEvent(self.emitted(record))
        self.assertEqual(text, "access: c - GET {h}/{x}}{ -> None: 404")

    def test_a_session_event_keeps_its_duration_format(self):
        record = SessionRecord(listener="ws", client="c", path="/", status=101, duration_s=1.23456)
        record.closed_by = "client"
        text = formatEvent(self.emitted(record))
        self.assertEqual(
            text, "access: c ws WebSocket None/ -> None: 101, 1.235s, closed by client"
        )

    def test_the_event_carries_every_record_field(self):
        record = RequestRecord(listener="web", status=204, response_ms=1.5, trace_id="t")
        event = self.emitted(record)
        self.assertEqual(
            {k: event[k] for k in ("type", *attrs.asdict(record))},
            {"type": "http", **attrs.asdict(record)},
        )

    def test_a_sessions_open_time_goes_to_the_observers_and_into_neither_log_line(self):
        record = SessionRecord(listener="ws", client="c", path="/", status=101, duration_s=2.0)
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        accesslog.emit(record, opened_at=1234.5)
        (event,) = [e for e in events if accesslog.is_access_event(e)]
        self.assertEqual(event["opened_at"], 1234.5)
        self.assertNotIn("1234.5", accesslog.format_plain(event))
        self.assertNotIn("opened_at", accesslog.format_json(event))
