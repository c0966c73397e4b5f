"""TLS towards backends: the client side of ``https``/``wss`` target groups.

Target groups with ``scheme = "wss"``/``"https"`` connect through
``wrapClientTLS(optionsForClientTLS(...), HostnameEndpoint(...))``, with
hostname verification by ``service_identity`` (imported here, so a missing
install fails at start instead of silently weakening verification).
:class:`BackendConnector` is how the WebSocket relay and the HTTP forwarder
reach a backend, plain or TLS.  It is apart from the listener side
(:mod:`clbproxy.net.tls`), which it shares nothing with but the certificate
files (:mod:`clbproxy.net.certificates`).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

import service_identity  # noqa: F401  (hard requirement: Twisted's hostname verification)
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.net.certificates import load_bundle
from clbproxy.net.endpoints import backend_endpoint, relay_endpoint

log = Logger()


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """Client TLS that sends SNI but accepts any certificate (``verify = false``)."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self._context.set_min_proto_version(SSL.TLS1_2_VERSION)
        self._context.set_verify(SSL.VERIFY_NONE)

    def clientConnectionForTLS(self, protocol) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        if not _is_ip(self._hostname):
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        return connection


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class BackendConnector:
    """Endpoints to backends: plain TCP, or TLS for ``wss``/``https`` target groups.

    TLS options are built once per (group, host) and reused for every connection.
    """

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self._options: dict[tuple[TargetGroupConfig, str], object] = {}

    def endpoint(self, backend: BackendConfig, group: TargetGroupConfig) -> IStreamClientEndpoint:
        endpoint = backend_endpoint(
            self._reactor, backend.host, backend.port, group.connect_timeout
        )
        if not group.tls:
            return endpoint
        return wrapClientTLS(self.options(backend.host, group), endpoint)

    def relay_endpoint(
        self, backend: BackendConfig, group: TargetGroupConfig
    ) -> IStreamClientEndpoint:
        """``endpoint`` for the WebSocket relay: a plain backend at an IP address is
        connected with nothing between its connection and the relay's protocol."""
        if group.tls:
            return self.endpoint(backend, group)
        return relay_endpoint(self._reactor, backend.host, backend.port, group.connect_timeout)

    def options(self, host: str, group: TargetGroupConfig):
        """The client TLS options for ``host`` in ``group``; raises CertificateError."""
        key = (group, host)
        options = self._options.get(key)
        if options is None:
            options = client_tls_options(host, group)
            self._options[key] = options
        return options


def client_tls_options(host: str, group: TargetGroupConfig):
    """``optionsForClientTLS`` for a backend: SNI and verification of ``server_name or host``."""
    hostname = group.server_name or host
    if not group.verify:
        return _Unverified(hostname)
    trust_root = ssl.platformTrust()
    if group.ca_file is not None:
        authorities = load_bundle(group.ca_file, "CA bundle")
        trust_root = ssl.trustRootFromCertificates(
            [
                ssl.Certificate.loadPEM(ca.public_bytes(serialization.Encoding.PEM))
                for ca in authorities
            ]
        )
    return ssl.optionsForClientTLS(hostname, trustRoot=trust_root)


def warn_unverified(groups: Iterable[TargetGroupConfig]) -> None:
    """At start: a warning for each TLS target group that does not verify its backends."""
    for group in groups:
        if group.tls and not group.verify:
            log.warn(
                "tls: target group {group} does not verify its backends' certificates "
                "(verify = false): connections to it can be intercepted",
                group=group.name,
            )
