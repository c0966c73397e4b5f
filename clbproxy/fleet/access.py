"""How an instance proves itself to etcd: a user and password, a TLS client certificate.

etcd with authentication enabled wants a token in the ``Authorization``
header of every gateway call; ``POST /v3/auth/authenticate`` gives one for a
user name and password.  A token expires (``--auth-token-ttl``, 300 s by
default for ``simple`` tokens, and a member forgets them when it restarts):
etcd then answers a call with HTTP 401 and ``{"code": 16, "error": "etcdserver:
invalid auth token"}``, and a watch with a line that is ``created`` *and*
``canceled``, its ``cancel_reason`` naming the invalid token, the stream left
open.  Both clients (:mod:`~clbproxy.fleet.gateway`, :mod:`~clbproxy.fleet.blocking`)
then authenticate again and retry once.

:class:`Access` is read from ``[fleet]`` by :func:`access_of`; the password
lives in its own file (``password_file``, first line) so tap.conf can be
shown and versioned without it.
"""

from __future__ import annotations

import ssl as stdlib_ssl
from typing import Any, Optional

import attrs
from twisted.internet import ssl
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from clbproxy.config.machine import FleetConfig
from clbproxy.config.model import ConfigError

#: What etcd says of a token it does not know (expired, or issued before a restart).
INVALID_TOKEN = "invalid auth token"


@attrs.frozen
class Access:
    """Credentials and TLS files for etcd; all optional."""

    username: Optional[str] = None
    password: Optional[str] = attrs.field(default=None, repr=False)
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None

    @property
    def authenticates(self) -> bool:
        return self.username is not None

    def authenticate_request(self) -> dict:
        return {"name": self.username, "password": self.password or ""}


def read_password(path: str, what: str = "password_file") -> str:
    """The first line of ``path``; raises ``ConfigError`` with one line."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError([f"{what}: cannot read {path}: {reason}"]) from None
    return line.rstrip("\r\n")


def access_of(fleet: FleetConfig) -> Access:
    """The :class:`Access` of a ``[fleet]`` table (reads ``password_file``)."""
    password = None
    if fleet.password_file is not None:
        password = read_password(fleet.password_file, "fleet.password_file")
    return Access(
        username=fleet.username,
        password=password,
        ca_file=fleet.ca_file,
        cert_file=fleet.cert_file,
        key_file=fleet.key_file,
    )


def is_invalid_token(text: Any) -> bool:
    """Whether an error text (or a watch's ``cancel_reason``) says the token is not valid."""
    return isinstance(text, str) and INVALID_TOKEN in text


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise ConfigError([f"fleet.{what}: cannot read {path}: {error.strerror}"]) from None


@implementer(IPolicyForHTTPS)
class EtcdTLSPolicy:
    """treq's TLS for https endpoints: ``ca_file`` (else the system's CAs), and the
    client certificate if one is set.  Built once; the host name (or IP address)
    of the endpoint is verified."""

    def __init__(self, access: Access) -> None:
        self._trust = ssl.platformTrust()
        if access.ca_file is not None:
            pem = _read(access.ca_file, "ca_file")
            try:
                self._trust = ssl.Certificate.loadPEM(pem)
            except Exception as error:
                raise ConfigError([f"fleet.ca_file: {access.ca_file}: {error}"]) from None
        self._client = None
        if access.cert_file is not None and access.key_file is not None:
            pem = _read(access.cert_file, "cert_file") + b"\n" + _read(access.key_file, "key_file")
            try:
                self._client = ssl.PrivateCertificate.loadPEM(pem)
            except Exception as error:
                raise ConfigError(
                    [f"fleet.cert_file: {access.cert_file} with {access.key_file}: {error}"]
                ) from None

    def creatorForNetloc(self, hostname: bytes, port: int):
        name = hostname.decode("ascii") if isinstance(hostname, bytes) else hostname
        if self._client is not None:
            return ssl.optionsForClientTLS(
                name, trustRoot=self._trust, clientCertificate=self._client
            )
        return ssl.optionsForClientTLS(name, trustRoot=self._trust)


def tls_policy(access: Access) -> IPolicyForHTTPS:
    """The TLS policy of the reactor's gateway client."""
    if access.ca_file is None and access.cert_file is None:
        return BrowserLikePolicyForHTTPS()
    return EtcdTLSPolicy(access)


def ssl_context(access: Access) -> stdlib_ssl.SSLContext:
    """The same for the blocking client (``urllib``)."""
    try:
        context = stdlib_ssl.create_default_context(cafile=access.ca_file)
        if access.cert_file is not None and access.key_file is not None:
            context.load_cert_chain(access.cert_file, access.key_file)
    except (OSError, stdlib_ssl.SSLError) as error:
        raise ConfigError([f"fleet: etcd TLS files: {error}"]) from None
    return context
