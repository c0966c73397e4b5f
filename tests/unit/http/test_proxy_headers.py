"""The backend request head as bytes: field names' spelling and the head's order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.http.proxy_headers import backend_host, canonical_name, request_head


class CanonicalNameTests(unittest.TestCase):
    def test_each_word_is_capitalized(self):
        self.assertEqual(canonical_name(b"x-real-ip"), b"X-Real-Ip")

    def test_conventional_exceptions_keep_their_spelling(self):
        self.assertEqual(
            [canonical_name(name) for name in (b"te", b"www-authenticate", b"etag", b"dnt")],
            [b"TE", b"WWW-Authenticate", b"ETag", b"DNT"],
        )


class RequestHeadTests(unittest.TestCase):
    def test_request_line_connection_framing_fields_then_host(self):
        head = request_head(
            b"POST",
            b"/a?b",
            {b"X-A": [b"1", b"2"]},
            b"Content-Length: 3",
            persistent=False,
            host=b"10.0.0.1:8001",
        )
        self.assertEqual(
            head,
            b"POST /a?b HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n"
            b"X-A: 1\r\nX-A: 2\r\nHost: 10.0.0.1:8001\r\n\r\n",
        )

    def test_a_put_without_a_body_says_content_length_0_and_a_get_says_nothing(self):
        put = request_head(b"PUT", b"/", {b"Host": [b"a"]}, None, persistent=True, host=None)
        get = request_head(b"GET", b"/", {b"Host": [b"a"]}, None, persistent=True, host=None)
        self.assertEqual(put, b"PUT / HTTP/1.1\r\nContent-Length: 0\r\nHost: a\r\n\r\n")
        self.assertEqual(get, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")

    def test_fields_of_one_value_each_are_lines_in_order(self):
        head = request_head(
            b"GET", b"/", {b"Host": [b"a"], b"X-B": [b"2"]}, None, persistent=True, host=None
        )
        self.assertEqual(head, b"GET / HTTP/1.1\r\nHost: a\r\nX-B: 2\r\n\r\n")

    def test_a_field_of_no_values_makes_no_line_beside_one_of_two(self):
        fields = {b"X-A": [], b"X-B": [b"1", b"2"], b"X-C": [b"3"]}
        head = request_head(b"GET", b"/", fields, None, persistent=True, host=b"h")
        self.assertEqual(head, b"GET / HTTP/1.1\r\nX-B: 1\r\nX-B: 2\r\nX-C: 3\r\nHost: h\r\n\r\n")

    def test_no_fields_make_no_line(self):
        head = request_head(b"GET", b"/", {}, None, persistent=True, host=b"h")
        self.assertEqual(head, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")

    def test_the_backends_host_leaves_out_the_schemes_default_port(self):
        self.assertEqual(
            [
                backend_host("10.0.0.1", 80, False),
                backend_host("10.0.0.1", 443, True),
                backend_host("::1", 8443, True),
            ],
            [b"10.0.0.1", b"10.0.0.1", b"[::1]:8443"],
        )


class RequestHeadFieldsTests(unittest.TestCase):
    @given(
        st.dictionaries(
            st.sampled_from([b"Host", b"X-A", b"X-B", b"Via", b"Cookie"]),
            st.lists(st.sampled_from([b"1", b"two", b""]), max_size=3),
        )
    )
    @settings(max_examples=300, deadline=None)
    def test_each_value_is_a_line_in_order_whatever_the_counts(self, fields):
        lines = b"".join(
            name + b": " + value + b"\r\n" for name in fields for value in fields[name]
        )
        self.assertEqual(
            request_head(b"GET", b"/", fields, None, persistent=True, host=None),
            b"GET / HTTP/1.1\r\n" + lines + b"\r\n",
        )
