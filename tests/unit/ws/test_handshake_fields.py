"""A backend's response head is read into fields by lower-case name in the same walk."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.ws.handshake import parse_response_head
from clbproxy.ws.upgrade import header_fields

HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection:  Upgrade \t\r\n"
    b"connection: keep-alive\r\n"
    b"Sec-WebSocket-Accept: abc=\r\n"
    b"X-Empty:\r\n"
    b"\r\n"
)


class ResponseFieldsTests(unittest.TestCase):
    def test_the_fields_are_what_header_fields_reads_from_the_headers(self):
        head = parse_response_head(HEAD)
        self.assertEqual(head.fields, header_fields(head.headers))

    def test_repeated_names_in_any_case_keep_their_values_in_order(self):
        head = parse_response_head(HEAD)
        self.assertEqual(head.fields["connection"], ["Upgrade", "keep-alive"])
        self.assertEqual(head.fields["x-empty"], [""])

    def test_the_fields_do_not_change_what_a_head_equals(self):
        self.assertEqual(parse_response_head(HEAD), parse_response_head(HEAD))
        self.assertEqual(parse_response_head(HEAD).headers[1], ("Connection", "Upgrade"))
