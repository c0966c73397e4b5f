"""HTTPS listeners over real TLS handshakes on 127.0.0.1: SNI, policy, mTLS, reload, backends."""

from __future__ import annotations

import json
import os
import socket
import ssl as stdlib_ssl
import time

import attrs
import trustme
from autobahn.twisted.websocket import WebSocketServerFactory
from cryptography import x509
from OpenSSL import SSL
from twisted.internet import defer, reactor, ssl, threads
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from clbproxy.config import CertificateConfig
from clbproxy.net.certificates import CertificateError
from tests.support.network import (
    BackendProtocol,
    ClientFactory,
    Listening,
    hops_without_no_delay,
    sends_at_once,
)
from tests.support.tls import WithoutALPN, certificate_files, probe, tls_config, write


class TLSTestCase(unittest.TestCase):
    timeout = 20

    def setUp(self):
        self.net = Listening(self)
        self.dir = self.mktemp()

        os.makedirs(self.dir)
        self.ca = trustme.CA()
        self.a = certificate_files(self.dir, self.ca, "a.example.com")
        self.wild = certificate_files(self.dir, self.ca, "*.wild.example")
        self.default = certificate_files(self.dir, self.ca, "default.example", default=True)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    @defer.inlineCallbacks
    def https_proxy(self, *certificates, group_options=None, **options):
        backend, ready = self.net.backend()
        backend_port = yield ready
        tls = tls_config(*(certificates or (self.a, self.wild, self.default)), **options)
        port = yield self.net.proxy(
            [backend_port], protocol="https", tls=tls, group_options=group_options
        )
        return backend, port

    def probe(self, port, *args, **kwargs):
        return threads.deferToThread(probe, port, *args, **kwargs)

    def wss_client(self, port, path="/echo", server_name="a.example.com", trust=None):
        factory = ClientFactory(f"wss://{server_name}:{port}{path}")
        self.net.connections.append(factory)
        options = ssl.optionsForClientTLS(
            server_name, trustRoot=trust or ssl.Certificate.loadPEM(self.ca.cert_pem.bytes())
        )
        wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)).connect(
            factory
        )
        return factory

    def logged(self, text):
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.events if text in formatEvent(event)]


class SNITests(TLSTestCase):
    @defer.inlineCallbacks
    def test_sni_picks_the_certificate_naming_the_host(self):
        _, port = yield self.https_proxy()
        result = yield self.probe(port, "a.example.com")
        self.assertEqual(result.names, ("a.example.com",))

    @defer.inlineCallbacks
    def test_wildcard_certificate_serves_one_label_below(self):
        _, port = yield self.https_proxy()
        result = yield self.probe(port, "chat.wild.example")
        self.assertEqual(result.names, ("*.wild.example",))

    @defer.inlineCallbacks
    def test_default_certificate_without_sni(self):
        _, port = yield self.https_proxy()
        result = yield self.probe(port)
        self.assertEqual(result.names, ("default.example",))

    @defer.inlineCallbacks
    def test_unknown_name_gets_the_default_certificate(self):
        _, port = yield self.https_proxy()
        for name in ("unknown.example", "a.b.wild.example", "wild.example"):
            result = yield self.probe(port, name)
            self.assertEqual(result.names, ("default.example",), name)

    @defer.inlineCallbacks
    def test_alpn_selects_http_1_1_and_never_h2(self):
        _, port = yield self.https_proxy()
        both = yield self.probe(port, "a.example.com", alpn=[b"h2", b"http/1.1"])
        h2_only = yield self.probe(port, "a.example.com", alpn=[b"h2"])
        self.assertEqual((both.alpn, h2_only.ok, h2_only.alpn), (b"http/1.1", True, b""))


class PolicyTests(TLSTestCase):
    @defer.inlineCallbacks
    def test_tls_1_1_client_gets_an_alert_and_is_logged(self):
        _, port = yield self.https_proxy()
        old = yield self.probe(port, "a.example.com", max_version=SSL.TLS1_1_VERSION)
        current = yield self.probe(port, "a.example.com")
        self.assertFalse(old.ok)
        self.assertIn("protocol version", old.error)
        self.assertTrue(current.ok)
        self.assertEqual(
            len(self.logged("handshake with 127.0.0.1 failed: unsupported protocol")), 1
        )

    @defer.inlineCallbacks
    def test_session_tickets_are_issued_unless_turned_off(self):
        _, on = yield self.https_proxy()
        _, off = yield self.https_proxy(session_tickets=False)
        issued = yield threads.deferToThread(_tls12_ticket_issued, on, "a.example.com")
        refused = yield threads.deferToThread(_tls12_ticket_issued, off, "a.example.com")
        self.assertEqual((issued, refused), (True, False))

    @defer.inlineCallbacks
    def test_tls_1_3_only_listener_refuses_tls_1_2(self):
        _, port = yield self.https_proxy(min_version="1.3")
        old = yield self.probe(port, "a.example.com", max_version=SSL.TLS1_2_VERSION)
        current = yield self.probe(port, "a.example.com")
        self.assertEqual((old.ok, current.ok, current.version), (False, True, "TLSv1.3"))

    @defer.inlineCallbacks
    def test_no_shared_cipher_is_refused_and_logged(self):
        _, port = yield self.https_proxy(self.a, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
        result = yield self.probe(
            port,
            "a.example.com",
            max_version=SSL.TLS1_2_VERSION,
            ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256",
        )
        self.assertFalse(result.ok)
        self.assertEqual(len(self.logged("failed: no shared cipher")), 1)

    @defer.inlineCallbacks
    def test_ocsp_response_is_stapled_when_asked_for(self):
        staple = write(self.dir, "a.ocsp", b"\x30\x03\x0a\x01\x00")
        _, port = yield self.https_proxy(attrs.evolve(self.a, ocsp_response=staple))
        result = yield self.probe(port, "a.example.com", request_ocsp=True)
        self.assertEqual(result.ocsp, b"\x30\x03\x0a\x01\x00")


class MutualTLSTests(TLSTestCase):
    def setUp(self):
        super().setUp()
        self.client_ca = trustme.CA()
        self.client_ca_file = write(self.dir, "clients.pem", self.client_ca.cert_pem.bytes())
        self.client = self.client_ca.issue_cert("client.example", common_name="alice")

    @defer.inlineCallbacks
    def test_required_client_certificate_is_refused_without_one(self):
        _, port = yield self.https_proxy(client_ca=self.client_ca_file, client_auth="require")
        without = yield self.probe(port, "a.example.com", send=b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(without.response, b"")

    @defer.inlineCallbacks
    def test_certificate_from_another_ca_is_refused(self):
        _, port = yield self.https_proxy(client_ca=self.client_ca_file, client_auth="optional")
        stranger = trustme.CA().issue_cert("client.example")
        result = yield self.probe(
            port, "a.example.com", client_cert=stranger, send=b"GET / HTTP/1.1\r\n\r\n"
        )
        self.assertEqual(result.response, b"")

    @defer.inlineCallbacks
    def test_verified_client_certificate_reaches_the_backend_in_headers(self):
        backend, port = yield self.https_proxy(client_ca=self.client_ca_file, client_auth="require")
        request = (
            b"GET /headers HTTP/1.1\r\nHost: a.example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nX-Client-Cert-Subject: CN=mallory\r\n\r\n"
        )
        backend.closed = defer.Deferred()
        result = yield self.probe(port, "a.example.com", client_cert=self.client, send=request)
        yield backend.closed
        self.assertTrue(result.response.startswith(b"HTTP/1.1 101 "), result.response[:80])
        headers = backend.requests[0].headers
        issued = x509.load_pem_x509_certificate(self.client.cert_chain_pems[0].bytes())
        self.assertEqual(headers["x-client-cert-subject"], issued.subject.rfc4514_string())
        self.assertTrue(headers["x-client-cert-subject"].startswith("CN=alice,"))
        self.assertEqual(len(headers["x-client-cert-fingerprint"]), 64)
        self.assertEqual(headers["x-forwarded-proto"], "https")

    @defer.inlineCallbacks
    def test_plain_http_requests_carry_the_client_certificate_headers_too(self):
        class Headers(Resource):
            isLeaf = True

            def render_GET(self, request):
                # The proxy's client connection, open while this request is served.
                delayed.extend(
                    not sends_at_once(connection) for connection in self.service.limiter.protocols
                )
                names = (b"x-client-cert-subject", b"x-client-cert-fingerprint")
                return json.dumps(
                    [request.requestHeaders.getRawHeaders(n, [b""])[0].decode() for n in names]
                ).encode()

        delayed = []
        headers = Headers()
        listening = yield self.net.listen(Site(headers))
        port = yield self.net.proxy(
            [listening],
            protocol="https",
            tls=tls_config(self.a, client_ca=self.client_ca_file, client_auth="require"),
        )
        headers.service = self.net.service
        result = yield self.probe(
            port,
            "a.example.com",
            client_cert=self.client,
            send=b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            b"X-Client-Cert-Fingerprint: spoofed\r\n\r\n",
        )
        subject, digest = json.loads(result.response.split(b"\r\n\r\n", 1)[1])
        self.assertTrue(subject.startswith("CN=alice,"))
        self.assertEqual(len(digest), 64)
        self.assertEqual(delayed, [False])  # the HTTPS client's socket sends at once

    @defer.inlineCallbacks
    def test_optional_client_certificate_may_be_absent_and_spoofs_are_dropped(self):
        backend, port = yield self.https_proxy(
            client_ca=self.client_ca_file, client_auth="optional"
        )
        request = (
            b"GET /headers HTTP/1.1\r\nHost: a.example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nX-Client-Cert-Subject: CN=mallory\r\n"
            b"X-Client-Cert-Fingerprint: 00\r\n\r\n"
        )
        backend.closed = defer.Deferred()
        result = yield self.probe(port, "a.example.com", send=request)
        yield backend.closed
        self.assertTrue(result.response.startswith(b"HTTP/1.1 101 "), result.response[:80])
        headers = backend.requests[0].headers
        self.assertNotIn("x-client-cert-subject", headers)
        self.assertNotIn("x-client-cert-fingerprint", headers)


def _invalid_text_then_read_to_eof(port: int) -> tuple[bytes, float]:
    """Over WSS: send a text frame with invalid UTF-8; what comes back until EOF, and when.

    The client never closes itself (a peer that ignores our Close must still be
    closed), so EOF is the proxy's close_notify and TCP close.
    """
    context = stdlib_ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = stdlib_ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname="a.example.com") as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: a.example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        received = head.split(b"\r\n\r\n", 1)[1]
        # A masked text frame (mask 0) whose payload is a lone 0xff.
        sock.sendall(b"\x81\x81\x00\x00\x00\x00\xff")
        started = time.monotonic()
        while True:
            try:
                chunk = sock.recv(4096)
            except (stdlib_ssl.SSLError, OSError):
                break
            if not chunk:
                break
            received += chunk
        return received, time.monotonic() - started


class WSSTests(TLSTestCase):
    @defer.inlineCallbacks
    def test_failed_session_is_closed_even_if_the_client_never_answers(self):
        _, port = yield self.https_proxy()
        received, waited = yield threads.deferToThread(_invalid_text_then_read_to_eof, port)
        self.assertEqual(received[:4], b"\x88\x0f\x03\xef")  # Close 1007 "invalid UTF-8"
        # The proxy's close_notify comes with its Close, not after a timeout.
        self.assertLess(waited, 2.0)

    @defer.inlineCallbacks
    def test_wss_session_relays_to_a_plain_backend_with_forwarded_proto_https(self):
        backend, port = yield self.https_proxy()
        client = self.wss_client(port, "/headers")
        protocol = yield client.opened
        protocol.sendMessage(b"?")
        (message,) = yield client.wait_messages(1)
        self.assertEqual(json.loads(message[0])["x-forwarded-proto"], "https")
        (session,) = self.net.service.relay.sessions
        self.assertEqual(hops_without_no_delay(session), [])
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_proxy_protocol_header_comes_before_the_tls_handshake(self):
        backend, ready = self.net.backend()
        backend_port = yield ready
        port = yield self.net.proxy(
            [backend_port],
            protocol="https",
            tls=tls_config(self.a),
            bind="haproxy:tcp:0:interface=127.0.0.1",
        )
        request = (
            b"GET /echo HTTP/1.1\r\nHost: a.example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        backend.closed = defer.Deferred()
        result = yield self.probe(
            port,
            "a.example.com",
            before=b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n",
            send=request,
        )
        yield backend.closed
        self.assertTrue(result.response.startswith(b"HTTP/1.1 101 "), result.response[:80])
        self.assertEqual(backend.requests[0].headers["x-real-ip"], "203.0.113.9")

    @defer.inlineCallbacks
    def test_reload_swaps_certificates_and_keeps_open_sessions(self):
        _, port = yield self.https_proxy(self.a)
        client = self.wss_client(port)
        protocol = yield client.opened
        renewed = certificate_files(
            self.dir, self.ca, "a.example.com", "b.example.com", prefix="renewed"
        )
        tls_service = self.net.service.tls
        tls_service.reload(attrs.evolve(tls_service.listener, tls=tls_config(renewed)))
        after = yield self.probe(port, "b.example.com")
        protocol.sendMessage(b"still here")
        messages = yield client.wait_messages(1)
        self.assertEqual(after.names, ("a.example.com", "b.example.com"))
        self.assertEqual(messages, [(b"still here", False)])
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_broken_certificate_on_reload_is_rejected_and_the_old_one_stays(self):
        _, port = yield self.https_proxy(self.a)
        broken = CertificateConfig(cert=self.a.cert, key=self.default.key)
        tls_service = self.net.service.tls
        with self.assertRaises(CertificateError) as raised:
            tls_service.reload(attrs.evolve(tls_service.listener, tls=tls_config(broken)))
        after = yield self.probe(port, "a.example.com")
        self.assertIn("does not match the certificate", str(raised.exception))
        self.assertEqual(after.names, ("a.example.com",))
        self.assertEqual(len(self.logged("reload rejected, old certificates kept")), 1)


class BackendTLSTests(TLSTestCase):
    @defer.inlineCallbacks
    def tls_backend(self, ca, *names):
        factory = WebSocketServerFactory()
        factory.protocol = BackendProtocol
        factory.requests, factory.opened, factory.closes = [], [], []
        factory.closed, factory.subprotocols = None, ()
        factory.setProtocolOptions(failByDrop=False, closeHandshakeTimeout=1)
        self.net.connections.append(factory)
        cert = ca.issue_cert(*names)
        options = ssl.PrivateCertificate.loadPEM(
            cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
        ).options()
        port = yield SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    @defer.inlineCallbacks
    def proxy_to(self, backend_port, **group_options):
        port = yield self.net.proxy([backend_port], group_options={"tls": True, **group_options})
        return port

    @defer.inlineCallbacks
    def test_wss_backend_with_a_verified_certificate(self):
        backend, backend_port = yield self.tls_backend(self.ca, "backend.internal")
        ca_file = write(self.dir, "backend-ca.pem", self.ca.cert_pem.bytes())
        port = yield self.proxy_to(backend_port, ca_file=ca_file, server_name="backend.internal")
        from tests.support.network import connect_client

        client = connect_client(port)
        self.net.connections.append(client)
        protocol = yield client.opened
        protocol.sendMessage(b"over tls")
        messages = yield client.wait_messages(1)
        self.assertEqual(messages, [(b"over tls", False)])
        (session,) = self.net.service.relay.sessions
        self.assertEqual(hops_without_no_delay(session), [])
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_backend_certificate_for_another_name_is_refused(self):
        _, backend_port = yield self.tls_backend(self.ca, "other.internal")
        ca_file = write(self.dir, "backend-ca.pem", self.ca.cert_pem.bytes())
        port = yield self.proxy_to(backend_port, ca_file=ca_file, server_name="backend.internal")
        from tests.support.network import connect_client

        client = connect_client(port)
        self.net.connections.append(client)
        with self.assertRaises(ConnectionError):
            yield client.opened
        self.assertEqual(client.response, None)

    @defer.inlineCallbacks
    def test_unverified_backend_is_accepted_with_verify_false(self):
        _, backend_port = yield self.tls_backend(trustme.CA(), "backend.internal")
        port = yield self.proxy_to(backend_port, verify=False)
        from tests.support.network import connect_client

        client = connect_client(port)
        self.net.connections.append(client)
        protocol = yield client.opened
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_http_requests_reach_an_https_backend(self):
        root = Resource()
        leaf = Resource()
        leaf.render_GET = lambda request: b"secure hello"
        root.putChild(b"hello", leaf)
        cert = self.ca.issue_cert("web.internal")
        options = ssl.PrivateCertificate.loadPEM(
            cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
        ).options()
        listening = yield SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(
            WithoutALPN(Site(root))
        )
        self.addCleanup(listening.stopListening)
        ca_file = write(self.dir, "backend-ca.pem", self.ca.cert_pem.bytes())
        port = yield self.proxy_to(
            listening.getHost().port, ca_file=ca_file, server_name="web.internal"
        )
        from tests.support.network import raw_request

        response = yield raw_request(
            port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:60])
        self.assertTrue(response.endswith(b"secure hello"))
        pool = self.net.service._forwarder._pools["pool"].pool
        [pooled] = list(pool._connections)
        self.assertTrue(sends_at_once(pooled.transport))  # kept-alive TLS backend connection


class BackendPoolTLSTests(TLSTestCase):
    """Keep-alive connections to a TLS backend are only reused by the group that checked them."""

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        leaf = Resource()
        leaf.isLeaf = True
        leaf.render_GET = lambda request: b"secure hello"
        cert = self.ca.issue_cert("web.internal")
        options = ssl.PrivateCertificate.loadPEM(
            cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
        ).options()
        site = Site(leaf)
        listening = yield SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(
            WithoutALPN(site)
        )
        self.addCleanup(listening.stopListening)
        self.backend_port = listening.getHost().port
        self.ca_file = write(self.dir, "backend-ca.pem", self.ca.cert_pem.bytes())

    def group(self, name, server_name):
        from clbproxy.config import BackendConfig, TargetGroupConfig

        return TargetGroupConfig(
            name=name,
            backends=(BackendConfig("127.0.0.1", self.backend_port),),
            tls=True,
            ca_file=self.ca_file,
            server_name=server_name,
            retries=0,
        )

    @defer.inlineCallbacks
    def start(self, *groups):
        from clbproxy.config import ListenerConfig, RuleConfig
        from clbproxy.listener.service import listener_service
        from clbproxy.upstream.balancer import TargetGroup

        self.listener = ListenerConfig(
            name="test",
            bind="tcp:0:interface=127.0.0.1",
            rules=tuple(RuleConfig(target_group=g.name, path=f"/{g.name}") for g in groups),
        )
        service = listener_service(
            self.listener, {g.name: TargetGroup(g, reactor) for g in groups}, reactor
        )
        ready = defer.Deferred()
        service.startService()
        service._waitingForPort.addCallback(lambda port: ready.callback(port) or port)
        self.addCleanup(service.stopService)
        self.service = service
        port = yield ready
        self.port = port.getHost().port

    @defer.inlineCallbacks
    def status(self, path):
        from tests.support.network import raw_request

        response = yield raw_request(
            self.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        return int(response.split(b" ", 2)[1])

    @defer.inlineCallbacks
    def test_a_group_with_other_tls_settings_does_not_reuse_anothers_connection(self):
        yield self.start(self.group("strict", "web.internal"), self.group("other", "api.internal"))
        verified = yield self.status("/strict")
        # The same backend address, but "other" expects another certificate name:
        # it must check its own connection instead of taking the idle verified one.
        other = yield self.status("/other")
        again = yield self.status("/strict")
        self.assertEqual((verified, other, again), (200, 502, 200))

    @defer.inlineCallbacks
    def test_a_reload_that_changes_tls_settings_does_not_reuse_old_connections(self):
        from clbproxy.upstream.balancer import TargetGroup

        yield self.start(self.group("strict", "web.internal"))
        before = yield self.status("/strict")
        changed = self.group("strict", "api.internal")
        self.service.swap(self.listener, {"strict": TargetGroup(changed, reactor)})
        after = yield self.status("/strict")
        self.assertEqual((before, after), (200, 502))


class RedirectTests(TLSTestCase):
    @defer.inlineCallbacks
    def test_http_listener_redirects_to_https_keeping_host_path_and_query(self):
        from tests.support.network import raw_request

        port = yield self.net.proxy([1], redirect_to_https=True, https_port=8443)
        get = yield raw_request(
            port, b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n"
        )
        post = yield raw_request(
            port,
            b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n",
        )
        self.assertTrue(get.startswith(b"HTTP/1.1 301 "))
        self.assertIn(b"\r\nLocation: https://example.com:8443/a/b?c=1\r\n", get)
        self.assertTrue(post.startswith(b"HTTP/1.1 308 "))
        self.assertIn(b"\r\nLocation: https://example.com:8443/form\r\n", post)


def _tls12_ticket_issued(port: int, server_name: str) -> bool:
    """Whether a TLS 1.2 handshake with 127.0.0.1:port got a session ticket."""
    import socket
    import ssl as pyssl

    context = pyssl.SSLContext(pyssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = pyssl.CERT_NONE
    context.maximum_version = pyssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as connection:
            return connection.session is not None and connection.session.has_ticket


class ProtocolReloadTests(TLSTestCase):
    """A reload that turns a kept listener from http to https (and back) on the same socket."""

    def write(self, proxy, backend_port, protocol):
        tls = ""
        if protocol == "https":
            cert, key = os.path.abspath(self.a.cert), os.path.abspath(self.a.key)
            tls = f'  [listener.tls]\n  certificates = [{{ cert = "{cert}", key = "{key}" }}]\n'
        with open(proxy.path, "w") as f:
            f.write(
                f'[[listener]]\nname = "web"\nprotocol = "{protocol}"\n'
                'bind = "tcp:0:interface=127.0.0.1"\n'
                f'{tls}  [[listener.rule]]\n  target_group = "pool"\n'
                f'[target_group.pool]\nbackends = ["127.0.0.1:{backend_port}"]\n'
            )

    @defer.inlineCallbacks
    def test_reload_from_http_to_https_and_back_keeps_the_port_and_open_sessions(self):
        from tests.integration.test_lifecycle import ProxyProcess, port_of

        proxy = ProxyProcess(self)
        backend, backend_port = proxy.backend()
        backend_port = yield backend_port
        self.write(proxy, backend_port, "http")
        proxy.start()
        port = port_of(proxy.listener())
        plain = proxy.client(port, "/headers")
        plain_protocol = yield plain.opened

        self.write(proxy, backend_port, "https")
        applied = yield proxy.reloader.reload()

        self.assertTrue(applied)
        self.assertEqual(port_of(proxy.listener()), port)
        secure = self.wss_client(port, "/headers")
        protocol = yield secure.opened
        protocol.sendMessage(b"?")
        (message,) = yield secure.wait_messages(1)
        self.assertEqual(json.loads(message[0])["x-forwarded-proto"], "https")
        plain_protocol.sendMessage(b"?")
        (message,) = yield plain.wait_messages(1)
        self.assertEqual(json.loads(message[0])["x-forwarded-proto"], "http")
        self.assertEqual(
            proxy.root.observability.live.snapshot()["listeners"][0]["protocol"], "https"
        )

        self.write(proxy, backend_port, "http")
        applied = yield proxy.reloader.reload()

        self.assertTrue(applied)
        again = proxy.client(port, "/headers")
        again_protocol = yield again.opened
        again_protocol.sendMessage(b"?")
        (message,) = yield again.wait_messages(1)
        self.assertEqual(json.loads(message[0])["x-forwarded-proto"], "http")
        protocol.sendMessage(b"still there")
        messages = yield secure.wait_messages(2)
        self.assertEqual(len(messages), 2)
        for client in (protocol, plain_protocol, again_protocol):
            client.sendClose(1000)
        yield defer.DeferredList([secure.closed, plain.closed, again.closed])

    @defer.inlineCallbacks
    def test_reload_to_https_with_a_broken_certificate_is_refused_and_http_goes_on(self):
        from tests.integration.test_lifecycle import ProxyProcess, port_of

        proxy = ProxyProcess(self)
        _, backend_port = proxy.backend()
        backend_port = yield backend_port
        self.write(proxy, backend_port, "http")
        proxy.start()
        port = port_of(proxy.listener())
        self.a = CertificateConfig(cert=self.a.cert, key=self.default.key)
        self.write(proxy, backend_port, "https")

        applied = yield proxy.reloader.reload()

        self.assertFalse(applied)
        self.assertTrue(proxy.messages("reload refused: {problem}"))
        self.assertEqual(proxy.listener().listener.protocol, "http")
        client = proxy.client(port)
        yield client.opened
        client.built[0].sendClose(1000)
        yield client.closed


def https_config(backend_port: int, cert: CertificateConfig, bind: str) -> str:
    """tap.conf with one HTTPS listener ``web`` serving ``cert``'s files."""
    cert_path, key_path = os.path.abspath(cert.cert), os.path.abspath(cert.key)
    return (
        f'[[listener]]\nname = "web"\nprotocol = "https"\nbind = "{bind}"\n'
        f'  [listener.tls]\n  certificates = [{{ cert = "{cert_path}", key = "{key_path}" }}]\n'
        '  [[listener.rule]]\n  target_group = "pool"\n'
        f'[target_group.pool]\nbackends = ["127.0.0.1:{backend_port}"]\n'
    )


class CertificateFileReloadTests(TLSTestCase):
    """SIGHUP (a reload) reads a kept HTTPS listener's certificate files again."""

    def renew(self):
        """Overwrite a.example.com's files with a certificate that names a second host."""
        certificate_files(
            self.dir, self.ca, "a.example.com", "renewed.example.com", prefix="a.example.com"
        )

    def break_certificate(self):
        """Overwrite a.example.com's certificate with one its key does not match."""
        with open(self.default.cert, "rb") as f:
            write(self.dir, os.path.basename(self.a.cert), f.read())

    @defer.inlineCallbacks
    def open_wss(self, port):
        client = self.wss_client(port)
        protocol = yield client.opened
        protocol.sendMessage(b"before")
        yield client.wait_messages(1)
        return client, protocol

    @defer.inlineCallbacks
    def assert_session_echoes(self, client, protocol, count):
        protocol.sendMessage(b"after %d" % count)
        messages = yield client.wait_messages(count)
        self.assertEqual(messages[-1], (b"after %d" % count, False))

    @defer.inlineCallbacks
    def test_reload_serves_rewritten_certificate_files_and_keeps_open_wss_sessions(self):
        from tests.integration.test_lifecycle import BIND, ProxyProcess, port_of

        proxy = ProxyProcess(self)
        _, backend_port = proxy.backend()
        backend_port = yield backend_port
        with open(proxy.path, "w") as f:
            f.write(https_config(backend_port, self.a, BIND))
        proxy.start()
        port = port_of(proxy.listener())
        client, protocol = yield self.open_wss(port)

        self.renew()
        self.assertTrue((yield proxy.reloader.reload()))

        renewed = yield self.probe(port, "a.example.com")
        self.assertEqual(renewed.names, ("a.example.com", "renewed.example.com"))
        yield self.assert_session_echoes(client, protocol, 2)

        self.break_certificate()
        self.assertFalse((yield proxy.reloader.reload()))

        kept = yield self.probe(port, "a.example.com")
        self.assertEqual(kept.names, ("a.example.com", "renewed.example.com"))
        [problem] = [event["problem"] for event in proxy.messages("reload refused: {problem}")]
        key, cert = os.path.abspath(self.a.key), os.path.abspath(self.a.cert)
        self.assertEqual(
            problem,
            f"{proxy.path}: listener[0].tls: listener 'web': "
            f"key {key} does not match the certificate {cert}",
        )
        yield self.assert_session_echoes(client, protocol, 3)
        fresh = self.wss_client(port)
        yield fresh.opened
        for hop in (protocol, fresh.built[0]):
            hop.sendClose(1000)
        yield defer.DeferredList([client.closed, fresh.closed])

    @defer.inlineCallbacks
    def test_sighup_to_twistd_serves_rewritten_certificate_files(self):
        import signal

        from tests.integration.test_lifecycle import Twistd, free_port

        _, backend_port = self.net.backend()
        backend_port = yield backend_port
        port = free_port()
        twistd = Twistd(self)
        twistd.write(https_config(backend_port, self.a, f"tcp:{port}:interface=127.0.0.1"))
        yield twistd.start()
        client, protocol = yield self.open_wss(port)

        self.renew()
        twistd.kill(signal.SIGHUP)
        yield twistd.wait_for_log("reloaded")

        renewed = yield self.probe(port, "a.example.com")
        self.assertEqual(renewed.names, ("a.example.com", "renewed.example.com"))
        yield self.assert_session_echoes(client, protocol, 2)

        self.break_certificate()
        twistd.kill(signal.SIGHUP)
        yield twistd.wait_for_log("the running configuration keeps serving")

        kept = yield self.probe(port, "a.example.com")
        self.assertEqual(kept.names, ("a.example.com", "renewed.example.com"))
        rejected = [line for line in twistd.log().splitlines() if "does not match" in line]
        self.assertEqual(len(rejected), 1, twistd.log())
        self.assertIn(f"reload refused: {twistd.path}: listener[0].tls: ", rejected[0])
        self.assertNotIn("Traceback", twistd.log())
        yield self.assert_session_echoes(client, protocol, 3)
        protocol.sendClose(1000)
        yield client.closed
