"""TLS termination for HTTPS listeners: server contexts, SNI, reload and hostile clients.

A listener's certificates are loaded once (at start and on :meth:`ServerTLS.reload`)
into an :class:`SNIMap`: one pre-built ``SSL.Context`` per certificate, found by
the names in the certificate's subjectAltName (exact or ``*.example.com``).  Each
connection starts on the default certificate's context; OpenSSL's servername
callback swaps in the context the client's SNI names (txsni's shape).  Every
context carries the listener's whole policy (versions, ciphers, ALPN, tickets,
client verification, OCSP), because OpenSSL reads some settings from the
connection's first context and others from the swapped one.  With ``strict_sni``
a name no certificate covers (or no SNI at all) gets a context without any
certificate, so OpenSSL refuses the handshake with a ``handshake_failure`` alert
(HAProxy's ``strict-sni``).

Hostile clients on an HTTPS port: a plain HTTP request gets a plain ``400`` (as
nginx answers), client-initiated renegotiation is refused
(``SSL_OP_NO_RENEGOTIATION``: a ``no_renegotiation`` alert, so a client cannot
make the proxy do a full handshake per request), and every handshake that does
not complete, whatever the reason, is logged as one line.  The listener's
``header_timeout`` runs from the connection, so it also bounds the handshake.

Reading certificate files, the cipher check and the self-signed demo
certificate are in :mod:`clbproxy.net.certificates`; TLS towards backends is in
:mod:`clbproxy.net.tls_client`.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import weakref
from typing import Callable, Iterable, Mapping, Optional

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from clbproxy.config import Config, ListenerConfig, TLSConfig
from clbproxy.http.responses import raw_error_response
from clbproxy.net.certificates import (
    CertificateError,
    LoadedCertificate,
    ensure_self_signed,
    fingerprint,
    listener_certificates,
    load_bundle,
    load_certificate,
    weak_cipher_problem,
)

log = Logger()

_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
_HTTP11 = b"http/1.1"
#: Authorities whose answer one connection keeps (a client naming more is only slower).
_AUTHORITIES_KEPT = 64
#: The answer to a plain HTTP request on an HTTPS port, in nginx's words.
PLAIN_HTTP_DETAIL = "The plain HTTP request was sent to HTTPS port"


def inspect_certificates(
    config: Config, now: Optional[datetime.datetime] = None
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` about every HTTPS listener's files, one line each.

    A self-signed certificate not generated yet is no problem: the first start
    creates it.  An expired certificate is a warning (it still loads).
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    problems: list[str] = []
    warnings: list[str] = []
    for index, listener in enumerate(config.listeners):
        if listener.tls is None:
            continue
        where = f"{config.path}: listener[{index}].tls: listener {listener.name!r}"
        weak = weak_cipher_problem(listener.tls.ciphers)
        if weak is not None:
            problems.append(
                f"{config.path}: listener[{index}].tls.ciphers: listener {listener.name!r}: {weak}"
            )
        if listener.tls.self_signed and not os.path.exists(
            listener_certificates(listener.tls)[0].cert
        ):
            continue
        try:
            for loaded in build_sni_map(listener, lambda connection: None).certificates:
                if loaded.expired(now):
                    warnings.append(
                        f"{where}: certificate {loaded.config.cert} expired on "
                        f"{loaded.leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
                    )
        except CertificateError as e:
            problems.append(f"{where}: {e}")
    for group in config.target_groups:
        where = f"{config.path}: target_group.{group.name}"
        if group.tls and group.ca_file is not None:
            try:
                load_bundle(group.ca_file, "ca_file")
            except CertificateError as e:
                problems.append(f"{where}: {e}")
        if group.tls and not group.verify:
            warnings.append(f"{where}: verify = false: backend certificates are not checked")
    return problems, warnings


def listener_protocols(listener: ListenerConfig) -> tuple[bytes, ...]:
    """The ALPN protocols a listener speaks, preferred first: ``h2`` only with ``http2``."""
    return (b"h2", _HTTP11) if listener.http2 else (_HTTP11,)


def alpn_selector(protocols: tuple[bytes, ...]) -> Callable[[SSL.Connection, list], bytes]:
    """The server's ALPN choice: its first protocol the client offers.

    A client offering none of them gets no ALPN rather than an alert (it may
    still speak HTTP/1.1 without naming it).
    """

    def select(connection: SSL.Connection, offered: list[bytes]):
        for protocol in protocols:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


def _verify_client(connection, certificate, errno, depth, ok) -> bool:
    return bool(ok)


def server_context(
    loaded: LoadedCertificate,
    tls: TLSConfig,
    session_id: bytes,
    on_servername: Callable[[SSL.Connection], None],
    protocols: tuple[bytes, ...] = (_HTTP11,),
) -> SSL.Context:
    """One certificate's context with the listener's whole TLS policy.

    ``protocols`` are offered by ALPN, preferred first (:func:`listener_protocols`).

    Raises :class:`~clbproxy.net.certificates.CertificateError` for a policy
    OpenSSL rejects (cipher list, client CA bundle).
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(_VERSIONS[tls.min_version])
    options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION
    if not tls.session_tickets:
        options |= SSL.OP_NO_TICKET
    context.set_options(options)
    # Idle connections give their record buffers (~34 KB) back, as nginx and HAProxy do.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    try:
        context.set_cipher_list(tls.ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        raise CertificateError(f"ciphers: no usable cipher in {tls.ciphers!r}") from None
    context.use_certificate(loaded.leaf)
    for intermediate in loaded.chain[1:]:
        context.add_extra_chain_cert(intermediate)
    context.use_privatekey(loaded.key)
    context.check_privatekey()
    context.set_session_id(session_id)
    context.set_alpn_select_callback(alpn_selector(protocols))
    context.set_tlsext_servername_callback(on_servername)
    if loaded.ocsp is not None:
        staple = loaded.ocsp
        context.set_ocsp_server_callback(lambda connection, data: staple)
    if tls.client_ca is not None:
        authorities = load_bundle(tls.client_ca, "client CA bundle")
        context.load_verify_locations(tls.client_ca)
        context.set_client_ca_list(
            [crypto.X509.from_cryptography(ca).get_subject() for ca in authorities]
        )
        mode = SSL.VERIFY_PEER
        if tls.client_auth == "require":
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        context.set_verify(mode, _verify_client)
    return context


def refusing_context(tls: TLSConfig) -> SSL.Context:
    """A context without a certificate: a handshake switched to it fails with an alert.

    OpenSSL finds no cipher (TLS 1.2) or signature algorithm (TLS 1.3) it could use
    and sends ``handshake_failure``; pyOpenSSL's servername callback cannot choose
    the alert itself without printing a traceback.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(_VERSIONS[tls.min_version])
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    return context


class SNIMap:
    """Server name -> pre-built context; anything unknown or odd gets the default.

    The name comes from the client, so it may be ``None``, ``bytes`` in any
    encoding, or junk: :meth:`lookup` and :meth:`find` never raise.
    """

    def __init__(
        self,
        contexts: Mapping[str, SSL.Context],
        default: SSL.Context,
        certificates: Iterable[LoadedCertificate] = (),
        fingerprints: Optional[Mapping[SSL.Context, str]] = None,
    ) -> None:
        self._contexts = dict(contexts)
        self.default = default
        self.certificates = tuple(certificates)
        #: Each context's certificate, by its SHA-256 fingerprint.
        self.fingerprints = dict(fingerprints or {})

    def find(self, server_name: object) -> Optional[SSL.Context]:
        """The context of the certificate covering ``server_name``, or None."""
        try:
            if isinstance(server_name, bytes):
                server_name = server_name.decode("ascii")
            if not isinstance(server_name, str) or not server_name:
                return None
            name = server_name.lower().rstrip(".")
            context = self._contexts.get(name)
            if context is not None:
                return context
            _, dot, parent = name.partition(".")
            if dot and parent:
                return self._contexts.get("*." + parent)
        except Exception:
            pass
        return None

    def lookup(self, server_name: object) -> SSL.Context:
        """:meth:`find`, falling back to the default certificate's context."""
        context = self.find(server_name)
        return self.default if context is None else context


def build_sni_map(
    listener: ListenerConfig, on_servername: Callable[[SSL.Connection], None]
) -> SNIMap:
    """Load a listener's certificates and build every context.

    Raises :class:`~clbproxy.net.certificates.CertificateError`.
    """
    tls = listener.tls
    entries = listener_certificates(tls)
    loaded = [load_certificate(entry) for entry in entries]
    if tls.client_ca is not None:
        load_bundle(tls.client_ca, "client CA bundle")
    session_id = hashlib.sha256(f"clbproxy:{listener.name}".encode()).digest()[:32]
    contexts: dict[str, SSL.Context] = {}
    built = []
    for certificate in loaded:
        context = server_context(
            certificate, tls, session_id, on_servername, listener_protocols(listener)
        )
        built.append(context)
        for name in certificate.names:
            contexts.setdefault(name, context)
    default = next((i for i, entry in enumerate(entries) if entry.default), 0)
    fingerprints = {context: certificate.fingerprint for context, certificate in zip(built, loaded)}
    return SNIMap(contexts, built[default], loaded, fingerprints)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """A listener's TLS side: makes each connection's ``SSL.Connection``; reloadable."""

    def __init__(self, listener: ListenerConfig) -> None:
        self.listener = listener
        self.map = build_sni_map(listener, self._servername)
        self._refusing = refusing_context(listener.tls)
        #: Connections refused by ``strict_sni`` -> the name they asked for (for the log).
        self.refused: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _servername(self, connection: SSL.Connection) -> None:
        try:
            name = connection.get_servername()
            context = self.map.find(name)
            if context is None:
                if self.listener.tls.strict_sni:
                    self.refused[connection] = name
                    context = self._refusing
                else:
                    context = self.map.default
            connection.set_context(context)
        except Exception:
            log.failure(
                "tls: listener {listener}: SNI callback failed", listener=self.listener.name
            )

    def certificate_for(self, server_name: str) -> Optional[str]:
        """The fingerprint of the certificate a new connection naming ``server_name`` gets.

        None: such a connection would be refused (``strict_sni``).
        """
        context = self.map.find(server_name)
        if context is None:
            if self.listener.tls.strict_sni:
                return None
            context = self.map.default
        return self.map.fingerprints.get(context)

    def authority_check(self, connection: SSL.Connection) -> Callable[[bytes], bool]:
        """Whether a request's authority may be served on ``connection`` (else 421).

        HTTP/2 clients reuse a connection for every name its certificate covers
        (RFC 9113 9.1.1, "coalescing").  A request may be served on it when a new
        connection naming its host would have been given the same certificate;
        otherwise (another certificate, or refused by ``strict_sni``) the answer
        is 421 and the client opens a connection of its own for that name, so
        strict SNI cannot be bypassed.  Answers are kept per connection.
        """
        certificate = connection.get_certificate()
        if certificate is not None and hasattr(certificate, "to_cryptography"):
            certificate = certificate.to_cryptography()
        mine = fingerprint(certificate) if certificate is not None else None
        known: dict[bytes, bool] = {}

        def allowed(authority: bytes) -> bool:
            answer = known.get(authority)
            if answer is None:
                answer = (
                    mine is not None and self.certificate_for(authority_host(authority)) == mine
                )
                if len(known) < _AUTHORITIES_KEPT:
                    known[authority] = answer
            return answer

        return allowed

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return SSL.Connection(self.map.default, None)

    def reload(self, listener: Optional[ListenerConfig] = None) -> None:
        """Load the certificates again (of ``listener`` if given) and swap them in at once.

        New handshakes use the new certificates; open connections keep theirs.  On
        a problem, :class:`~clbproxy.net.certificates.CertificateError` is raised
        and the old ones stay.
        """
        listener = listener or self.listener
        try:
            new_map = build_sni_map(listener, self._servername)
        except CertificateError as e:
            log.error(
                "tls: listener {listener}: reload rejected, old certificates kept: {reason}",
                listener=listener.name,
                reason=str(e),
            )
            raise
        self.map, self.listener = new_map, listener
        self._refusing = refusing_context(listener.tls)
        log_certificates(listener.name, new_map, "reloaded")


def authority_host(authority: bytes) -> str:
    """The host of an authority (``name[:port]`` or ``[v6][:port]``), as SNI would name it."""
    text = authority.decode("ascii", "replace").lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    host, colon, port = text.rpartition(":")
    return host if colon and port.isdigit() else text


def log_certificates(listener: str, sni_map: SNIMap, verb: str = "loaded") -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    for loaded in sni_map.certificates:
        log.info(
            "tls: listener {listener}: {verb} certificate {file} for {names}, "
            "SHA-256 fingerprint {fingerprint}, valid until {not_after}",
            listener=listener,
            verb=verb,
            file=loaded.config.cert,
            names=", ".join(loaded.names),
            fingerprint=loaded.fingerprint,
            not_after=f"{loaded.leaf.not_valid_after_utc:%Y-%m-%d}",
        )
        if loaded.expired(now):
            log.warn(
                "tls: listener {listener}: certificate {file} has expired",
                listener=listener,
                file=loaded.config.cert,
            )


def _looks_like_plain_http(data: bytes) -> bool:
    """True when the first bytes of a connection start with a letter (``GET /``...).

    A TLS record starts with its content type (20-24) and an SSLv2 hello with a
    byte of 0x80 or more, so a letter is never TLS.
    """
    first = data[:1]
    return first.isalpha() and first.isascii()


class _LoggedTLSProtocol(TLSMemoryBIOProtocol):
    """One client's TLS: answers plain HTTP with 400 and logs every unfinished handshake.

    One info line says why a handshake did not complete: OpenSSL's reason (old
    protocol version, no shared cipher, not TLS...), ``strict_sni`` refusing the
    name, the client closing, or the proxy closing it (``header_timeout`` or a
    shutdown).  A connection that closes without sending a byte (a TCP health
    check) is not logged.
    """

    _plain_http = False
    _closed_by_proxy = False
    _received = 0
    _opened_at = 0.0

    def makeConnection(self, transport) -> None:
        self._opened_at = self.factory.reactor.seconds()
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if self._plain_http:
            return
        if not self._received and _looks_like_plain_http(data):
            self._answer_plain_http()
            return
        self._received += len(data)
        super().dataReceived(data)

    def _answer_plain_http(self) -> None:
        self._plain_http = True
        log.info(
            "tls: listener {listener}: {peer} sent plain HTTP to the HTTPS port: 400",
            listener=self.factory.listener_name,
            peer=self._peer(),
        )
        self.transport.write(raw_error_response(400, PLAIN_HTTP_DETAIL))
        self.transport.loseConnection()

    def loseConnection(self) -> None:
        if not self._handshakeDone:
            self._closed_by_proxy = True
        super().loseConnection()

    def abortConnection(self) -> None:
        if not self._handshakeDone:
            self._closed_by_proxy = True
        super().abortConnection()

    def _peer(self):
        peer = self.transport.getPeer() if self.transport is not None else None
        return getattr(peer, "host", peer)

    def connectionLost(self, reason) -> None:
        failure = self._reason or reason
        if not self._handshakeDone and not self._plain_http:
            self._log_unfinished(failure)
        elif self._handshakeDone and failure is not None and failure.check(SSL.Error):
            # A fatal alert or a broken record after the handshake (a refused
            # renegotiation ends so).
            log.info(
                "tls: listener {listener}: TLS error from {peer} after the handshake: {reason}",
                listener=self.factory.listener_name,
                peer=self._peer(),
                reason=describe_tls_error(failure.value),
            )
        super().connectionLost(reason)

    def _log_unfinished(self, failure) -> None:
        listener, peer = self.factory.listener_name, self._peer()
        refused = self.factory.server_tls.refused.get(self._tlsConnection, False)
        if refused is not False:
            log.info(
                "tls: listener {listener}: handshake with {peer} refused: "
                "no certificate for server name {name} (strict_sni)",
                listener=listener,
                peer=peer,
                name=repr(refused.decode("ascii", "replace")) if refused else "(none sent)",
            )
        elif failure is not None and failure.check(SSL.Error):
            log.info(
                "tls: listener {listener}: handshake with {peer} failed: {reason}",
                listener=listener,
                peer=peer,
                reason=describe_tls_error(failure.value),
            )
        elif self._closed_by_proxy:
            log.info(
                "tls: listener {listener}: closed the connection from {peer}: no completed "
                "handshake after {seconds:.1f} s (header_timeout {timeout:g} s)",
                listener=listener,
                peer=peer,
                seconds=self.factory.reactor.seconds() - self._opened_at,
                timeout=self.factory.wrappedFactory.listener.header_timeout,
            )
        elif self._received:
            log.info(
                "tls: listener {listener}: {peer} closed the connection during the "
                "handshake after sending {count} byte(s)",
                listener=listener,
                peer=peer,
                count=self._received,
            )


def describe_tls_error(error: SSL.Error) -> str:
    """OpenSSL's reasons in an ``SSL.Error``, like ``unsupported protocol``."""
    reasons = []
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(item, tuple) and item:
            reasons.append(str(item[-1]))
    return "; ".join(reasons) or str(error) or "TLS error"


class _ListenerTLSFactory(TLSMemoryBIOFactory):
    """TLS around a listener's Site that leaves protocol negotiation to our contexts.

    Twisted up to 25.5 applied the wrapped factory's ``acceptableProtocols()``
    (a ``Site`` offers ``h2`` whenever the ``h2`` package is importable) to the
    context of every new connection.  That replaced our ALPN callback on the
    default context only, and from pyOpenSSL 26.2 on it fails every handshake:
    a context that has made a connection can no longer be changed
    (twisted#12500, #12639).  Every context of ours already carries the
    listener's ALPN policy, so there is nothing to apply; Twisted 26.4 and later
    no longer call this at all.
    """

    protocol = _LoggedTLSProtocol

    def _applyProtocolNegotiation(self, connection: SSL.Connection) -> None:
        pass


def tls_factory(server_tls: ServerTLS, wrapped, reactor) -> TLSMemoryBIOFactory:
    """``wrapped`` (the listener's Site) behind TLS, logging failed handshakes."""
    factory = _ListenerTLSFactory(server_tls, False, wrapped)
    factory.listener_name = server_tls.listener.name
    factory.server_tls = server_tls
    factory.reactor = reactor
    return factory


def server_tls(listener: ListenerConfig) -> ServerTLS:
    """A listener's :class:`ServerTLS`, generating the self-signed certificate if asked for."""
    if listener.tls.self_signed:
        directory = os.path.abspath(listener.tls.state_directory)
        if ensure_self_signed(directory):
            log.info(
                "tls: listener {listener}: generated a self-signed certificate in {directory}",
                listener=listener.name,
                directory=directory,
            )
    created = ServerTLS(listener)
    log_certificates(listener.name, created.map)
    return created
