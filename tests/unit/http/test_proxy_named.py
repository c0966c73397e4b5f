"""The client headers the proxy replaces with its own: the request-ID header and a new trace."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.proxy_headers import proxy_named
from clbproxy.http.tracecontext import NO_TRACE, TraceContext

MADE = TraceContext(
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "00f067aa0ba902b7",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
)


class ProxyNamedTests(unittest.TestCase):
    def test_the_id_header_is_named_in_lower_case(self) -> None:
        self.assertEqual(proxy_named("X-Request-Id"), frozenset({"x-request-id"}))

    def test_a_trace_the_proxy_made_names_traceparent_and_tracestate(self) -> None:
        self.assertEqual(
            proxy_named("X-Request-Id", MADE),
            frozenset({"x-request-id", "traceparent", "tracestate"}),
        )

    def test_a_client_trace_kept_names_nothing_more(self) -> None:
        kept = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        self.assertEqual(proxy_named("Req-Id", kept), frozenset({"req-id"}))

    def test_ids_off_and_no_trace_made_name_nothing(self) -> None:
        self.assertEqual(proxy_named(None, NO_TRACE), frozenset())
        self.assertEqual(proxy_named(None, MADE), frozenset({"traceparent", "tracestate"}))

    def test_asking_again_gives_the_same_answer(self) -> None:
        self.assertEqual(proxy_named("X-Trace-Id", MADE), proxy_named("X-Trace-Id", MADE))
