"""``websocket_over_http2``: off by default, only with ``http2``, only end to end."""

from __future__ import annotations

from twisted.trial import unittest

from tests.unit.config.loading import LoaderMixin, document

HTTP2 = {"protocol": '"https"', "tls": "{ self_signed = true }", "http2": "true"}


class WebSocketOverHTTP2KeyTests(LoaderMixin, unittest.TestCase):
    def test_it_is_off_by_default(self) -> None:
        listener = self.load(document(listener=HTTP2)).listeners[0]
        self.assertFalse(listener.websocket_over_http2)

    def test_an_http2_listener_takes_it(self) -> None:
        listener = self.load(
            document(listener={**HTTP2, "websocket_over_http2": "true"})
        ).listeners[0]
        self.assertTrue(listener.websocket_over_http2)

    def test_per_hop_deflate_refuses_it(self) -> None:
        found = self.problem_table(
            {
                "per hop": document(
                    listener={
                        **HTTP2,
                        "websocket_over_http2": "true",
                        "websocket_deflate": '"per_hop"',
                    }
                )
            }
        )
        self.assertEqual(
            found,
            {
                "per hop": [
                    "tap.conf: listener[0].websocket_over_http2: needs websocket_deflate = "
                    '"end_to_end": per_hop sessions are not carried over HTTP/2'
                ]
            },
        )
