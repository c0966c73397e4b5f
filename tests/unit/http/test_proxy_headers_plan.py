"""copy_response_headers remembers what it does with a head's field names, never its values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.http import proxy_headers
from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.parsing import ResponseHead
from clbproxy.http.proxy_headers import copy_response_headers


class _Request:
    """What copy_response_headers uses of a request."""

    def __init__(self, method: bytes = b"GET") -> None:
        self.method = method
        self.clientproto = b"HTTP/1.1"
        self.responseHeaders = FieldHeaders()
        self.defaultContentType = b"text/html"

    def setResponseCode(self, code: int, message: bytes) -> None:
        self.code = code


def copied(*fields: tuple[bytes, bytes], method: bytes = b"GET", length=None) -> list:
    request = _Request(method)
    head = ResponseHead(200, b"OK", b"1.1", list(fields), length, False, False, True, False)
    copy_response_headers(head, request)
    return list(request.responseHeaders.getAllRawHeaders())


class PlanTests(unittest.TestCase):
    def test_a_head_of_the_same_names_is_copied_with_its_own_values(self) -> None:
        for value in (b"1", b"2"):
            self.assertEqual(
                copied((b"X-Plan-A", value), (b"Date", b"d" + value)),
                [(b"X-Plan-A", [value]), (b"Date", [b"d" + value])],
            )

    def test_a_name_repeated_in_any_spelling_keeps_its_values_in_order(self) -> None:
        for _ in range(2):
            self.assertEqual(
                copied((b"Set-Cookie", b"a"), (b"X-Plan-B", b"1"), (b"set-cookie", b"b")),
                [(b"Set-Cookie", [b"a", b"b"]), (b"X-Plan-B", [b"1"])],
            )

    def test_the_connection_field_is_read_on_each_response(self) -> None:
        names = (b"X-Plan-C", b"Connection")
        self.assertEqual(copied(*zip(names, (b"1", b"X-Plan-C"))), [])
        self.assertEqual(copied(*zip(names, (b"1", b"keep-alive"))), [(b"X-Plan-C", [b"1"])])

    def test_a_head_response_keeps_the_last_content_length_of_each_response(self) -> None:
        for last in (b"9", b"4"):
            self.assertEqual(
                copied((b"Content-Length", b"7"), (b"content-length", last), method=b"HEAD"),
                [(b"Content-Length", [last])],
            )

    def test_the_trailer_field_is_read_on_each_response(self) -> None:
        for announced in (b"X-Sum", b"X-Other, Content-Length"):
            self.assertEqual(
                copied((b"Trailer", announced), (b"X-Plan-D", b"1")),
                [(b"X-Plan-D", [b"1"]), (b"Trailer", [announced.split(b",")[0]])],
            )

    def test_the_heads_remembered_are_bounded(self) -> None:
        for index in range(proxy_headers._MAX_PLANS + 10):
            self.assertEqual(
                copied((b"X-Plan-%d" % (index,), b"v")), [(b"X-Plan-%d" % (index,), [b"v"])]
            )
            self.assertLessEqual(len(proxy_headers._PLANS), proxy_headers._MAX_PLANS)

    def test_a_head_of_long_names_is_copied_but_not_remembered(self) -> None:
        name = b"X-N" + b"n" * proxy_headers._MAX_PLAN_CHARS
        self.assertEqual(copied((name.lower(), b"v")), [(name, [b"v"])])
        self.assertFalse([key for key in proxy_headers._PLANS if name.lower() in key])


_NAMES = st.sampled_from(
    [b"Content-Type", b"content-length", b"Connection", b"Keep-Alive", b"Trailer", b"Proxy-X"]
    + [b"X-A", b"x-a", b"Set-Cookie", b"Server", b"Date", b"TE", b"Upgrade", b"Transfer-Encoding"]
)
_VALUES = st.sampled_from([b"1", b"keep-alive", b"X-A", b"close, date", b"X-Sum", b"9"])


class PlanAgreesTests(unittest.TestCase):
    @given(
        st.lists(st.tuples(_NAMES, _VALUES), max_size=8),
        st.sampled_from([b"GET", b"HEAD"]),
        st.sampled_from([None, 2]),
    )
    @settings(max_examples=300, deadline=None)
    def test_a_plan_copies_what_the_field_by_field_copy_does(self, fields, method, length) -> None:
        planned = copied(*fields, method=method, length=length)
        plans, plan = proxy_headers._PLANS, proxy_headers._copy_plan
        proxy_headers._PLANS, proxy_headers._copy_plan = {}, lambda never, fields: (None,) * 5
        try:
            by_field = copied(*fields, method=method, length=length)
        finally:
            proxy_headers._PLANS, proxy_headers._copy_plan = plans, plan
        self.assertEqual(by_field, planned)
