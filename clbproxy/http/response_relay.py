"""The body producers of a forwarded HTTP exchange: the response relay and a buffered body.

:class:`ResponseRelay` streams a backend's response body to the client at the
client's pace (the backend connection is not read while the client cannot
take more) and reports to a :class:`ResponseSink`, the exchange in
:mod:`clbproxy.http.forwarder`, which decides what a finished or broken body
means.  :class:`UnclosableBody` lets a request body buffered by twisted.web be
sent again when an attempt is retried.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer


class ResponseSink(TypingProtocol):
    """What a :class:`ResponseRelay` reports to: the exchange the response belongs to."""

    def relay_started(self, relay: ResponseRelay) -> None:
        """The body starts: register ``relay`` as the client's producer (or stop it)."""

    def relay_data(self, data: bytes) -> None:
        """Body bytes for the client."""

    def relay_finished(self, reason: Failure) -> None:
        """The body ended: completely (``ResponseDone``) or not."""


class UnclosableBody:
    """A read-only view of the request body that ``FileBodyProducer`` cannot close.

    The body belongs to twisted.web's request (it closes it); keeping it open
    lets a retried request send it again.
    """

    def __init__(self, body) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        return self._body.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._body.seek(offset, whence)

    def tell(self) -> int:
        return self._body.tell()

    def close(self) -> None:
        pass


@implementer(IPushProducer)
class ResponseRelay(Protocol):
    """Receives a backend response body and writes it to the client, paced by the client.

    Registered on the client's request as a streaming producer: twisted.web
    pauses it when the client's socket buffer is full.  Its transport is what
    ``IResponse.deliverBody`` documents, an ``IPushProducer`` for the backend
    connection (Twisted's ``TransportProxyProducer``): pausing it stops reading
    from the backend, stopping it closes the backend connection.
    """

    def __init__(self, exchange: ResponseSink) -> None:
        self._exchange = exchange
        self._stopped = False

    def connectionMade(self) -> None:
        self._exchange.relay_started(self)

    def dataReceived(self, data: bytes) -> None:
        self._exchange.relay_data(data)

    def connectionLost(self, reason: Failure) -> None:
        self._exchange.relay_finished(reason)

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.transport.stopProducing()
