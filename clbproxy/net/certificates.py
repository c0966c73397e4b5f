"""Certificate files and the checks made on a listener's TLS settings before use.

What :mod:`clbproxy.net.tls` (server contexts) and :mod:`clbproxy.net.tls_client`
(backend TLS) share about certificates lives here: reading a certificate chain
and its key, with a message naming the file for each way they can be unusable
(:class:`CertificateError`); fingerprints and subjectAltName names; CA bundles;
the cipher-string check that refuses weak ciphers; the self-signed demo
certificate for ``self_signed`` listeners; and the headers that carry a verified
client certificate to the backend.  None of it builds an OpenSSL context, so the
preflight and the configuration checks can use it without the server side.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import re
from typing import Optional

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from clbproxy.config import CertificateConfig, TLSConfig

#: Headers carrying a verified client certificate to the backend.  Client-sent
#: copies are always dropped (they are in :data:`clbproxy.http.forwarded.FORWARDING_HEADERS`).
CLIENT_SUBJECT_HEADER = "X-Client-Cert-Subject"
CLIENT_FINGERPRINT_HEADER = "X-Client-Cert-Fingerprint"

#: How long the generated self-signed certificate is valid; it is renewed once expired.
_SELF_SIGNED_DAYS = 365
_SELF_SIGNED_CERT = "selfsigned-cert.pem"
_SELF_SIGNED_KEY = "selfsigned-key.pem"


class CertificateError(Exception):
    """A certificate cannot be used; the message names the file and says why."""


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


def load_bundle(path: str, what: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM bundle (``what`` names it in errors); raises CertificateError."""
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
