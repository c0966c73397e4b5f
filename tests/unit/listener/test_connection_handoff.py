"""The listener connection's hand-off of an upgrade (:meth:`ListenerConnection.hand_off`)."""

from __future__ import annotations

import gc
import weakref

from twisted.trial import unittest

from tests.unit.listener.test_connection import _ConnectionTests

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


class _HandOffTests:
    backend = ""
    setUp = _ConnectionTests.setUp
    connect = _ConnectionTests.connect

    def test_a_handed_off_connection_and_its_request_are_freed_without_the_collector(self):
        self.connect()
        self.connection.dataReceived(UPGRADE)
        (request,) = self.root.requests
        self.root.requests.clear()
        self.connection.hand_off()
        gone = weakref.ref(request)
        connection = weakref.ref(self.connection)
        del request, self.connection
        enabled = gc.isenabled()
        gc.disable()
        try:
            self.assertIsNone(gone())
            self.assertIsNone(connection())
        finally:
            if enabled:
                gc.enable()


class HttptoolsHandOffTests(_HandOffTests, unittest.TestCase):
    backend = "httptools"


class H11HandOffTests(_HandOffTests, unittest.TestCase):
    backend = "h11"
