"""The access log's line builders against the formats as first written.

:func:`accesslog.plain_line` and :func:`accesslog.json_line` check values with a
regular expression and work the local time out once per second; the reference
functions below are the formats as they were written before those shortcuts, one
``datetime`` and one character walk per value.  Both must give the same text for
any event, any time and any value a client could have sent.
"""

from __future__ import annotations

import datetime
import io
import json
from typing import Any, Optional

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.observability import accesslog
from clbproxy.observability.accesslog import (
    HTTP_FIELDS,
    WEBSOCKET_FIELDS,
    AccessLog,
    LocalTime,
    RequestRecord,
    SessionRecord,
)


def _reference_time(event: dict) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(event.get("log_time", 0.0)).astimezone()


def _reference_bare(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if not text or any(c.isspace() or c in '"\\' or not c.isprintable() for c in text):
        return json.dumps(text)
    return text


def _reference_quoted(value: Optional[str]) -> str:
    return json.dumps(value) if value else '"-"'


def reference_plain(event: dict) -> str:
    kind = event["type"]
    when = _reference_time(event).strftime("%d/%b/%Y:%H:%M:%S %z")
    if kind == "http":
        request = f"{event['method']} {event['path']} {event['protocol']}"
        names = HTTP_FIELDS
    else:
        protocol = event.get("protocol") or "HTTP/1.1"
        if protocol == "HTTP/1.1":
            request = f"GET {event['path']} WebSocket"
        else:
            request = f"CONNECT {event['path']} WebSocket {protocol}"
        names = WEBSOCKET_FIELDS
    extra = " ".join(f"{name}={_reference_bare(event.get(name))}" for name in names)
    return (
        f"{_reference_bare(event['client'])} - - [{when}] {json.dumps(request)} {event['status']} "
        f"{event['bytes_out']} {_reference_quoted(event.get('referer'))} "
        f"{_reference_quoted(event.get('user_agent'))} {extra}\n"
    )


def reference_json(event: dict) -> str:
    kind = event["type"]
    record = RequestRecord if kind == "http" else SessionRecord
    data: dict[str, Any] = {"time": _reference_time(event).isoformat(timespec="milliseconds")}
    data["type"] = kind
    for name in attrs.fields_dict(record):
        data[name] = event.get(name)
    return json.dumps(data, separators=(",", ":")) + "\n"


def event_of(record, when: float) -> dict:
    return {"log_namespace": accesslog.NAMESPACE, "log_time": when, **record.fields()}


texts = st.text(max_size=12) | st.sampled_from(
    ["", "-", "a b", 'q"', "b\\s", "\x7f", "é", "\u2028"]
)
maybe_text = st.none() | texts
numbers = st.integers(min_value=0, max_value=10**12)
maybe_float = st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False)
#: Times near second boundaries (where the fraction rounds up into the next
#: second) and anywhere in a century.
times = st.floats(min_value=0, max_value=4e9, allow_nan=False) | st.builds(
    lambda second, tail: second + tail,
    st.integers(min_value=0, max_value=4_000_000_000),
    st.sampled_from(
        [
            0.0,
            0.0000004,
            0.0000005,
            0.0000006,
            0.9994999,
            0.9995,
            0.9999994,
            0.9999995,
            0.9999996,
            0.99999999,
        ]
    ),
)

requests = st.builds(
    RequestRecord,
    listener=texts,
    client=texts,
    method=texts,
    path=texts,
    protocol=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2"]),
    host=maybe_text,
    referer=maybe_text,
    user_agent=maybe_text,
    rule=maybe_text,
    group=maybe_text,
    backend=maybe_text,
    status=numbers,
    response_ms=maybe_float,
    duration_ms=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    bytes_in=numbers,
    bytes_out=numbers,
    request_id=maybe_text,
    trace_id=maybe_text,
    parent_id=maybe_text,
)
sessions = st.builds(
    SessionRecord,
    listener=texts,
    client=texts,
    path=texts,
    protocol=st.sampled_from(["HTTP/1.1", "HTTP/2.0", ""]),
    status=numbers,
    handshake_ms=maybe_float,
    host=maybe_text,
    user_agent=maybe_text,
    backend=maybe_text,
    client_close_reason=maybe_text,
    backend_close_reason=maybe_text,
    client_close_code=st.none() | st.integers(min_value=1000, max_value=4999),
    bytes_in=numbers,
    messages_out=numbers,
)


class LinesMatchTheReference(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(record=requests | sessions, when=times)
    def test_plain_lines_are_the_reference_lines(self, record, when):
        event = event_of(record, when)
        self.assertEqual(accesslog.plain_line(event, LocalTime()), reference_plain(event))

    @settings(max_examples=300, deadline=None)
    @given(record=requests | sessions, when=times)
    def test_json_lines_are_the_reference_lines(self, record, when):
        event = event_of(record, when)
        self.assertEqual(accesslog.json_line(event, LocalTime()), reference_json(event))

    @settings(max_examples=100, deadline=None)
    @given(moments=st.lists(times, min_size=2, max_size=8))
    def test_a_clock_kept_between_lines_gives_each_line_its_own_time(self, moments):
        clock = LocalTime()
        record = RequestRecord(listener="web", method="GET", path="/", status=200)
        for when in sorted(moments) + sorted(moments, reverse=True):
            event = event_of(record, when)
            self.assertEqual(accesslog.plain_line(event, clock), reference_plain(event))
            self.assertEqual(accesslog.json_line(event, clock), reference_json(event))


class LocalTimeTests(unittest.TestCase):
    def test_the_same_second_is_worked_out_once(self):
        worked_out = []

        class CountingDatetime(datetime.datetime):
            @classmethod
            def fromtimestamp(cls, when, *args):
                worked_out.append(when)
                return datetime.datetime.fromtimestamp(when, *args)

        class CountingModule:
            datetime = CountingDatetime

        self.patch(accesslog, "datetime", CountingModule)
        clock = LocalTime()
        first = clock.iso(1_700_000_000.25)
        again = clock.iso(1_700_000_000.75)
        plain = clock.plain(1_700_000_000.5)
        self.assertEqual(worked_out, [1_700_000_000.0])
        self.assertEqual((first[-9:-6], again[-9:-6]), ("250", "750"))
        self.assertEqual(first[:19], again[:19])
        clock.plain(1_700_000_001.0)
        self.assertEqual(worked_out, [1_700_000_000.0, 1_700_000_001.0])
        self.assertTrue(plain)

    def test_a_fraction_that_rounds_up_moves_to_the_next_second(self):
        when = 1_700_000_000.9999996
        self.assertEqual(
            LocalTime().plain(when),
            datetime.datetime.fromtimestamp(when).astimezone().strftime("%d/%b/%Y:%H:%M:%S %z"),
        )
        self.assertEqual(
            LocalTime().iso(when),
            datetime.datetime.fromtimestamp(when).astimezone().isoformat(timespec="milliseconds"),
        )
        self.assertTrue(
            LocalTime()
            .iso(when)
            .startswith(
                datetime.datetime.fromtimestamp(1_700_000_001).astimezone().isoformat()[:19]
            )
        )


class AccessLogWritesLines(unittest.TestCase):
    def test_each_line_is_written_and_flushed_at_once(self):
        class Out(io.StringIO):
            flushed: list[str] = []

            def flush(self):
                self.flushed.append(self.getvalue())

        out = Out()
        log = AccessLog("-", "plain", stdout=out)
        log(event_of(RequestRecord(listener="web", path="/one"), 1_700_000_000.0))
        log(event_of(RequestRecord(listener="web", path="/two"), 1_700_000_000.5))
        self.assertEqual(len(out.flushed), 2)
        self.assertIn("/one", out.flushed[0])
        self.assertNotIn("/two", out.flushed[0])
        self.assertEqual(out.getvalue().count("\n"), 2)
