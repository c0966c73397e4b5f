"""Hostile TLS clients on an HTTPS listener, each case with the exact answer the proxy gives.

Every case runs on its own connection over real sockets (127.0.0.1) to a proxy
started once per class in a child process (``tests/hostile/fixture.py``): the
listener serves ``a.example.com`` and a default certificate, ``min_version =
"1.2"`` and ``header_timeout = 2``.  A case is a client (raw bytes written by
hand, or a real OpenSSL client) and the one outcome it must see: a TLS alert
(level and description, then the connection closes), a plain HTTP response, a
close without a byte (within a time), a completed handshake with a given
certificate, or OpenSSL's error on the client side.  After each case the runner
checks that the proxy logged the case's one-line reason, logged no traceback, is
still alive, and still serves a good HTTPS client.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import struct
import tempfile
import time
from typing import Callable, Optional, Sequence, Union

import attrs
import trustme
from OpenSSL import SSL
from twisted.trial import unittest

from tests.hostile.catalog import LOG_ALARMS, TEXT, ServerProcess, _test_name, frame, proxy_fixture
from tests.support.handshakes import upgrade_request
from tests.support.tls import _retrying, certificate_files, probe

HEADER_TIMEOUT = 2.0

# -- expected outcomes -------------------------------------------------------------------

ALERTS = {
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    70: "protocol_version",
    80: "internal_error",
    100: "no_renegotiation",
    109: "missing_extension",
    112: "unrecognized_name",
    116: "certificate_required",
}


@attrs.frozen
class Alert:
    """A fatal TLS alert with this description, and then the connection closes."""

    description: str


@attrs.frozen
class Http:
    """A plain (unencrypted) HTTP response with this status, then the connection closes."""

    status: int


@attrs.frozen
class Closed:
    """The connection closes (FIN or reset) without a byte, ``after`` seconds (+-1 s) or at once."""

    after: float = 0.0


@attrs.frozen
class Handshake:
    """The handshake completes with a certificate for these DNS names."""

    names: tuple[str, ...]


@attrs.frozen
class ClientError:
    """The client's OpenSSL fails with this reason (for alerts seen only by a real client)."""

    reason: str


Outcome = Union[Alert, Http, Closed, Handshake, ClientError]


@attrs.frozen
class OneOf:
    """Any of these outcomes: where OpenSSL's answer differs between its versions.

    The proxy's behaviour is the same (the handshake is refused and logged once);
    OpenSSL 3.3 (PyPy's cryptography wheel) and 4.0 choose different alerts.
    """

    outcomes: tuple[Outcome, ...]


@attrs.frozen
class TLSCase:
    """One hostile TLS client: what it does, what it gets, and what the proxy logs."""

    name: str
    play: Callable[[int], Outcome]
    expect: Union[Outcome, OneOf]
    #: The one log line expected, or alternatives (one of them, once) as for :class:`OneOf`.
    logged: Union[None, str, tuple[str, ...]]


# -- raw clients -------------------------------------------------------------------------


def client_hello(
    version: int = 0x0303,
    *,
    record_version: int = 0x0301,
    ciphers: Sequence[int] = (0xC02F, 0xC030, 0x009C, 0x002F, 0x0035),
    server_name: Optional[str] = None,
    extensions: bytes = b"",
    length: Optional[int] = None,
) -> bytes:
    """A ClientHello record written by hand, so versions OpenSSL no longer speaks can be sent."""
    ext = extensions
    if server_name is not None:
        name = server_name.encode("ascii")
        entry = b"\x00" + struct.pack("!H", len(name)) + name
        ext += struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry
    body = (
        struct.pack("!H", version)
        + bytes(range(32))
        + b"\x00"
        + struct.pack("!H", 2 * len(ciphers))
        + b"".join(struct.pack("!H", c) for c in ciphers)
        + b"\x01\x00"
        + (struct.pack("!H", len(ext)) + ext if ext else b"")
    )
    size = len(body) if length is None else length
    handshake = b"\x01" + struct.pack("!I", size)[1:] + body
    return b"\x16" + struct.pack("!HH", record_version, len(handshake)) + handshake


def raw(*script: Union[bytes, float, None], wait: float = 5.0) -> Callable[[int], Outcome]:
    """A client writing ``script`` (bytes; a float pauses; None half-closes), then reading."""

    def play(port: int) -> Outcome:
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
            started = time.monotonic()
            for step in script:
                if step is None:
                    sock.shutdown(socket.SHUT_WR)
                elif isinstance(step, float):
                    time.sleep(step)
                else:
                    try:
                        sock.sendall(step)
                    except (BrokenPipeError, ConnectionResetError):
                        break
            received = b""
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except ConnectionResetError:
                pass
            except socket.timeout:
                return ClientError(f"still open after {wait:g} s; got {received[:100]!r}")
            elapsed = time.monotonic() - started
        return read_outcome(received, elapsed)

    return play


def read_outcome(received: bytes, elapsed: float) -> Outcome:
    """What the bytes a raw client got back mean."""
    if not received:
        return Closed(round(elapsed) if elapsed > 1 else 0.0)
    if received.startswith(b"HTTP/1."):
        return Http(int(received.split(b" ", 2)[1]))
    if received[:1] == b"\x15" and len(received) >= 7:
        level, description = received[5], received[6]
        if level != 2:
            return ClientError(f"alert of level {level}: {received[:20]!r}")
        if len(received) > 7:
            return ClientError(f"bytes after the alert: {received[7:40]!r}")
        return Alert(ALERTS.get(description, str(description)))
    return ClientError(f"unexpected answer {received[:60]!r}")


def openssl(server_name: Optional[str] = "a.example.com", **options) -> Callable[[int], Outcome]:
    """A real OpenSSL client (tests.support.tls.probe) doing a handshake."""

    def play(port: int) -> Outcome:
        result = probe(port, server_name, **options)
        if result.ok:
            return Handshake(tuple(result.names))
        reason = result.error.split("', '")[-1].rstrip("')]")
        # OpenSSL 4 names alerts "ssl/tls alert ...", earlier versions "tls alert ...".
        return ClientError(reason[len("ssl/") :] if reason.startswith("ssl/") else reason)

    return play


def renegotiate(count: int) -> Callable[[int], Outcome]:
    """A TLS 1.2 client that asks to renegotiate ``count`` times, then sends a request."""

    def play(port: int) -> Outcome:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            connection = SSL.Connection(context, sock)
            connection.set_tlsext_host_name(b"a.example.com")
            connection.set_connect_state()
            _retrying(sock, connection.do_handshake)
            try:
                for _ in range(count):
                    connection.renegotiate()
                    _retrying(sock, connection.do_handshake)
            except SSL.Error as e:
                return ClientError(e.args[0][0][-1])
            return Handshake(("renegotiated", str(connection.total_renegotiations())))

    return play


def good_client(port: int, **options) -> bytes:
    """A well-behaved HTTPS request; returns the response."""
    request = b"GET /ok HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"
    result = probe(port, "a.example.com", send=request, **options)
    return result.response if result.ok else result.error.encode()


# -- the runner --------------------------------------------------------------------------


_DIRECTORY = tempfile.mkdtemp(prefix="clbproxy-hostile-tls-")
atexit.register(shutil.rmtree, _DIRECTORY, True)
CA = trustme.CA()
OTHER_CA = trustme.CA()
CERTIFICATES = [
    certificate_files(_DIRECTORY, CA, "a.example.com"),
    certificate_files(_DIRECTORY, CA, "default.example", default=True),
]
CLIENT_CA = os.path.join(_DIRECTORY, "clients-ca.pem")
CA.cert_pem.write_to_path(CLIENT_CA)
CLIENT = CA.issue_cert("alice@example.com")
STRANGER = OTHER_CA.issue_cert("mallory@example.com")


def https_fixture(**tls) -> ServerProcess:
    certificates = [{"cert": c.cert, "key": c.key, "default": c.default} for c in CERTIFICATES]
    return proxy_fixture(
        listener={
            "protocol": "https",
            "header_timeout": HEADER_TIMEOUT,
            "tls": {"certificates": certificates, **tls},
        }
    )


class TLSCatalogTestCase(unittest.SynchronousTestCase):
    """One ``test_<case>`` per entry of ``cases``, against ``fixture``."""

    fixture: Optional[ServerProcess] = None
    cases: Sequence[TLSCase] = ()
    good_options: dict = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for entry in cls.cases:
            name = _test_name(entry.name)
            if hasattr(cls, name):
                raise ValueError(f"{cls.__name__}: two cases named {name}")
            setattr(cls, name, _make_test(entry))

    @property
    def port(self) -> int:
        return self.fixture.start()["proxy"]

    def play(self, entry: TLSCase) -> None:
        port = self.port
        self.fixture.new_log()
        outcome = entry.play(port)
        if isinstance(entry.expect, Closed) and isinstance(outcome, Closed):
            self.assertLessEqual(abs(outcome.after - entry.expect.after), 1.0, outcome)
        elif isinstance(entry.expect, OneOf):
            self.assertIn(outcome, entry.expect.outcomes)
        else:
            self.assertEqual(outcome, entry.expect)
        self.assert_served_and_logged(entry.logged)

    def assert_served_and_logged(self, logged: Optional[str]) -> None:
        response = good_client(self.port, **self.good_options)
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:200])
        self.assertTrue(self.fixture.alive(), "the proxy process died")
        text = self.wait_log(logged)
        for alarm in LOG_ALARMS:
            self.assertNotIn(alarm, text, f"the proxy logged {alarm!r}:\n{text[-3000:]}")

    def wait_log(self, logged: Union[None, str, tuple[str, ...]], timeout: float = 3.0) -> str:
        """The log since the case started, once it holds ``logged`` (exactly once).

        A tuple is alternatives: exactly one line holds one of them.
        """
        wanted = (logged,) if isinstance(logged, str) else logged or ()
        text = ""
        deadline = time.monotonic() + timeout
        while True:
            text += self.fixture.new_log()
            if not wanted or any(w in text for w in wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if wanted:
            lines = [line for line in text.splitlines() if any(w in line for w in wanted)]
            self.assertEqual(len(lines), 1, f"{logged!r} not logged once:\n{text[-3000:]}")
        return text


def _make_test(entry: TLSCase):
    def test(self):
        self.play(entry)

    test.__doc__ = f"{entry.name} -> {entry.expect}"
    return test


# -- the catalogue -----------------------------------------------------------------------

PLAIN = "sent plain HTTP to the HTTPS port: 400"
TIMED_OUT = f"no completed handshake after 2.0 s (header_timeout {HEADER_TIMEOUT:g} s)"
CLIENT_CLOSED = "closed the connection during the handshake after sending"


def failed(reason: str) -> str:
    return f"handshake with 127.0.0.1 failed: {reason}"


HELLO = client_hello(server_name="a.example.com")

CASES = [
    TLSCase(
        "plain http request",
        raw(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"),
        Http(400),
        PLAIN,
    ),
    TLSCase("plain http request line only", raw(b"GET / HTTP/1.1\r\n"), Http(400), PLAIN),
    TLSCase("plain http connect", raw(b"CONNECT a:443 HTTP/1.1\r\n\r\n"), Http(400), PLAIN),
    TLSCase("plain websocket handshake", raw(upgrade_request()), Http(400), PLAIN),
    TLSCase(
        "truncated client hello then silence",
        raw(HELLO[:40], wait=HEADER_TIMEOUT + 3),
        Closed(HEADER_TIMEOUT),
        TIMED_OUT,
    ),
    TLSCase(
        "record header only then silence",
        raw(HELLO[:5], wait=HEADER_TIMEOUT + 3),
        Closed(HEADER_TIMEOUT),
        TIMED_OUT,
    ),
    TLSCase(
        "nothing sent",
        raw(wait=HEADER_TIMEOUT + 3),
        Closed(HEADER_TIMEOUT),
        TIMED_OUT,
    ),
    TLSCase(
        "client hello trickled past the timeout",
        raw(*(b for i in range(0, 40, 8) for b in (HELLO[i : i + 8], 0.6)), wait=5),
        Closed(HEADER_TIMEOUT),
        TIMED_OUT,
    ),
    TLSCase("truncated client hello then fin", raw(HELLO[:40], None), Closed(), CLIENT_CLOSED),
    TLSCase("one byte then fin", raw(b"\x16", None), Closed(), CLIENT_CLOSED),
    TLSCase(
        "garbage bytes", raw(b"\x00\x01\x02\x03garbage\xff" * 4), Closed(), failed("wrong version")
    ),
    TLSCase("random binary", raw(bytes(range(256))), Closed(), failed("wrong version")),
    TLSCase(
        "huge record length",
        raw(b"\x16\x03\x01\xff\xff" + HELLO[5:]),
        Alert("record_overflow"),
        (failed("data length too long"), failed("packet length too long")),
    ),
    TLSCase(
        "record of 16 KiB plus 1",
        raw(b"\x16\x03\x03\x40\x01" + b"\x01" * 64),
        Alert("record_overflow"),
        failed("data length too long"),
    ),
    TLSCase(
        "handshake length larger than the record",
        raw(client_hello(length=0xFFFFFF, server_name="a.example.com")),
        Alert("illegal_parameter"),
        failed("excessive message size"),
    ),
    TLSCase(
        "empty handshake records then silence",
        raw(b"\x16\x03\x01\x00\x00" * 3, wait=HEADER_TIMEOUT + 3),
        Closed(HEADER_TIMEOUT),
        TIMED_OUT,
    ),
    TLSCase(
        "application data before the handshake",
        raw(b"\x17\x03\x03\x00\x05hello"),
        Alert("unexpected_message"),
        failed("unexpected message"),
    ),
    TLSCase(
        "alert as the first record",
        raw(b"\x15\x03\x03\x00\x02\x02\x28"),
        Alert("unexpected_message"),
        failed("unexpected message"),
    ),
    TLSCase(
        "sslv2 client hello",
        raw(b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x07\x00\xc0" * 7 + bytes(16)),
        OneOf((Closed(), Alert("protocol_version"))),
        (failed("wrong version"), failed("unknown protocol")),
    ),
    TLSCase(
        "sslv3 client hello",
        raw(client_hello(0x0300, record_version=0x0300, ciphers=(0x002F, 0x000A))),
        OneOf((Alert("protocol_version"), Alert("handshake_failure"))),
        failed("version too low"),
    ),
    TLSCase(
        "tls 1.0 client hello",
        raw(client_hello(0x0301, ciphers=(0x002F, 0x000A), server_name="a.example.com")),
        Alert("protocol_version"),
        failed("unsupported protocol"),
    ),
    TLSCase(
        "tls 1.1 client hello",
        raw(client_hello(0x0302, ciphers=(0x002F, 0x000A), server_name="a.example.com")),
        Alert("protocol_version"),
        failed("unsupported protocol"),
    ),
    TLSCase(
        "tls 1.1 from openssl",
        openssl(max_version=SSL.TLS1_1_VERSION),
        ClientError("tlsv1 alert protocol version"),
        failed("unsupported protocol"),
    ),
    TLSCase(
        "tls 1.2 with no shared cipher",
        raw(client_hello(ciphers=(0x0004, 0x0005, 0x003B), server_name="a.example.com")),
        Alert("handshake_failure"),
        failed("no shared cipher"),
    ),
    TLSCase(
        "unknown sni gets the default certificate",
        openssl("unknown.test"),
        Handshake(("default.example",)),
        None,
    ),
    TLSCase(
        "no sni gets the default certificate", openssl(None), Handshake(("default.example",)), None
    ),
    TLSCase(
        "sni with a trailing dot and capitals",
        openssl("A.Example.COM."),
        Handshake(("a.example.com",)),
        None,
    ),
    TLSCase(
        "client renegotiation is refused",
        renegotiate(1),
        ClientError("no renegotiation"),
        "TLS error from 127.0.0.1 after the handshake",
    ),
]


class TLSCatalog(TLSCatalogTestCase):
    fixture = https_fixture()
    cases = CASES


STRICT_CASES = [
    TLSCase(
        "strict sni refuses an unknown name",
        openssl("unknown.test"),
        ClientError("tls alert handshake failure"),
        "no certificate for server name 'unknown.test' (strict_sni)",
    ),
    TLSCase(
        "strict sni refuses a handshake without sni",
        openssl(None),
        ClientError("tls alert handshake failure"),
        "no certificate for server name (none sent) (strict_sni)",
    ),
    TLSCase(
        "strict sni refuses an unknown name over tls 1.2",
        raw(client_hello(server_name="unknown.test")),
        Alert("handshake_failure"),
        "no certificate for server name 'unknown.test' (strict_sni)",
    ),
    TLSCase(
        "strict sni serves a known name",
        openssl("a.example.com"),
        Handshake(("a.example.com",)),
        None,
    ),
    TLSCase(
        "strict sni serves the default certificate by its own name",
        openssl("default.example"),
        Handshake(("default.example",)),
        None,
    ),
]


class StrictSNICatalog(TLSCatalogTestCase):
    fixture = https_fixture(strict_sni=True)
    cases = STRICT_CASES


MUTUAL_CASES = [
    TLSCase(
        "mtls without a client certificate",
        openssl(),
        ClientError("tlsv13 alert certificate required"),
        failed("peer did not return a certificate"),
    ),
    TLSCase(
        "mtls without a client certificate over tls 1.2",
        openssl(max_version=SSL.TLS1_2_VERSION),
        ClientError("tls alert handshake failure"),
        failed("peer did not return a certificate"),
    ),
    TLSCase(
        "mtls with a certificate from another ca",
        openssl(client_cert=STRANGER),
        ClientError("tlsv1 alert unknown ca"),
        failed("certificate verify failed"),
    ),
    TLSCase(
        "mtls with a verified client certificate",
        openssl(client_cert=CLIENT),
        Handshake(("a.example.com",)),
        None,
    ),
]


class MutualTLSCatalog(TLSCatalogTestCase):
    fixture = https_fixture(client_ca=CLIENT_CA)
    cases = MUTUAL_CASES
    good_options = {"client_cert": CLIENT}


class HandshakeFloodTests(unittest.SynchronousTestCase):
    """Hundreds of half-open and aborted handshakes while a WSS session keeps working."""

    fixture = TLSCatalog.fixture

    def test_half_open_handshakes_do_not_disturb_a_wss_session(self):
        port = self.fixture.start()["proxy"]
        self.fixture.new_log()
        session = WSSSession(port)
        self.addCleanup(session.close)
        self.assertEqual(session.echo(b"before"), b"before")
        half_open, latencies = [], []
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 3 == 2:
                # A whole ClientHello, then a reset before the handshake can finish.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.sendall(HELLO)
                sock.close()
            else:
                sock.sendall(HELLO[: 10 + i % 50])
                half_open.append(sock)
            if i % 30 == 0:
                started = time.monotonic()
                self.assertEqual(session.echo(b"during %d" % i), b"during %d" % i)
                latencies.append(time.monotonic() - started)
        self.assertLess(max(latencies), 1.0, latencies)
        self.assertTrue(good_client(port).startswith(b"HTTP/1.1 200 "))

        deadline = time.monotonic() + HEADER_TIMEOUT + 5
        for sock in half_open:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                self.assertEqual(sock.recv(100), b"")
            except ConnectionResetError:
                pass
            sock.close()
        self.assertEqual(session.echo(b"after"), b"after")
        text = self.fixture.new_log()
        for alarm in LOG_ALARMS:
            self.assertNotIn(alarm, text)
        self.assertEqual(text.count("no completed handshake after"), len(half_open))
        self.assertTrue(self.fixture.alive())


class WSSSession:
    """A blocking WSS client session through the proxy (echo backend)."""

    def __init__(self, port: int) -> None:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.connection = SSL.Connection(context, self.sock)
        self.connection.set_tlsext_host_name(b"a.example.com")
        self.connection.set_connect_state()
        _retrying(self.sock, self.connection.do_handshake)
        self.connection.sendall(upgrade_request(host="a.example.com"))
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101 "):
            raise AssertionError(f"handshake answered {head[:100]!r}")

    def _recv(self) -> bytes:
        data = _retrying(self.sock, lambda: self.connection.recv(65536))
        if not data:
            raise AssertionError("the session closed")
        return data

    def echo(self, payload: bytes) -> bytes:
        self.connection.sendall(frame(TEXT, payload))
        while len(self.buffer) < 2 or len(self.buffer) < 2 + (self.buffer[1] & 0x7F):
            self.buffer += self._recv()
        size = self.buffer[1] & 0x7F
        message, self.buffer = self.buffer[2 : 2 + size], self.buffer[2 + size :]
        return message

    def close(self) -> None:
        self.sock.close()
