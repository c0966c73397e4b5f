"""TLS termination for HTTPS listeners, and TLS towards backends.

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

Towards backends, target groups with ``scheme = "wss"``/``"https"`` connect
through ``wrapClientTLS(optionsForClientTLS(...), HostnameEndpoint(...))``, with
hostname verification by ``service_identity`` (imported here, so a missing
install fails at start instead of silently weakening verification).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import os
import re
import weakref
from typing import Callable, Iterable, Mapping, Optional

import attrs
import service_identity  # noqa: F401  (hard requirement: Twisted's hostname verification)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from clbproxy.config import (
    BackendConfig,
    CertificateConfig,
    Config,
    ListenerConfig,
    TargetGroupConfig,
    TLSConfig,
)
from clbproxy.http.responses import raw_error_response
from clbproxy.net.endpoints import backend_endpoint

log = Logger()

#: Headers carrying a verified client certificate to the backend.  Client-sent
#: copies are always dropped (they are in :data:`clbproxy.http.forwarded.FORWARDING_HEADERS`).
CLIENT_SUBJECT_HEADER = "X-Client-Cert-Subject"
CLIENT_FINGERPRINT_HEADER = "X-Client-Cert-Fingerprint"

_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
_ALPN = b"http/1.1"
#: How long the generated self-signed certificate is valid; it is renewed once expired.
_SELF_SIGNED_DAYS = 365
_SELF_SIGNED_CERT = "selfsigned-cert.pem"
_SELF_SIGNED_KEY = "selfsigned-key.pem"
#: The answer to a plain HTTP request on an HTTPS port, in nginx's words.
PLAIN_HTTP_DETAIL = "The plain HTTP request was sent to HTTPS port"


class CertificateError(Exception):
    """A certificate cannot be used; the message names the file and says why."""


# -- certificates -------------------------------------------------------------------------


@attrs.frozen
class LoadedCertificate:
    """A certificate chain and its key, read and checked, ready to build a context."""

    config: CertificateConfig
    chain: tuple[x509.Certificate, ...]
    key: object
    names: tuple[str, ...]
    ocsp: Optional[bytes] = None

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.leaf)

    def expired(self, now: datetime.datetime) -> bool:
        return self.leaf.not_valid_after_utc < now


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of a certificate as lower-case hex without colons."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def certificate_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of the subjectAltName, lower-cased (``*.example.com`` kept as is)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    names = []
    for name in san.value.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as e:
        raise CertificateError(f"{what} {path}: cannot read: {e.strerror or e}") from None


def load_certificate(entry: CertificateConfig) -> LoadedCertificate:
    """Read and check one certificate entry; raises :class:`CertificateError`."""
    data = _read(entry.cert, "certificate")
    try:
        chain = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise CertificateError(
            f"certificate {entry.cert}: no PEM certificate in the file"
        ) from None
    password = None
    if entry.passphrase_file is not None:
        lines = _read(entry.passphrase_file, "passphrase file").splitlines()
        password = lines[0] if lines else b""
    key_data = _read(entry.key, "key")
    try:
        key = serialization.load_pem_private_key(key_data, password=password)
    except TypeError:
        if password is None:
            raise CertificateError(
                f"key {entry.key}: the key is encrypted; give its passphrase_file"
            ) from None
        raise CertificateError(f"key {entry.key}: the key is not encrypted") from None
    except ValueError:
        if password is not None:
            raise CertificateError(
                f"key {entry.key}: wrong passphrase (from {entry.passphrase_file}) "
                "or not a PEM private key"
            ) from None
        raise CertificateError(f"key {entry.key}: not a PEM private key") from None
    except Exception as e:
        raise CertificateError(f"key {entry.key}: unusable key: {e}") from None
    if _public_bytes(key.public_key()) != _public_bytes(chain[0].public_key()):
        raise CertificateError(f"key {entry.key} does not match the certificate {entry.cert}")
    names = certificate_names(chain[0])
    if not names:
        raise CertificateError(f"certificate {entry.cert} has no DNS names in its subjectAltName")
    ocsp = None
    if entry.ocsp_response is not None:
        ocsp = _read(entry.ocsp_response, "OCSP response")
        if not ocsp:
            raise CertificateError(f"OCSP response {entry.ocsp_response} is empty")
    return LoadedCertificate(config=entry, chain=chain, key=key, names=names, ocsp=ocsp)


def _public_bytes(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_bundle(path: str, what: str) -> tuple[x509.Certificate, ...]:
    data = _read(path, what)
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise CertificateError(f"{what} {path}: no PEM certificate in the file") from None


def self_signed_paths(directory: str) -> tuple[str, str]:
    """The certificate and key files :func:`ensure_self_signed` writes in ``directory``."""
    return os.path.join(directory, _SELF_SIGNED_CERT), os.path.join(directory, _SELF_SIGNED_KEY)


def listener_certificates(tls: TLSConfig) -> tuple[CertificateConfig, ...]:
    """The certificate entries a listener serves (the generated ones for ``self_signed``)."""
    if tls.self_signed:
        cert, key = self_signed_paths(os.path.abspath(tls.state_directory))
        return (CertificateConfig(cert=cert, key=key, default=True),)
    return tls.certificates


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
                _load_bundle(group.ca_file, "ca_file")
            except CertificateError as e:
                problems.append(f"{where}: {e}")
        if group.tls and not group.verify:
            warnings.append(f"{where}: verify = false: backend certificates are not checked")
    return problems, warnings


#: OpenSSL's names of the kinds of cipher a listener must never offer: no encryption,
#: no authentication (anyone in the middle), or broken algorithms.
WEAK_CIPHER_KINDS = ("eNULL", "aNULL", "EXPORT", "RC4", "DES", "3DES", "MD5")

_SECLEVEL = re.compile(r"@SECLEVEL=([0-9]+)", re.IGNORECASE)


def _enabled_ciphers(ciphers: str) -> list[str]:
    """The TLS 1.2 and older ciphers OpenSSL enables for the string ``ciphers``, in order.

    TLS 1.3 suites are left out: a cipher string does not choose them, and all
    of them are sound.  An unusable string enables nothing (building the
    listener's context reports it).
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    try:
        context.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        return []
    names = SSL.Connection(context, None).get_cipher_list()
    return [name for name in names if not name.startswith("TLS_")]


@functools.cache
def _weak_ciphers() -> dict[str, frozenset[str]]:
    """Every cipher of each weak kind this OpenSSL has (kinds it lacks are empty)."""
    return {kind: frozenset(_enabled_ciphers(f"{kind}:@SECLEVEL=0")) for kind in WEAK_CIPHER_KINDS}


def weak_cipher_problem(ciphers: str) -> Optional[str]:
    """Why the cipher string ``ciphers`` must be refused, or ``None`` if it is sound.

    The ciphers are the ones OpenSSL itself enables for the string (aliases,
    ``!`` and ``-`` exclusions and all), compared with the ciphers of each weak
    kind; ``@SECLEVEL=0`` is refused as written, since it lets weak keys and
    algorithms through whatever the list says.
    """
    kinds = []
    enabled = _enabled_ciphers(ciphers)
    for kind, weak in _weak_ciphers().items():
        found = [name for name in enabled if name in weak]
        if found:
            more = f" and {len(found) - 2} more" if len(found) > 2 else ""
            kinds.append(f"{kind} ({', '.join(found[:2])}{more})")
    reasons = [f"it enables {', '.join(kinds)}"] if kinds else []
    if any(int(level) < 1 for level in _SECLEVEL.findall(ciphers)):
        reasons.append("it sets @SECLEVEL=0, which turns off OpenSSL's key and algorithm checks")
    if not reasons:
        return None
    return (
        f"{ciphers!r} is unsafe: {'; '.join(reasons)}; exclude them (append "
        "':!aNULL:!eNULL:!MD5', no @SECLEVEL=0) or leave ciphers out for the default"
    )


def ensure_self_signed(directory: str, now: Optional[datetime.datetime] = None) -> bool:
    """Create the demo certificate for localhost in ``directory`` unless a valid one is there.

    Returns True when a new certificate was written.  The key file is readable by
    its owner only.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    cert_path, key_path = self_signed_paths(directory)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        try:
            with open(cert_path, "rb") as stream:
                existing = x509.load_pem_x509_certificate(stream.read())
            if existing.not_valid_after_utc > now:
                return False
        except (OSError, ValueError):
            pass
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clbproxy self-signed")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_SELF_SIGNED_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(key_pem)
    with open(cert_path, "wb") as stream:
        stream.write(certificate.public_bytes(serialization.Encoding.PEM))
    return True


# -- server contexts ----------------------------------------------------------------------


def _select_alpn(connection: SSL.Connection, offered: list[bytes]):
    """Speak HTTP/1.1 only; a client offering only h2 gets no ALPN rather than an alert."""
    return _ALPN if _ALPN in offered else SSL.NO_OVERLAPPING_PROTOCOLS


def _verify_client(connection, certificate, errno, depth, ok) -> bool:
    return bool(ok)


def server_context(
    loaded: LoadedCertificate,
    tls: TLSConfig,
    session_id: bytes,
    on_servername: Callable[[SSL.Connection], None],
) -> SSL.Context:
    """One certificate's context with the listener's whole TLS policy.

    Raises :class:`CertificateError` for a policy OpenSSL rejects (cipher list,
    client CA bundle).
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
    context.set_alpn_select_callback(_select_alpn)
    context.set_tlsext_servername_callback(on_servername)
    if loaded.ocsp is not None:
        staple = loaded.ocsp
        context.set_ocsp_server_callback(lambda connection, data: staple)
    if tls.client_ca is not None:
        authorities = _load_bundle(tls.client_ca, "client CA bundle")
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
    ) -> None:
        self._contexts = dict(contexts)
        self.default = default
        self.certificates = tuple(certificates)

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
    """Load a listener's certificates and build every context; raises :class:`CertificateError`."""
    tls = listener.tls
    entries = listener_certificates(tls)
    loaded = [load_certificate(entry) for entry in entries]
    if tls.client_ca is not None:
        _load_bundle(tls.client_ca, "client CA bundle")
    session_id = hashlib.sha256(f"clbproxy:{listener.name}".encode()).digest()[:32]
    contexts: dict[str, SSL.Context] = {}
    built = []
    for certificate in loaded:
        context = server_context(certificate, tls, session_id, on_servername)
        built.append(context)
        for name in certificate.names:
            contexts.setdefault(name, context)
    default = next((i for i, entry in enumerate(entries) if entry.default), 0)
    return SNIMap(contexts, built[default], loaded)


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

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return SSL.Connection(self.map.default, None)

    def reload(self, listener: Optional[ListenerConfig] = None) -> None:
        """Load the certificates again (of ``listener`` if given) and swap them in at once.

        New handshakes use the new certificates; open connections keep theirs.  On
        a problem, :class:`CertificateError` is raised and the old ones stay.
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


def client_certificate_headers(transport) -> list[tuple[str, str]]:
    """The verified client certificate's subject and fingerprint headers, if there is one."""
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return []
    try:
        peer = get()
    except Exception:
        return []
    if peer is None:
        return []
    certificate = peer.to_cryptography() if hasattr(peer, "to_cryptography") else peer
    return [
        (CLIENT_SUBJECT_HEADER, certificate.subject.rfc4514_string()),
        (CLIENT_FINGERPRINT_HEADER, fingerprint(certificate)),
    ]


# -- backends -----------------------------------------------------------------------------


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
        authorities = _load_bundle(group.ca_file, "CA bundle")
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
