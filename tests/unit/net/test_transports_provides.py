"""A protocol wrapper provides what its transport provides, whatever wrapped before it."""

from __future__ import annotations

from twisted.internet.interfaces import ISSLTransport, ITransport
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial import unittest
from zope.interface import directlyProvides, providedBy

from clbproxy.net.transports import provide_like


def _wrapper() -> ProtocolWrapper:
    return ProtocolWrapper(WrappingFactory(None), Protocol())


def _tls_transport() -> StringTransport:
    transport = StringTransport()
    directlyProvides(transport, ISSLTransport)
    return transport


class ProvideLikeTests(unittest.TestCase):
    def test_a_wrapper_provides_what_its_transport_provides(self):
        wrapper = _wrapper()
        provide_like(wrapper, StringTransport())
        self.assertTrue(ITransport.providedBy(wrapper))
        self.assertFalse(ISSLTransport.providedBy(wrapper))

    def test_each_wrapper_gets_its_own_transports_interfaces_in_any_order(self):
        for _ in range(2):
            plain, tls = _wrapper(), _wrapper()
            provide_like(plain, StringTransport())
            provide_like(tls, _tls_transport())
            self.assertFalse(ISSLTransport.providedBy(plain))
            self.assertTrue(ISSLTransport.providedBy(tls))
            self.assertTrue(ITransport.providedBy(tls))

    def test_the_declaration_is_the_one_twisted_would_make(self):
        ours, twisteds = _wrapper(), _wrapper()
        transport = _tls_transport()
        provide_like(ours, transport)
        directlyProvides(twisteds, providedBy(transport))
        self.assertEqual(list(providedBy(ours)), list(providedBy(twisteds)))
