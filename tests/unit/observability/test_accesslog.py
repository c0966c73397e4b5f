"""Tests for :mod:`clbproxy.observability.accesslog`: formats, listener filter, reopening."""

from __future__ import annotations

import io
import json
import os

import attrs
from twisted.logger import LogPublisher
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.accesslog import AccessLog, RequestRecord, SessionRecord


def event(record, when=1_700_000_000.0):
    return {
        "log_namespace": accesslog.NAMESPACE,
        "log_time": when,
        "log_format": "",
        **record.fields(),
    }


class FormatTests(unittest.TestCase):
    def test_values_with_spaces_quotes_or_nothing_are_json_strings(self):
        record = SessionRecord(
            listener="web", client="::1", path="/x", client_close_reason='a "b" c', host=""
        )
        line = accesslog.format_plain(event(record))
        self.assertIn('client_close_reason="a \\"b\\" c"', line)
        self.assertIn('host=""', line)
        self.assertIn("backend=- ", line)
        self.assertTrue(line.startswith("::1 - - ["))
        self.assertTrue(
            line.endswith("closed_by=- close_reason=- request_id=- trace_id=- parent_id=-\n")
        )

    def test_json_has_every_record_field_and_the_type(self):
        line = accesslog.format_json(event(RequestRecord(listener="web", status=204)))
        data = json.loads(line)
        self.assertEqual(set(data), {"time", "type", *attrs.fields_dict(RequestRecord)})
        self.assertEqual((data["type"], data["status"], data["backend"]), ("http", 204, None))

    def test_other_events_are_not_formatted(self):
        other = {"log_namespace": "clbproxy.ws.relay", "log_time": 0.0, "type": "http"}
        self.assertIsNone(accesslog.format_plain(other))
        self.assertIsNone(accesslog.format_json(other))


class AccessLogTests(unittest.TestCase):
    def test_only_its_listeners_are_written(self):
        out = io.StringIO()
        log = AccessLog("-", "json", listeners=["a"], stdout=out)
        log(event(RequestRecord(listener="a")))
        log(event(RequestRecord(listener="b")))
        self.assertEqual(
            [json.loads(line)["listener"] for line in out.getvalue().splitlines()], ["a"]
        )

    def test_emit_reaches_an_observer_of_the_publisher(self):
        out = io.StringIO()
        publisher = LogPublisher()
        publisher.addObserver(AccessLog("-", "plain", stdout=out))
        record = RequestRecord(listener="web", method="GET", path="/a", status=200)
        accesslog.emit(record, accesslog.access_logger(publisher))
        self.assertIn('"GET /a HTTP/1.1" 200 0', out.getvalue())

    def test_reopen_writes_to_a_new_file_after_rotation(self):
        path = self.mktemp()
        log = AccessLog(path, "plain")
        self.addCleanup(log.close)
        log(event(RequestRecord(listener="web", path="/before")))
        os.rename(path, path + ".1")
        log(event(RequestRecord(listener="web", path="/rotated")))
        log.reopen()
        log(event(RequestRecord(listener="web", path="/after")))
        with open(path + ".1") as rotated, open(path) as fresh:
            self.assertEqual(len(rotated.readlines()), 2)
            (line,) = fresh.readlines()
        self.assertIn("/after", line)
