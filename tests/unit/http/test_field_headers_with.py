"""FieldHeaders.with_fields and add_apart: new headers from old ones, the old left as they were."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.http.field_headers import FieldHeaders


def own() -> FieldHeaders:
    headers = FieldHeaders()
    headers.setRawHeaders(b"Server", [b"clbproxy"])
    headers.setRawHeaders(b"Date", [b"ours"])
    headers.setRawHeaders(b"X-Request-Id", [b"abc"])
    return headers


class WithFieldsTests(unittest.TestCase):
    def test_the_removed_key_goes_and_held_keys_keep_their_place(self) -> None:
        headers = own().with_fields(
            b"Server", {b"Date": [b"theirs"], b"Content-Type": [b"text/plain"]}
        )
        self.assertEqual(
            list(headers.getAllRawHeaders()),
            [
                (b"Date", [b"theirs"]),
                (b"X-Request-Id", [b"abc"]),
                (b"Content-Type", [b"text/plain"]),
            ],
        )

    def test_the_headers_it_was_made_from_are_unchanged(self) -> None:
        old = own()
        new = old.with_fields(b"Server", {b"Date": [b"theirs"]})
        new.add_apart(b"X-Request-Id", b"second")
        new.setRawHeaders(b"Transfer-Encoding", [b"chunked"])
        self.assertEqual(
            list(old.getAllRawHeaders()),
            [(b"Server", [b"clbproxy"]), (b"Date", [b"ours"]), (b"X-Request-Id", [b"abc"])],
        )
        self.assertIsInstance(new, FieldHeaders)


class AddApartTests(unittest.TestCase):
    def test_a_value_is_added_after_those_held_as_addRawHeader_adds_it(self) -> None:
        headers = FieldHeaders()
        headers.setRawHeaders(b"Set-Cookie", [b"a=1"])
        headers.add_apart(b"set-cookie", b"b=2")
        headers.add_apart(b"Via", b"1.1 clbproxy")
        self.assertEqual(
            list(headers.getAllRawHeaders()),
            [(b"Set-Cookie", [b"a=1", b"b=2"]), (b"Via", [b"1.1 clbproxy"])],
        )

    def test_text_names_and_values_are_encoded_as_twisted_encodes_them(self) -> None:
        headers = FieldHeaders()
        headers.add_apart("set-cookie", "clb=x; Path=/")
        expected = Headers()
        expected.addRawHeader("set-cookie", "clb=x; Path=/")
        self.assertEqual(list(headers.getAllRawHeaders()), list(expected.getAllRawHeaders()))

    def test_line_breaks_in_a_value_become_spaces(self) -> None:
        headers = FieldHeaders()
        headers.add_apart(b"X-A", b"one\r\ntwo")
        self.assertEqual(headers.getRawHeaders(b"X-A"), [b"one two"])
