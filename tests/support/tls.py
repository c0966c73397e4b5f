"""Test certificates from trustme, written as PEM files, and a blocking TLS probe client."""

from __future__ import annotations

import datetime
import os
import select
import socket
import time
from typing import Optional, Sequence

import attrs
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.protocol import ServerFactory

from clbproxy.config import CertificateConfig, TLSConfig


def write(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as stream:
        stream.write(data)
    return path


def certificate_files(
    directory: str,
    ca: trustme.CA,
    *names: str,
    prefix: Optional[str] = None,
    default: bool = False,
    **issue,
) -> CertificateConfig:
    """Issue a certificate for ``names`` and write its chain and key; the config entry."""
    leaf = ca.issue_cert(*names, **issue)
    prefix = prefix or names[0].replace("*", "star")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return CertificateConfig(
        cert=write(directory, f"{prefix}.pem", chain),
        key=write(directory, f"{prefix}.key", leaf.private_key_pem.bytes()),
        default=default,
    )


def tls_config(*certificates: CertificateConfig, **options) -> TLSConfig:
    return TLSConfig(certificates=tuple(certificates), **options)


@attrs.frozen
class Probe:
    """What one TLS handshake with the proxy gave."""

    ok: bool
    names: tuple[str, ...] = ()
    version: str = ""
    alpn: bytes = b""
    error: str = ""
    ocsp: bytes = b""
    response: bytes = b""


def probe(
    port: int,
    server_name: Optional[str] = None,
    *,
    max_version: Optional[int] = None,
    min_version: Optional[int] = None,
    ciphers: Optional[bytes] = None,
    alpn: Sequence[bytes] = (),
    client_cert: Optional[trustme.LeafCert] = None,
    request_ocsp: bool = False,
    before: bytes = b"",
    send: bytes = b"",
) -> Probe:
    """A blocking handshake (run it in a thread): what certificate and protocol came back.

    ``before`` is written in clear before the handshake (a PROXY header);
    ``send`` after it, and then everything is read until the server closes.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE)
    if max_version is not None:
        context.set_max_proto_version(max_version)
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if min_version is not None:
        context.set_min_proto_version(min_version)
    if ciphers is not None:
        context.set_cipher_list(ciphers)
    if alpn:
        context.set_alpn_protos(list(alpn))
    if client_cert is not None:
        context.use_certificate(
            x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
        )
        context.use_privatekey(
            serialization.load_pem_private_key(client_cert.private_key_pem.bytes(), None)
        )
    stapled = []
    if request_ocsp:
        context.set_ocsp_client_callback(lambda conn, data, _: stapled.append(data) or True)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        if before:
            sock.sendall(before)
        connection = SSL.Connection(context, sock)
        if server_name is not None:
            connection.set_tlsext_host_name(server_name.encode("ascii"))
        if request_ocsp:
            connection.request_ocsp()
        connection.set_connect_state()
        try:
            _retrying(sock, connection.do_handshake)
            received = b""
            if send:
                connection.sendall(send)
            # TLS 1.3 reports a refused client certificate only on the first read.
            closing = False
            while True:
                try:
                    chunk = _retrying(sock, lambda: connection.recv(65536), 5 if send else 0.2)
                except (SSL.ZeroReturnError, SSL.SysCallError, TimeoutError):
                    break
                if not chunk:
                    break
                received += chunk
                opened = received.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in received
                if opened and not closing:
                    # End the WebSocket session cleanly: a masked Close 1000, then read to EOF.
                    connection.sendall(_CLOSE_1000)
                    closing = True
        except SSL.Error as e:
            return Probe(ok=False, error=str(e) or type(e).__name__)
        peer = connection.get_peer_certificate(as_cryptography=True)
        san = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return Probe(
            ok=True,
            names=tuple(san.value.get_values_for_type(x509.DNSName)),
            version=connection.get_protocol_version_name(),
            alpn=connection.get_alpn_proto_negotiated(),
            ocsp=stapled[0] if stapled else b"",
            response=received,
        )
    finally:
        sock.close()


#: A client's Close frame with code 1000 (masked with a zero key).
_CLOSE_1000 = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


def _retrying(sock, operation, timeout: float = 5.0):
    """Run a pyOpenSSL operation on a socket with a timeout, waiting while it wants to read."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return operation()
        except SSL.WantReadError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError() from None
            select.select([sock], [], [], min(left, 0.05))


def expired(ca: trustme.CA, directory: str, name: str) -> CertificateConfig:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    return certificate_files(
        directory,
        ca,
        name,
        not_before=past,
        not_after=past + datetime.timedelta(days=30),
    )


class WithoutALPN(ServerFactory):
    """``site`` for a test backend on Twisted's ``ssl:`` endpoint, offering no ALPN.

    Twisted up to 25.5 copies a Site's ``acceptableProtocols()`` onto the
    endpoint's shared context for every connection, and pyOpenSSL 26.2 and later
    refuse that once the context has made a connection (twisted#12500): the
    backend's second handshake would fail.  This plain factory does not offer
    protocol negotiation, so the suite's backends work on every allowed pair.
    """

    def __init__(self, site: ServerFactory) -> None:
        self.site = site

    def doStart(self) -> None:
        self.site.doStart()

    def doStop(self) -> None:
        self.site.doStop()

    def buildProtocol(self, addr):
        return self.site.buildProtocol(addr)
