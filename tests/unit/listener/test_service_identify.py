"""identify: a request's ID and trace context, alike through its grouped fields or its methods."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web.http_headers import Headers

from clbproxy.config import ListenerConfig
from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.tracecontext import NO_TRACE
from clbproxy.listener.service import identify
from clbproxy.routing.settings import ListenerSettings

PARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Request:
    def __init__(self, headers) -> None:
        self.requestHeaders = headers
        self.responseHeaders = type(headers)()
        self.request_id = None
        self.trace = None

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", "10.0.0.7", 50000)


def identified(pairs, grouped: bool, **listener) -> _Request:
    settings = ListenerSettings.from_config(
        ListenerConfig(name="web", bind="tcp:0", rules=(), **listener), {}
    )
    if grouped:
        request = _Request(FieldHeaders.from_pairs(pairs))
        identify(request, settings, request.requestHeaders.grouped())
    else:
        headers = Headers()
        for name, value in pairs:
            headers.addRawHeader(name, value)
        request = _Request(headers)
        identify(request, settings)
    return request


class IdentifyTests(unittest.TestCase):
    def test_no_traceparent_on_a_listener_that_makes_none_is_no_trace(self) -> None:
        for grouped in (True, False):
            self.assertIs(identified([], grouped).trace, NO_TRACE)

    def test_no_traceparent_on_a_listener_that_makes_them_gets_a_new_one(self) -> None:
        for grouped in (True, False):
            trace = identified([], grouped, trace=True).trace
            self.assertIsNotNone(trace.trace_id)
            self.assertIsNotNone(trace.replaced)

    def test_a_valid_traceparent_is_read_either_way(self) -> None:
        for grouped in (True, False):
            trace = identified([(b"traceparent", PARENT)], grouped).trace
            self.assertEqual(
                (trace.trace_id, trace.parent_id),
                ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
            )

    def test_the_id_is_set_on_the_response_either_way(self) -> None:
        for grouped in (True, False):
            request = identified([], grouped)
            self.assertEqual(
                request.responseHeaders.getRawHeaders(b"x-request-id"),
                [request.request_id.encode()],
            )
