"""Tests for :class:`clbproxy.http.field_headers.FieldHeaders`: the same as ``Headers``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest
from twisted.web.http_headers import Headers, InvalidHeaderName

from clbproxy.http.field_headers import FieldHeaders

NAMES = st.sampled_from(
    [b"host", b"HOST", b"Content-Type", b"x-request-id", b"te", b"etag", b"www-authenticate"]
) | st.binary(min_size=1, max_size=6)
VALUES = st.binary(max_size=8) | st.sampled_from([b"a\r\nb", b"a\nb\rc", b"x\n", b"\r"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), NAMES, VALUES),
        st.tuples(st.just("set"), NAMES, st.lists(VALUES, max_size=3)),
        st.tuples(st.just("set_text"), NAMES, st.lists(st.text(max_size=4), max_size=2)),
        st.tuples(st.just("remove"), NAMES, st.none()),
        st.tuples(st.just("get"), NAMES, st.none()),
        st.tuples(st.just("has"), NAMES, st.none()),
        st.tuples(st.just("get_text"), NAMES, st.none()),
    ),
    max_size=12,
)


def apply(headers: Headers, operation: tuple) -> object:
    kind, name, argument = operation
    try:
        if kind == "add":
            return headers.addRawHeader(name, argument)
        if kind == "set":
            return headers.setRawHeaders(name, argument)
        if kind == "set_text":
            return headers.setRawHeaders(name.decode("latin-1"), argument)
        if kind == "remove":
            return headers.removeHeader(name)
        if kind == "get":
            return headers.getRawHeaders(name, "none")
        if kind == "get_text":
            return headers.getRawHeaders(name.decode("latin-1"))
        return headers.hasHeader(name)
    except InvalidHeaderName:
        return "invalid"
    except UnicodeDecodeError:  # a str name asks for values as UTF-8 text
        return "undecodable"


class SameAsHeadersTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(NAMES, VALUES), max_size=8), OPERATIONS)
    def test_every_operation_answers_and_stores_as_headers_does(self, pairs, operations):
        try:
            expected = Headers()
            for name, value in pairs:
                expected.addRawHeader(name, value)
        except InvalidHeaderName:
            self.assertRaises(InvalidHeaderName, FieldHeaders.from_pairs, pairs)
            return
        ours = FieldHeaders.from_pairs(pairs)
        for operation in operations:
            self.assertEqual(apply(ours, operation), apply(expected, operation), operation)
        self.assertEqual(list(ours.getAllRawHeaders()), list(expected.getAllRawHeaders()))
        self.assertEqual(ours, expected)

    def test_a_copy_is_field_headers_with_the_same_fields(self):
        headers = FieldHeaders.from_pairs([(b"a", b"1"), (b"A", b"2")])
        copied = headers.copy()
        self.assertIsInstance(copied, FieldHeaders)
        self.assertEqual(list(copied.getAllRawHeaders()), [(b"A", [b"1", b"2"])])

    def test_a_name_that_is_not_a_token_is_refused(self):
        self.assertRaises(InvalidHeaderName, FieldHeaders().setRawHeaders, b"a b", [b"1"])
