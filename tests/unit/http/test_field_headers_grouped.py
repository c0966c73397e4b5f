"""``FieldHeaders.set_grouped``: what one ``setRawHeaders`` per name would have left."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders

PAIRS = [
    (b"content-type", b"text/plain"),
    (b"Set-Cookie", b"a=1"),
    (b"date", b"Sat, 05 Dec 2026 13:00:00 GMT"),
    (b"set-cookie", b"b=2"),
    (b"X-Odd", b"one\r\ntwo"),
]


def one_name_at_a_time(headers: FieldHeaders, pairs) -> None:
    grouped: dict = {}
    for name, value in pairs:
        grouped.setdefault(name.lower(), [name]).append(value)
    for name, *values in grouped.values():
        headers.setRawHeaders(name, values)


def held() -> FieldHeaders:
    headers = FieldHeaders()
    headers.setRawHeaders(b"Server", [b"clbproxy"])
    headers.setRawHeaders(b"Date", [b"Sat, 05 Dec 2026 12:59:59 GMT"])
    headers.setRawHeaders(b"X-Request-Id", [b"r1"])
    return headers


class SetGroupedTests(unittest.TestCase):
    def test_names_values_and_order_are_those_of_a_set_per_name(self):
        grouped, single = held(), held()
        grouped.set_grouped(PAIRS)
        one_name_at_a_time(single, PAIRS)
        self.assertEqual(list(grouped.getAllRawHeaders()), list(single.getAllRawHeaders()))

    def test_a_name_already_held_keeps_its_place_with_the_new_values(self):
        headers = held()
        headers.set_grouped([(b"date", b"later")])
        self.assertEqual(
            list(headers.getAllRawHeaders()),
            [(b"Server", [b"clbproxy"]), (b"Date", [b"later"]), (b"X-Request-Id", [b"r1"])],
        )
