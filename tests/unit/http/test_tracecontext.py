"""W3C Trace Context: which traceparent values are valid, and what the proxy sends on."""

from __future__ import annotations

import re

from twisted.trial import unittest

from clbproxy.http.tracecontext import (
    NO_TRACE,
    TraceParent,
    parse_traceparent,
    trace_context,
)

TRACE = "12345678901234567890123456789012"
PARENT = "1234567890123456"
VALID = f"00-{TRACE}-{PARENT}-01"
MADE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-00\Z")


class ParseTraceparentTests(unittest.TestCase):
    def test_a_version_00_value_gives_its_fields(self):
        self.assertEqual(parse_traceparent(VALID), TraceParent("00", TRACE, PARENT, "01"))

    def test_bytes_are_read_as_text(self):
        self.assertEqual(parse_traceparent(VALID.encode()).trace_id, TRACE)

    def test_valid_values(self):
        cases = {
            "not sampled": f"00-{TRACE}-{PARENT}-00",
            "unknown flags": f"00-{TRACE}-{PARENT}-ff",
            "leading space": f" {VALID}",
            "leading tab": f"\t{VALID}",
            "trailing space": f"{VALID} ",
            "trailing tab": f"{VALID}\t",
            "spaces and tabs around": f"\t {VALID} \t",
            "future version": f"cc-{TRACE}-{PARENT}-01",
            "future version with more fields": f"cc-{TRACE}-{PARENT}-01-what-the-future-holds",
            "version fe": f"fe-{TRACE}-{PARENT}-01",
        }
        for name, value in cases.items():
            parsed = parse_traceparent(value)
            self.assertIsNotNone(parsed, name)
            self.assertEqual((parsed.trace_id, parsed.parent_id), (TRACE, PARENT), name)

    def test_invalid_values(self):
        cases = {
            "empty": "",
            "version ff": f"ff-{TRACE}-{PARENT}-01",
            "version 00 with trailing characters": f"{VALID}.",
            "version 00 with more fields": f"{VALID}-what-the-future-holds",
            "future version followed by not a dash": f"cc-{TRACE}-{PARENT}-01.what",
            "version with illegal characters": f".0-{TRACE}-{PARENT}-01",
            "version too long": f"000-{TRACE}-{PARENT}-01",
            "version too short": f"0-{TRACE}-{PARENT}-01",
            "upper-case version": f"0A-{TRACE}-{PARENT}-01",
            "all-zero trace id": f"00-{'0' * 32}-{PARENT}-01",
            "trace id with illegal characters": f"00-.{TRACE[1:]}-{PARENT}-01",
            "upper-case trace id": f"00-{'A' * 32}-{PARENT}-01",
            "trace id too long": f"00-{TRACE}3-{PARENT}-01",
            "trace id too short": f"00-{TRACE[1:]}-{PARENT}-01",
            "all-zero parent id": f"00-{TRACE}-{'0' * 16}-01",
            "parent id with illegal characters": f"00-{TRACE}-{PARENT[:-1]}.-01",
            "upper-case parent id": f"00-{TRACE}-{'B' * 16}-01",
            "parent id too long": f"00-{TRACE}-{PARENT}7-01",
            "parent id too short": f"00-{TRACE}-{PARENT[1:]}-01",
            "flags with illegal characters": f"00-{TRACE}-{PARENT}-.0",
            "upper-case flags": f"00-{TRACE}-{PARENT}-0F",
            "flags too long": f"00-{TRACE}-{PARENT}-001",
            "flags too short": f"00-{TRACE}-{PARENT}-1",
            "future version too short": f"cc-{TRACE}-{PARENT}-1",
            "space inside": f"00-{TRACE}-{PARENT} -01",
            "newline at the end": f"{VALID}\n",
        }
        for name, value in cases.items():
            self.assertIsNone(parse_traceparent(value), name)


class TraceContextTests(unittest.TestCase):
    def test_a_valid_traceparent_is_logged_and_passed_unchanged(self):
        for generate in (False, True):
            context = trace_context([VALID.encode()], generate)
            self.assertEqual((context.trace_id, context.parent_id), (TRACE, PARENT))
            self.assertIsNone(context.replaced)

    def test_without_trace_nothing_is_made(self):
        self.assertIs(trace_context(None, False), NO_TRACE)
        self.assertIs(trace_context([b"00-bad"], False), NO_TRACE)

    def test_with_trace_a_missing_traceparent_is_replaced_by_a_new_unsampled_one(self):
        context = trace_context(None, True)
        match = MADE.match(context.replaced)
        self.assertIsNotNone(match)
        self.assertEqual(match.groups(), (context.trace_id, context.parent_id))

    def test_with_trace_a_malformed_traceparent_is_replaced(self):
        context = trace_context([f"00-{'0' * 32}-{PARENT}-01".encode()], True)
        self.assertRegex(context.replaced, MADE)
        self.assertNotEqual(context.trace_id, "0" * 32)

    def test_two_traceparent_headers_are_invalid(self):
        other = f"00-{TRACE[:-1]}3-{PARENT}-01".encode()
        self.assertIs(trace_context([VALID.encode(), other], False), NO_TRACE)
        self.assertNotIn(trace_context([VALID.encode(), other], True).trace_id, (TRACE, None))

    def test_new_traces_differ(self):
        self.assertNotEqual(trace_context(None, True).trace_id, trace_context(None, True).trace_id)
