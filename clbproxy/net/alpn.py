"""Which protocol serves a TLS connection: the one the client chose by ALPN.

An HTTPS listener with ``http2 = true`` offers ``h2`` and ``http/1.1``
(:func:`clbproxy.net.tls.listener_protocols`).  The choice is known only once
the handshake is done, so each connection starts with a :class:`ChoosingProtocol`
under the TLS layer; when the handshake completes it puts the chosen protocol in
its place (the listener's HTTP/1.1 channel, or the HTTP/2 connection) and
leaves.  Until then it bounds the handshake by the listener's
``header_timeout``, as the HTTP/1.1 channel does from the connection on.

A listener without ``http2`` gets its HTTP/1.1 channel straight away, exactly
as before: :class:`ALPNChoice` only steps in when HTTP/2 is on.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

#: The ALPN name of HTTP/2 over TLS (RFC 9113 3.2).
H2 = b"h2"


@implementer(IHandshakeListener)
class ChoosingProtocol(Protocol):
    """Holds a TLS connection's place until its handshake names the protocol."""

    def __init__(self, choice: ALPNChoice, addr) -> None:
        self._choice = choice
        self._addr = addr
        self._timer = None

    def connectionMade(self) -> None:
        timeout = self._choice.listener.header_timeout
        if timeout:
            self._timer = self._choice.reactor.callLater(timeout, self._timed_out)

    def handshakeCompleted(self) -> None:
        self._cancel()
        tls = self.transport
        chosen = getattr(tls, "negotiatedProtocol", None)
        if chosen == H2:
            protocol = self._choice.http2_protocol()
        else:
            protocol = self._choice.site.buildProtocol(self._addr)
        tls.wrappedProtocol = protocol
        protocol.makeConnection(tls)

    def dataReceived(self, data: bytes) -> None:
        """Not reached: TLS delivers data only after the handshake, to the chosen protocol."""

    def connectionLost(self, reason=None) -> None:
        self._cancel()

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.loseConnection()

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class ALPNChoice(Factory):
    """Wraps a listener's site: HTTP/1.1 or, when ALPN says ``h2``, ``http2_protocol()``.

    ``site.listener`` is read per connection, so a reload that turns ``http2``
    on or off applies to the next connection.
    """

    def __init__(self, site, http2_protocol: Callable[[], Protocol], reactor) -> None:
        self.site = site
        self.http2_protocol = http2_protocol
        self.reactor = reactor

    @property
    def listener(self):
        """The listener's configuration (the TLS layer's log reads its ``header_timeout``)."""
        return self.site.listener

    def doStart(self) -> None:
        self.site.doStart()

    def doStop(self) -> None:
        self.site.doStop()

    def buildProtocol(self, addr) -> Optional[Protocol]:
        if not self.site.listener.http2:
            return self.site.buildProtocol(addr)
        return ChoosingProtocol(self, addr)
