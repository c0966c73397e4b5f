"""Tests for :meth:`~clbproxy.http.field_headers.FieldHeaders.get_fields`: one call, many."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders, field_key


class GetFieldsTests(unittest.TestCase):
    def test_each_key_gives_what_get_field_gives_in_order(self) -> None:
        headers = FieldHeaders.from_pairs([(b"host", b"a"), (b"Via", b"1"), (b"VIA", b"2")])
        keys = tuple(field_key(name) for name in (b"via", b"Host", b"referer"))
        self.assertEqual(headers.get_fields(keys), [[b"1", b"2"], [b"a"], None])

    def test_an_emptied_field_is_none(self) -> None:
        headers = FieldHeaders.from_pairs([(b"Referer", b"r")])
        headers.setRawHeaders(b"Referer", [])
        self.assertEqual(headers.get_fields((field_key(b"referer"),)), [None])
