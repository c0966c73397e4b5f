"""``FieldHeaders.grouped``: the fields as ``getAllRawHeaders`` gives them, as a dict."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders


class GroupedTests(unittest.TestCase):
    def test_grouped_holds_what_get_all_raw_headers_gives_in_order(self):
        headers = FieldHeaders.from_pairs([(b"host", b"h"), (b"X-A", b"1"), (b"x-a", b"2")])
        headers.setRawHeaders(b"te", [b"trailers"])
        self.assertEqual(list(headers.grouped().items()), list(headers.getAllRawHeaders()))

    def test_grouped_is_read_by_canonical_name(self):
        headers = FieldHeaders.from_pairs([(b"x-forwarded-for", b"10.0.0.1")])
        self.assertEqual(headers.grouped().get(b"X-Forwarded-For"), [b"10.0.0.1"])

    def test_from_grouped_holds_what_it_is_given(self):
        headers = FieldHeaders.from_grouped({b"Host": [b"h"], b"Cookie": [b"a", b"b"]})
        self.assertEqual(headers.getRawHeaders(b"cookie"), [b"a", b"b"])
        self.assertEqual(list(headers.getAllRawHeaders())[0], (b"Host", [b"h"]))

    def test_from_grouped_headers_copy_compare_and_change_as_headers_do(self):
        headers = FieldHeaders.from_grouped({b"Host": [b"h"]})
        copy = headers.copy()
        copy.addRawHeader(b"host", b"i")
        headers.setRawHeaders(b"accept", [b"*/*"])
        self.assertEqual(
            [list(headers.getAllRawHeaders()), list(copy.getAllRawHeaders())],
            [[(b"Host", [b"h"]), (b"Accept", [b"*/*"])], [(b"Host", [b"h", b"i"])]],
        )
        self.assertEqual(
            FieldHeaders.from_grouped({b"Host": [b"h"]}), FieldHeaders({b"Host": [b"h"]})
        )
        self.assertIn("Host", repr(headers))
