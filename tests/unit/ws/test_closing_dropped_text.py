"""The end of a session's log line that names what was dropped after a close."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.ws.closing import dropped_text


class DroppedTextTests(unittest.TestCase):
    def test_nothing_dropped_adds_nothing(self):
        self.assertEqual(dropped_text(0, 0, 0, 0), "")

    def test_each_direction_that_dropped_something_is_named(self):
        self.assertEqual(
            dropped_text(1, 10, 0, 0), "; dropped after close: client->backend 1 message (10 bytes)"
        )
        self.assertEqual(
            dropped_text(0, 0, 2, 7), "; dropped after close: backend->client 2 messages (7 bytes)"
        )
        self.assertEqual(
            dropped_text(0, 5, 3, 9),
            "; dropped after close: client->backend 0 messages (5 bytes),"
            " backend->client 3 messages (9 bytes)",
        )
