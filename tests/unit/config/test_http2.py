"""The HTTP/2 keys of a ``[[listener]]``: off by default, HTTPS only, bounded limits."""

from __future__ import annotations

from twisted.trial import unittest

from tests.unit.config.loading import LoaderMixin, document

HTTPS = {"protocol": '"https"', "tls": "{ self_signed = true }"}


class HTTP2KeyTests(LoaderMixin, unittest.TestCase):
    def test_http2_is_off_with_nginx_like_limits_by_default(self) -> None:
        listener = self.load(document(listener=HTTPS)).listeners[0]
        self.assertEqual(
            (
                listener.http2,
                listener.http2_max_concurrent_streams,
                listener.http2_connection_window,
                listener.http2_max_resets,
                listener.http2_max_control_frames,
            ),
            (False, 128, 1024 * 1024, 200, 1000),
        )

    def test_https_listener_takes_http2_and_its_limits(self) -> None:
        listener = self.load(
            document(
                listener={
                    **HTTPS,
                    "http2": "true",
                    "http2_max_concurrent_streams": "16",
                    "http2_connection_window": '"256KiB"',
                    "http2_max_resets": "50",
                    "http2_max_control_frames": "100",
                }
            )
        ).listeners[0]
        self.assertEqual(
            (
                listener.http2,
                listener.http2_max_concurrent_streams,
                listener.http2_connection_window,
                listener.http2_max_resets,
                listener.http2_max_control_frames,
            ),
            (True, 16, 256 * 1024, 50, 100),
        )

    def test_http2_key_problems(self) -> None:
        cases = {
            "http2 on a plain listener": (
                document(listener={"http2": "true"}),
                'listener[0].http2: is for HTTPS listeners (protocol = "https"): cleartext '
                "HTTP/2 (h2c) is not offered",
            ),
            "no streams": (
                document(listener={**HTTPS, "http2_max_concurrent_streams": "0"}),
                "listener[0].http2_max_concurrent_streams: 0 out of range 1-10000",
            ),
            "window below one stream's": (
                document(listener={**HTTPS, "http2_connection_window": '"16KiB"'}),
                "listener[0].http2_connection_window: must be at least 64KiB (65536 bytes), got "
                "'16KiB'",
            ),
            "window over 31 bits": (
                document(listener={**HTTPS, "http2_connection_window": '"4GiB"'}),
                "listener[0].http2_connection_window: must be at most 2147483647 bytes "
                "(HTTP/2 windows are 31-bit)",
            ),
            "websocket over http2 without http2": (
                document(listener={**HTTPS, "websocket_over_http2": "true"}),
                "listener[0].websocket_over_http2: needs http2 = true (WebSocket over HTTP/2 "
                "is a stream of one)",
            ),
        }
        found = self.problem_table({name: text for name, (text, _) in cases.items()})
        expected = {name: [f"tap.conf: {message}"] for name, (_, message) in cases.items()}
        self.assertEqual(found, expected)
