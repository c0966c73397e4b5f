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
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from clbproxy.config import FixedResponseConfig, RedirectConfig, RuleConfig
from tests.support.network import Listening, raw_request

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
    """Keeps the request head it receives and answers ``factory.answer``, then closes.

    A tuple answer is written in two parts, 0.3 s apart.
    """

    def connectionMade(self) -> None:
        self._data = b""

    def dataReceived(self, data: bytes) -> None:
        self._data += data
        end = self._data.find(b"\r\n\r\n")
        if end < 0 or getattr(self, "_answered", False):
            return
        self._answered = True
        self.factory.heads.append(self._data[:end].decode("latin-1"))
        answer = self.factory.answer
        if isinstance(answer, tuple):  # the first part now, the rest a moment later
            self.transport.write(answer[0])
            reactor.callLater(0.3, self._end, answer[1])
        else:
            self._end(answer)

    def _end(self, data: bytes) -> None:
        self.transport.write(data)
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
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    async def setUp(self) -> None:
        factory = Factory.forProtocol(_Recorder)
        factory.heads = []
        factory.answer = self.answer
        self.backend = factory
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


def response_head(response: bytes) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers of the first response in ``response``."""
    lines = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    return status, [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


def get(target: bytes = b"/", method: bytes = b"GET", extra: bytes = b"") -> bytes:
    """A request for ``target`` that closes its connection (or ``extra`` says how)."""
    connection = extra or b"Connection: close\r\n"
    return method + b" " + target + b" HTTP/1.1\r\nHost: a.test\r\n" + connection + b"\r\n"


_UPGRADE_HEADERS = b"Connection: Upgrade\r\n" + _UPGRADE


class TraceTests(_HeaderNamesBase):
    """F12 (e): TRACE is answered 405 with ``Allow`` by the proxy, never forwarded."""

    listener = {
        "rules": (
            RuleConfig(fixed_response=FixedResponseConfig(200, "fixed"), path="/fixed"),
            RuleConfig(target_group="pool", path="/"),
        )
    }

    async def test_trace_is_405_with_allow_and_never_reaches_the_backend(self) -> None:
        requests = [
            get(method=b"TRACE"),
            b"TRACE /p?q HTTP/1.0\r\nHost: a.test\r\nCookie: s=1\r\n\r\n",
            get(b"http://a.test/p", method=b"TRACE"),
            get(b"/fixed", method=b"TRACE"),
            get(b"/p", method=b"TRACE", extra=_UPGRADE_HEADERS),
        ]
        answers = []
        for request in requests:
            status, headers = response_head(await raw_request(self.port, request))
            answers.append((status, values(headers, "Allow")))
        allow = ["GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"]
        self.assertEqual(answers, [(405, allow)] * len(requests))
        self.assertEqual(self.heads, [])

    async def test_a_trace_refusal_is_logged_and_access_logged(self) -> None:
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        await raw_request(self.port, get(b"/t", method=b"TRACE"))
        self.assertIn(
            "127.0.0.1 TRACE /t: 405 TRACE is not allowed",
            [formatEvent(e).partition(" request_id=")[0] for e in events],
        )
        access = [e for e in events if e.get("log_namespace") == "clbproxy.access"]
        self.assertEqual(
            [(e["method"], e["path"], e["status"]) for e in access], [("TRACE", "/t", 405)]
        )

    async def test_other_methods_still_reach_the_backend(self) -> None:
        for method in (b"GET", b"PURGE", b"trace"):
            response = await raw_request(self.port, get(method=method))
            self.assertEqual(response_head(response)[0], 200, method)
        self.assertEqual(len(self.heads), 3)


class ServerHeaderTests(_HeaderNamesBase):
    """F12 (d): the proxy's own answers say ``Server: clbproxy``; a backend's are its own."""

    listener = {
        "rules": (
            RuleConfig(fixed_response=FixedResponseConfig(200, "fixed"), path="/fixed"),
            RuleConfig(redirect=RedirectConfig("https://$host$request_uri"), path="/moved"),
            RuleConfig(target_group="pool", path="/"),
        )
    }

    async def server_of(self, request: bytes) -> list[str]:
        return values(response_head(await raw_request(self.port, request))[1], "Server")

    async def test_the_proxys_own_answers_say_clbproxy(self) -> None:
        requests = [
            get(b"/fixed"),
            get(b"/moved"),
            get(method=b"TRACE"),
            get(b"*", method=b"OPTIONS"),
            get(b"/fixed", extra=_UPGRADE_HEADERS),
        ]
        servers = [await self.server_of(request) for request in requests]
        self.assertEqual(servers, [["clbproxy"]] * len(requests))

    async def test_no_answer_names_twisted(self) -> None:
        requests = [
            get(b"/fixed"),
            get(),
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            get(extra=_UPGRADE_HEADERS),
        ]
        for request in requests:
            response = await raw_request(self.port, request)
            self.assertNotIn(b"Twisted", response.split(b"\r\n\r\n")[0], request)

    async def test_a_backend_answer_without_server_has_none(self) -> None:
        self.assertEqual(await self.server_of(get()), [])


class BackendServerHeaderTests(_HeaderNamesBase):
    answer = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    )

    async def test_a_backends_server_header_is_relayed_unchanged(self) -> None:
        for request in (get(), get(extra=_UPGRADE_HEADERS)):
            response = await raw_request(self.port, request)
            self.assertEqual(values(response_head(response)[1], "Server"), ["nginx/1.2"])


#: Chunk size lines ``int(x, 16)`` would take: RFC 9112 allows only 1*HEXDIG.
BAD_CHUNK_SIZES = (b"-1", b"0x1", b"1_0", b" 1", b"+1", b"1 ", b"0" * 17 + b"1", b"1\x00")


def chunked_answer(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + body
    )


class BackendChunkSizeTests(_HeaderNamesBase):
    """F12 (f): a backend's chunked body is held to RFC 9112: anything else is a 502."""

    async def answer_to(self, request: bytes, body: bytes, later: bytes = b"") -> bytes:
        answer = chunked_answer(b"403 Forbidden", body)
        self.backend.answer = (answer, later) if later else answer
        return await raw_request(self.port, request)

    async def test_a_malformed_chunk_size_in_a_handshake_refusal_is_502(self) -> None:
        statuses = []
        for size in BAD_CHUNK_SIZES:
            response = await self.answer_to(
                get(extra=_UPGRADE_HEADERS), size + b"\r\nx\r\n0\r\n\r\n"
            )
            statuses.append((size, response_head(response)[0]))
        self.assertEqual(statuses, [(size, 502) for size in BAD_CHUNK_SIZES])

    async def test_chunk_data_without_its_crlf_in_a_handshake_refusal_is_502(self) -> None:
        response = await self.answer_to(get(extra=_UPGRADE_HEADERS), b"1\r\nxyz\r\n0\r\n\r\n")
        self.assertEqual(response_head(response)[0], 502)

    async def test_a_well_formed_chunked_refusal_is_passed_on(self) -> None:
        response = await self.answer_to(
            get(extra=_UPGRADE_HEADERS), b"A;name=value\r\n0123456789\r\n0\r\n\r\n"
        )
        self.assertEqual(response_head(response)[0], 403)
        self.assertTrue(response.endswith(b"\r\n\r\n0123456789"), response)

    async def test_a_malformed_chunk_size_in_an_http_response_is_502(self) -> None:
        statuses = []
        # Twisted's client reads the sizes (it takes leading zeros past 16 digits).
        sizes = [size for size in BAD_CHUNK_SIZES if not size.startswith(b"0")]
        for size in sizes:
            response = await self.answer_to(get(), size + b"\r\nx\r\n0\r\n\r\n")
            statuses.append((size, response_head(response)[0] if response else None))
        self.assertEqual(statuses, [(size, 502) for size in sizes])

    async def test_a_malformed_chunk_after_data_was_sent_aborts_the_client(self) -> None:
        response = await self.answer_to(get(), b"5\r\nhello\r\n", b"-1\r\nx\r\n0\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.1 403 "), response)
        self.assertTrue(response.endswith(b"hello\r\n"), response)


def _has_control(text: str) -> bool:
    return any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in text)


class ControlCharacterLogTests(_HeaderNamesBase):
    """F12 (c): ESC, BEL and CSI a client sends never reach a log raw."""

    listener = {
        "rules": (
            RuleConfig(fixed_response=FixedResponseConfig(200, "fixed"), path="/fixed"),
            RuleConfig(target_group="pool", path="/", deny=("10.0.0.0/8",)),
            RuleConfig(target_group="pool", path="/closed", deny=("127.0.0.0/8",)),
        )
    }

    async def logged(self, *requests: bytes) -> list[dict]:
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for request in requests:
            await raw_request(self.port, request)
        return [e for e in events if e.get("log_namespace", "").startswith("clbproxy")]

    def assert_no_control_characters(self, events: list[dict]) -> None:
        self.assertNotEqual(events, [])
        for event in events:
            self.assertFalse(_has_control(formatEvent(event)), formatEvent(event))
            fields = {k: v for k, v in event.items() if isinstance(v, str)}
            fields.pop("log_format", None)
            self.assertEqual([k for k, v in fields.items() if _has_control(v)], [], event)

    async def test_host_and_user_agent_are_escaped_in_every_event(self) -> None:
        evil = b"\x1b]0;owned\x07\x1b[2J\x9b"
        headers = b"User-Agent: ua" + evil + b"\r\nReferer: r" + evil + b"\r\n"
        events = await self.logged(
            # A Host with control characters is refused (400) before it is routed;
            # the headers that pass that check carry them to the access records.
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n" + headers + b"\r\n",
            b"GET /fixed HTTP/1.1\r\nHost: h" + evil + b"\r\nConnection: close\r\n\r\n",
            b"GET /closed HTTP/1.1\r\nHost: h" + evil + b"\r\nConnection: close\r\n\r\n",
            b"TRACE / HTTP/1.1\r\nHost: h" + evil + b"\r\nConnection: close\r\n\r\n",
            b"GET /%2e%2e/%2e%2e HTTP/1.1\r\nHost: h" + evil + b"\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n" + headers + _UPGRADE_HEADERS + b"\r\n",
            b"GET /closed HTTP/1.1\r\nHost: h" + evil + b"\r\n" + _UPGRADE_HEADERS + b"\r\n",
        )
        self.assert_no_control_characters(events)
        agents = [e["user_agent"] for e in events if e.get("user_agent")]
        self.assertEqual(set(agents), {"ua\\x1b]0;owned\\x07\\x1b[2J\\x9b"})
