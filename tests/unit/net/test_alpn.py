"""Which protocol serves a TLS connection: ALPN's choice, made once the handshake is done."""

from __future__ import annotations

import attrs
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.net.alpn import ALPNChoice, ChoosingProtocol


@attrs.frozen
class Listener:
    http2: bool = True
    header_timeout: float = 10.0


class Channel(Protocol):
    """Stands for the listener's HTTP/1.1 channel or the HTTP/2 connection."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


class Site:
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def buildProtocol(self, addr) -> Channel:
        return Channel("http/1.1")


class TLS(StringTransport):
    """The TLS layer as the chosen protocol sees it: its ALPN result and wrapped protocol."""

    negotiatedProtocol = None
    wrappedProtocol = None


def choice(listener: Listener = Listener()):
    clock = Clock()
    return ALPNChoice(Site(listener), lambda: Channel("h2"), clock), clock


def handshake(protocol, tls: TLS, chosen) -> None:
    tls.wrappedProtocol = protocol
    protocol.makeConnection(tls)
    tls.negotiatedProtocol = chosen
    protocol.handshakeCompleted()


class ALPNChoiceTests(unittest.TestCase):
    def test_h2_gets_the_http2_connection(self) -> None:
        factory, _ = choice()
        tls = TLS()
        handshake(factory.buildProtocol(None), tls, b"h2")
        self.assertEqual((tls.wrappedProtocol.kind, tls.wrappedProtocol.transport), ("h2", tls))

    def test_http11_or_no_alpn_gets_the_http11_channel(self) -> None:
        factory, _ = choice()
        kinds = []
        for chosen in (b"http/1.1", None):
            tls = TLS()
            handshake(factory.buildProtocol(None), tls, chosen)
            kinds.append(tls.wrappedProtocol.kind)
        self.assertEqual(kinds, ["http/1.1", "http/1.1"])

    def test_without_http2_the_channel_is_built_at_once(self) -> None:
        factory, _ = choice(Listener(http2=False))
        self.assertEqual(factory.buildProtocol(None).kind, "http/1.1")

    def test_a_handshake_that_does_not_finish_in_header_timeout_is_closed(self) -> None:
        factory, clock = choice()
        protocol = factory.buildProtocol(None)
        self.assertIsInstance(protocol, ChoosingProtocol)
        tls = TLS()
        protocol.makeConnection(tls)
        clock.advance(10)
        self.assertTrue(tls.disconnecting)

    def test_a_finished_handshake_stops_the_timer(self) -> None:
        factory, clock = choice()
        tls = TLS()
        handshake(factory.buildProtocol(None), tls, b"h2")
        clock.advance(10)
        self.assertEqual((tls.disconnecting, clock.getDelayedCalls()), (False, []))
