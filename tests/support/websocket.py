"""Autobahn WebSocket clients for tests that leave no timer or log noise behind."""

from __future__ import annotations

from typing import Optional

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer

from clbproxy.ws.hops import cancel_close_timer


class QuietClientProtocol(WebSocketClientProtocol):
    """A client hop that reports its open and its close on its factory's Deferreds.

    Autobahn leaves its closing-handshake timer running after the connection is
    gone; it is cancelled here so trial finds a clean reactor.
    """

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onClose(self, wasClean, code, reason) -> None:
        cancel_close_timer(self)
        self.factory.close_info = (wasClean, code, reason)
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(reason))
        self.factory.closed.callback((wasClean, code, reason))


class QuietClientFactory(WebSocketClientFactory):
    """One client connection: ``opened`` fires with the protocol, ``closed`` with how it ended.

    A client that drops the TCP connection is not failed with a drop (``failByDrop``
    off): a test sees the close code it is about.
    """

    protocol = QuietClientProtocol

    def __init__(
        self, url: str, *, close_timeout: float = 2, options: Optional[dict] = None, **kwargs
    ) -> None:
        super().__init__(url, **kwargs)
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.close_info: Optional[tuple] = None
        self.setProtocolOptions(
            failByDrop=False, closeHandshakeTimeout=close_timeout, **(options or {})
        )
