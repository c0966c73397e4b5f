"""The listener's TLS negotiates what our contexts say, whatever the wrapped Site offers.

Twisted up to 25.5 copied a wrapped factory's ``acceptableProtocols()`` onto the
context of each new connection: with pyOpenSSL 26.2 or later every handshake
failed, with older pyOpenSSL a Site that offers ``h2`` could have it chosen.
These handshakes run in memory, so they run on every Twisted/pyOpenSSL pair the
suite installs (scripts/test runs them on the oldest allowed pair too).
"""

from __future__ import annotations

import os

import trustme
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from clbproxy.config import ListenerConfig, TLSConfig
from clbproxy.net.tls import ServerTLS, tls_factory
from tests.support.tls import certificate_files


class OfferingSite(Site):
    """A Site that offers ``h2`` first, as any Site does once the ``h2`` package is installed."""

    def acceptableProtocols(self):
        return [b"h2", b"http/1.1"]


class TCPStringTransport(StringTransport):
    """A StringTransport with the TCP option calls an HTTP channel makes."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def handshake(factory, offered: list[bytes], server_name: bytes = b"a.example.com"):
    """Run a client handshake against ``factory`` in memory: (completed, negotiated ALPN)."""
    server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = TCPStringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    server.makeConnection(transport)
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE)
    context.set_alpn_protos(offered)
    client = SSL.Connection(context, None)
    client.set_tlsext_host_name(server_name)
    client.set_connect_state()
    for _ in range(10):
        try:
            client.do_handshake()
            return True, client.get_alpn_proto_negotiated()
        except SSL.WantReadError:
            pass
        while True:
            try:
                outgoing = client.bio_read(65536)
            except SSL.WantReadError:
                break
            server.dataReceived(outgoing)
        incoming = transport.value()
        transport.clear()
        if not incoming:
            return False, b""
        client.bio_write(incoming)
    return False, b""


class ListenerALPNTests(unittest.TestCase):
    def setUp(self):
        directory = self.mktemp()
        os.makedirs(directory)
        ca = trustme.CA()
        tls = TLSConfig(
            certificates=(
                certificate_files(directory, ca, "a.example.com"),
                certificate_files(directory, ca, "default.example", default=True),
            )
        )
        self.listener = ListenerConfig(
            name="secure", bind="tcp:0", rules=(), protocol="https", tls=tls
        )
        self.server_tls = ServerTLS(self.listener)

    def factory(self, site_class=Site):
        clock = Clock()
        return tls_factory(self.server_tls, site_class(Resource(), reactor=clock), clock)

    def test_a_site_offering_h2_still_negotiates_http_1_1(self):
        self.assertEqual(
            handshake(self.factory(OfferingSite), [b"h2", b"http/1.1"]), (True, b"http/1.1")
        )

    def test_a_client_offering_only_h2_completes_without_alpn(self):
        self.assertEqual(handshake(self.factory(OfferingSite), [b"h2"]), (True, b""))

    def test_every_connection_completes_its_handshake_on_the_shared_context(self):
        """The first connection marks the context used; the later ones must not change it."""
        factory = self.factory()
        results = [handshake(factory, [b"http/1.1"]) for _ in range(3)]
        self.assertEqual(results, [(True, b"http/1.1")] * 3)

    def test_a_name_with_its_own_certificate_negotiates_http_1_1_too(self):
        """The servername callback swaps the context; the swapped one carries the ALPN policy."""
        factory = self.factory(OfferingSite)
        results = [
            handshake(factory, [b"h2", b"http/1.1"], name)
            for name in (b"a.example.com", b"default.example", b"unknown.example")
        ]
        self.assertEqual(results, [(True, b"http/1.1")] * 3)
