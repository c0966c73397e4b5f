"""Tests for :class:`~clbproxy.http.field_headers.FieldHeaders`' ``get_field``/``set_field``.

A name read or written on every request (the request-ID header) is spelled
once (:func:`field_key`); reading and writing through that key gives what
``getRawHeaders`` and ``setRawHeaders`` give, in the same place.
"""

from __future__ import annotations

from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.http.field_headers import FieldHeaders, field_key
from clbproxy.http.request_id import OFF, RequestIds


class FieldTests(unittest.TestCase):
    def test_the_key_of_any_spelling_is_the_one_headers_keeps(self) -> None:
        for name in (b"x-request-id", b"X-REQUEST-ID", b"X-Request-Id"):
            headers = Headers()
            headers.addRawHeader(name, b"")
            ((kept, _),) = headers.getAllRawHeaders()
            self.assertEqual(field_key(name), kept)

    def test_get_field_reads_what_get_raw_headers_reads(self) -> None:
        headers = FieldHeaders.from_pairs([(b"x-request-id", b"a"), (b"X-Request-ID", b"b")])
        key = field_key(b"X-Request-Id")
        self.assertEqual(headers.get_field(key), headers.getRawHeaders(b"x-request-id"))
        self.assertEqual(headers.get_field(key), [b"a", b"b"])

    def test_get_field_of_an_absent_or_emptied_name_is_none(self) -> None:
        headers = FieldHeaders()
        key = field_key(b"X-Request-Id")
        self.assertIsNone(headers.get_field(key))
        headers.setRawHeaders(b"X-Request-Id", [])
        self.assertIsNone(headers.get_field(key))

    def test_set_field_replaces_the_values_in_place(self) -> None:
        headers = FieldHeaders.from_pairs(
            [(b"Server", b"s"), (b"X-Request-Id", b"1"), (b"X-Request-Id", b"2"), (b"Date", b"d")]
        )
        headers.set_field(field_key(b"x-request-id"), b"abc")
        self.assertEqual(
            list(headers.getAllRawHeaders()),
            [(b"Server", [b"s"]), (b"X-Request-Id", [b"abc"]), (b"Date", [b"d"])],
        )

    def test_a_policy_keeps_its_header_key(self) -> None:
        self.assertEqual(RequestIds(name="x-correlation-id").field, b"X-Correlation-Id")
        self.assertEqual(OFF.field, b"")
