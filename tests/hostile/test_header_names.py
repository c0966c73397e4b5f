"""Header names a client uses to pass itself off as the proxy, over real sockets.

WSGI, CGI and Rack backends read ``X_Real_IP`` and ``X-Real-IP`` as the same
``HTTP_X_REAL_IP``; a ``Connection`` header may name any header as hop-by-hop;
``Forwarded`` (RFC 7239) says who the client is as X-Forwarded-* does.  Each
case sends one request, plain HTTP or a WebSocket upgrade, to a listener in
front of a backend that records the request head it receives (and answers 200,
which the relay passes back as a refusal of the upgrade), and checks what the
backend saw.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from clbproxy.config import RuleConfig
from tests.integration.support import Listening, raw_request

#: Underscore spellings of every header the proxy sets itself.
OUR_HEADERS_SPELLED_WITH_UNDERSCORES = (
    "X_Real_IP",
    "X_Forwarded_For",
    "X_Forwarded_Proto",
    "X_Forwarded_Host",
    "X-Forwarded_Port",
    "X_Client_Cert_Subject",
    "x_client_cert_fingerprint",
    "X-Client_Cert-Subject",
)

_UPGRADE = (
    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)


class _Recorder(Protocol):
    """Keeps the request head it receives and answers a small 200, then closes."""

    def connectionMade(self) -> None:
        self._data = b""

    def dataReceived(self, data: bytes) -> None:
        self._data += data
        end = self._data.find(b"\r\n\r\n")
        if end < 0 or getattr(self, "_answered", False):
            return
        self._answered = True
        self.factory.heads.append(self._data[:end].decode("latin-1"))
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        self.transport.loseConnection()


def header_values(head: str, name: str) -> list[str]:
    """Every value of ``name`` (case-insensitive, exact spelling otherwise) in a request head."""
    values = []
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.lower() == name.lower():
            values.append(value.strip())
    return values


def header_names(head: str) -> list[str]:
    return [line.partition(":")[0] for line in head.split("\r\n")[1:]]


class _HeaderNamesBase(TestCase):
    """One listener and a recording backend per test; ``listener`` holds its settings."""

    timeout = 30
    listener: dict = {}
    upgrade = False

    async def setUp(self) -> None:
        factory = Factory.forProtocol(_Recorder)
        factory.heads = []
        self.heads = factory.heads
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        self.net = Listening(self)
        self.port = await self.net.proxy([port.getHost().port], **self.listener)

    async def backend_head(
        self, headers: bytes, *, host: bytes = b"a.test", connection: bytes = b""
    ) -> str:
        """Send one request with ``headers`` (CRLF-terminated lines); the head the backend got.

        ``connection``: more tokens for the ``Connection`` header, after ``Upgrade``
        (an upgrade) or before ``close`` (twisted.web reads ``close`` only as a
        space-separated word).
        """
        if self.upgrade:
            connection = b"Upgrade, " + connection if connection else b"Upgrade"
        else:
            connection = connection + b", close" if connection else b"close"
        request = b"GET /p HTTP/1.1\r\nHost: " + host + b"\r\nConnection: " + connection + b"\r\n"
        if self.upgrade:
            request += _UPGRADE
        response = await raw_request(self.port, request + headers + b"\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:300])
        self.assertEqual(len(self.heads), 1, "the request did not reach the backend once")
        return self.heads[0]


class _UnderscoreCases:
    """F4: underscore spellings of the proxy's headers never reach a backend."""

    async def test_underscore_spellings_of_our_headers_never_reach_the_backend(self) -> None:
        lines = b"".join(
            name.encode() + b": forged\r\n" for name in OUR_HEADERS_SPELLED_WITH_UNDERSCORES
        )
        head = await self.backend_head(lines)
        self.assertNotIn("forged", head)
        self.assertEqual(header_values(head, "X-Real-IP"), ["127.0.0.1"])
        self.assertEqual(header_values(head, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(header_values(head, "X-Forwarded-Host"), ["a.test"])
        self.assertEqual(header_values(head, "X-Client-Cert-Subject"), [])

    async def test_other_names_with_an_underscore_are_dropped_by_default(self) -> None:
        head = await self.backend_head(b"X_Custom: 1\r\nX-Custom: 2\r\nmy_header: 3\r\n")
        self.assertEqual(header_values(head, "X-Custom"), ["2"])
        self.assertEqual([name for name in header_names(head) if "_" in name], [])


class UnderscoreHTTPTests(_UnderscoreCases, _HeaderNamesBase):
    pass


class UnderscoreUpgradeTests(_UnderscoreCases, _HeaderNamesBase):
    upgrade = True


class _UnderscoresAllowedCases:
    """``underscores_in_headers = true`` passes other names, never the proxy's own."""

    listener = {
        "underscores_in_headers": True,
        "rules": (
            RuleConfig(
                target_group="pool", set_headers=(("X-Role", "guest"),), remove_headers=("x-user",)
            ),
        ),
    }

    async def test_other_names_with_an_underscore_pass(self) -> None:
        head = await self.backend_head(b"X_Custom: 1\r\n")
        self.assertEqual(header_values(head, "X_Custom"), ["1"])

    async def test_our_headers_spelled_with_underscores_are_still_dropped(self) -> None:
        lines = b"".join(
            name.encode() + b": forged\r\n" for name in OUR_HEADERS_SPELLED_WITH_UNDERSCORES
        )
        head = await self.backend_head(lines)
        self.assertNotIn("forged", head)

    async def test_the_rules_set_and_removed_headers_spelled_with_underscores_are_dropped(
        self,
    ) -> None:
        head = await self.backend_head(b"X_Role: admin\r\nX_User: root\r\n")
        self.assertNotIn("admin", head)
        self.assertNotIn("root", head)
        self.assertEqual(header_values(head, "X-Role"), ["guest"])


class UnderscoresAllowedHTTPTests(_UnderscoresAllowedCases, _HeaderNamesBase):
    pass


class UnderscoresAllowedUpgradeTests(_UnderscoresAllowedCases, _HeaderNamesBase):
    upgrade = True


class _ConnectionNominationCases:
    """F9: ``Connection`` cannot nominate away an end-to-end header the proxy relies on."""

    listener = {"trusted_proxies": ("127.0.0.0/8",)}

    async def test_connection_naming_host_keeps_the_clients_host(self) -> None:
        for connection in (b"Host", b"keep-alive,host", b"HOST , x-private"):
            self.heads.clear()
            head = await self.backend_head(b"", host=b"app.test:8080", connection=connection)
            self.assertEqual(header_values(head, "Host"), ["app.test:8080"], connection)

    async def test_connection_naming_forwarding_headers_keeps_them(self) -> None:
        head = await self.backend_head(
            b"Forwarded: for=192.0.2.1\r\nX-Forwarded-Proto: https\r\n",
            connection=b"Forwarded, X-Forwarded-Proto, X-Real-IP, X-Forwarded-For",
        )
        self.assertEqual(header_values(head, "Forwarded"), ["for=192.0.2.1"])
        self.assertEqual(header_values(head, "X-Forwarded-Proto"), ["https"])
        self.assertEqual(header_values(head, "X-Real-IP"), ["127.0.0.1"])
        self.assertEqual(header_values(head, "X-Forwarded-For"), ["127.0.0.1"])

    async def test_connection_still_drops_the_other_headers_it_names(self) -> None:
        head = await self.backend_head(
            b"X-Private: 1\r\nX-Public: 2\r\n",
            connection=b"X-Private",
        )
        self.assertEqual(
            (header_values(head, "X-Private"), header_values(head, "X-Public")), ([], ["2"])
        )


class ConnectionNominationHTTPTests(_ConnectionNominationCases, _HeaderNamesBase):
    pass


class ConnectionNominationUpgradeTests(_ConnectionNominationCases, _HeaderNamesBase):
    upgrade = True


class _ForwardedCases:
    """F12 (a): ``Forwarded`` counts only from a trusted peer, as ``X-Forwarded-*`` does."""

    async def test_an_untrusted_peers_forwarded_header_is_dropped(self) -> None:
        head = await self.backend_head(
            b"Forwarded: for=192.0.2.1;proto=https\r\nforwarded: host=evil.test\r\n"
        )
        self.assertEqual(header_values(head, "Forwarded"), [])


class _TrustedForwardedCases:
    listener = {"trusted_proxies": ("127.0.0.0/8",)}

    async def test_a_trusted_peers_forwarded_header_is_kept(self) -> None:
        head = await self.backend_head(b"Forwarded: for=192.0.2.1;proto=https\r\n")
        self.assertEqual(header_values(head, "Forwarded"), ["for=192.0.2.1;proto=https"])


class ForwardedHTTPTests(_ForwardedCases, _HeaderNamesBase):
    pass


class ForwardedUpgradeTests(_ForwardedCases, _HeaderNamesBase):
    upgrade = True


class TrustedForwardedHTTPTests(_TrustedForwardedCases, _HeaderNamesBase):
    pass


class TrustedForwardedUpgradeTests(_TrustedForwardedCases, _HeaderNamesBase):
    upgrade = True
