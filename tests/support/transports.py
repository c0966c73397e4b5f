"""An in-memory TCP connection for tests that speak to the proxy in bytes."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure


class Connection(StringTransport):
    """One end of a TCP connection: collects what is written, delivers to ``protocol``.

    Autobahn unregisters producers it may never have registered, so that is allowed.
    """

    def __init__(self, clock, peer: IPv4Address, host: IPv4Address) -> None:
        super().__init__(hostAddress=host, peerAddress=peer)
        self.protocol = None
        self.lost = False
        self._clock = clock

    def loseConnection(self) -> None:
        """Closed on the reactor's next turn, as a socket transport is once written out."""
        if not self.disconnecting:
            self._clock.callLater(0, self._lose, ConnectionDone())
        super().loseConnection()

    def abortConnection(self) -> None:
        if not self.disconnecting:
            self._clock.callLater(0, self._lose, ConnectionAborted())
        super().abortConnection()

    def peer_closes(self) -> None:
        """The peer closed the TCP connection."""
        self._lose(ConnectionDone())

    def _lose(self, reason: Exception) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(reason))

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def pauseProducing(self) -> None:
        self.producerState = "paused"

    def resumeProducing(self) -> None:
        # A socket transport may be read again after loseConnection (until it is lost).
        self.producerState = "producing"

    def take(self) -> bytes:
        """What was written since the last take."""
        data = self.value()
        self.clear()
        return data

    def receive(self, data: bytes) -> None:
        """Deliver ``data`` to whatever protocol reads this connection now."""
        self.protocol.dataReceived(data)
