"""Hostile WebSocket input, each case with the exact answer the proxy gives.

The proxy under test has ``max_message_size = 64KiB``, a rule for host
``strict.test`` that only admits ``https://app.example`` and a catch-all rule; its
backend echoes every message.  Every case runs on a fresh TCP connection to the
same proxy process, which must survive all of them with a clean log.
"""

from __future__ import annotations

import zlib

from tests.hostile.catalog import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    CatalogTestCase,
    Closed,
    HalfClose,
    Messages,
    Pause,
    Status,
    Upgrade,
    WsClose,
    case,
    close_payload,
    frame,
    proxy_fixture,
    ws_case,
)
from tests.support.handshakes import upgrade_request

LIMIT = 65536
STRICT = b"Host: strict.test\r\n"

NEEDS_13 = Status(426, (("Sec-WebSocket-Version", "13"),), closes=True)
BAD = Status(400, closes=True)
OPEN = Status(101)


def _upgrade(extra: bytes = b"", **fields) -> bytes:
    return upgrade_request(extra=extra, **fields)


def _strict(origin: bytes) -> bytes:
    host = "strict.test"
    return upgrade_request(host=host, extra=b"Origin: " + origin + b"\r\n" if origin else b"")


HANDSHAKE = [
    case("key missing", _upgrade(key=""), expect=BAD),
    case("key empty", _upgrade(b"Sec-WebSocket-Key: \r\n", key=""), expect=BAD),
    case("key too short", _upgrade(key="dGhlIHNhbXBsZQ=="), expect=BAD),
    case("key too long", _upgrade(key="dGhlIHNhbXBsZSBub25jZSBub25jZQ=="), expect=BAD),
    case("key not base64", _upgrade(key="dGhlIHNhbXBsZ*Bub25jZQ=="), expect=BAD),
    case("key without padding", _upgrade(key="dGhlIHNhbXBsZSBub25jZQAA"), expect=BAD),
    case("key with nul", _upgrade(key="dGhlIHNhbXBsZ\x00Bub25jZQ=="), expect=BAD),
    case(
        "key duplicated", _upgrade(b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"), expect=BAD
    ),
    case("version 0", _upgrade(version="0"), expect=NEEDS_13),
    case("version 7", _upgrade(version="7"), expect=NEEDS_13),
    case("version 8", _upgrade(version="8"), expect=NEEDS_13),
    case("version 12", _upgrade(version="12"), expect=NEEDS_13),
    case("version 14", _upgrade(version="14"), expect=NEEDS_13),
    case("version 99999", _upgrade(version="99999"), expect=NEEDS_13),
    # Not a version at all (RFC 6455 4.1: 1*DIGIT): 400, as for "thirteen".
    case("version negative", _upgrade(version="-13"), expect=BAD),
    case("version not a number", _upgrade(version="thirteen"), expect=BAD),
    case("version list", _upgrade(version="13, 8"), expect=BAD),
    case("version duplicated", _upgrade(b"Sec-WebSocket-Version: 13\r\n"), expect=BAD),
    case("version missing", _upgrade(version=""), expect=BAD),
    case("version with spaces is fine", _upgrade(version="  13 "), expect=OPEN),
    case("connection header missing", _upgrade(connection=""), expect=BAD),
    case("connection keep-alive only", _upgrade(connection="keep-alive"), expect=BAD),
    case("connection list with upgrade", _upgrade(connection="keep-alive, Upgrade"), expect=OPEN),
    case("connection upgrade any case", _upgrade(connection="UPGRADE"), expect=OPEN),
    case("upgrade websocket any case", _upgrade(upgrade="WebSocket"), expect=OPEN),
    case("upgrade list with websocket", _upgrade(upgrade="h2c, websocket"), expect=OPEN),
    case(
        "upgrade to another protocol is plain http",
        _upgrade(upgrade="h2c"),
        expect=Status(200, (("Content-Type", "text/plain"),)),
    ),
    case("post upgrade", _upgrade(method="POST"), expect=Status(405, closes=True)),
    case("put upgrade", _upgrade(method="PUT"), expect=Status(405, closes=True)),
    case("http 1.0 upgrade", _upgrade(http="HTTP/1.0"), expect=BAD),
    case(
        "upgrade with a content-length body",
        _upgrade(b"Content-Length: 5\r\n") + b"hello",
        expect=BAD,
    ),
    case(
        "upgrade with a chunked body",
        _upgrade(b"Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n",
        expect=BAD,
    ),
    case(
        "upgrade with a broken chunked body",
        _upgrade(b"Transfer-Encoding: chunked\r\n") + b"3\r\nabcX\r\n0\r\n\r\n",
        expect=BAD,
    ),
    case(
        "refused upgrade with a broken chunked body",
        _upgrade(b"Transfer-Encoding: chunked\r\n", connection="close") + b"3\r\nabcX\r\n0\r\n\r\n",
        expect=BAD,
    ),
    case("upgrade with an empty body is fine", _upgrade(b"Content-Length: 0\r\n"), expect=OPEN),
    case("host missing", upgrade_request().replace(b"Host: 127.0.0.1\r\n", b""), expect=BAD),
    case("absolute form target", _upgrade(path="http://127.0.0.1/echo"), expect=OPEN),
    case("subprotocol duplicated", _upgrade(b"Sec-WebSocket-Protocol: chat, chat\r\n"), expect=BAD),
    case("origin allowed", _strict(b"https://app.example"), expect=OPEN),
    case("origin allowed any case", _strict(b"HTTPS://App.Example"), expect=OPEN),
    case("origin missing on allow list", _strict(b""), expect=OPEN),
    case("origin not allowed", _strict(b"https://evil.example"), expect=Status(403, closes=True)),
    case("origin other scheme", _strict(b"http://app.example"), expect=Status(403, closes=True)),
    case(
        "origin other port", _strict(b"https://app.example:8443"), expect=Status(403, closes=True)
    ),
    case(
        "origin suffix trick", _strict(b"https://app.example.evil"), expect=Status(403, closes=True)
    ),
    case("origin null", _strict(b"null"), expect=Status(403, closes=True)),
    case("origin null without allow list", _upgrade(b"Origin: null\r\n"), expect=OPEN),
    # RFC 6454 7: one Origin; two make the request malformed (400, as Autobahn).
    case(
        "origin duplicated",
        _strict(b"https://app.example\r\nOrigin: https://evil.example"),
        expect=BAD,
    ),
    case("origin garbage", _strict(b"::::"), expect=BAD),
    case(
        "extension unknown is ignored",
        _upgrade(b"Sec-WebSocket-Extensions: x-foo\r\n"),
        expect=OPEN,
    ),
    # RFC 6455 9.1: a list that is not extensions is a malformed request.
    case("extension garbage", _upgrade(b"Sec-WebSocket-Extensions: ;;;,,,\r\n"), expect=BAD),
    case(
        "extension empty elements are skipped",
        _upgrade(b"Sec-WebSocket-Extensions: ,, x-foo ,\r\n"),
        expect=Status(101, (("Sec-WebSocket-Extensions", None),)),
    ),
    case(
        "extension deflate bad window bits",
        _upgrade(b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n"),
        expect=BAD,
    ),
    case(
        "extension deflate unknown parameter",
        _upgrade(b"Sec-WebSocket-Extensions: permessage-deflate; x=1\r\n"),
        expect=BAD,
    ),
    case(
        "extension deflate parameter repeated",
        _upgrade(
            b"Sec-WebSocket-Extensions: permessage-deflate; "
            b"client_max_window_bits; client_max_window_bits\r\n"
        ),
        expect=BAD,
    ),
    case(
        "extension deflate valid offer",
        _upgrade(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
        expect=Status(101, (("Sec-WebSocket-Extensions", "permessage-deflate"),)),
    ),
    case(
        "extension header very long",
        _upgrade(b"Sec-WebSocket-Extensions: " + b"x-a, " * 2000 + b"x-b\r\n"),
        expect=OPEN,
    ),
    case("handshake then eof", _upgrade()[:-2], HalfClose(), expect=Closed()),
    case("request line only then eof", b"GET /echo HTTP/1.1\r\n", HalfClose(), expect=Closed()),
]


def _ws(name, *frames, expect, path="/echo"):
    return ws_case(name, *frames, expect=expect, path=path)


def _text(data: bytes, **kwargs) -> bytes:
    return frame(TEXT, data, **kwargs)


def _close(code, reason=b"") -> bytes:
    return frame(CLOSE, close_payload(code, reason))


def _deflate(message: bytes) -> bytes:
    """``message`` as a permessage-deflate sender compresses it (RFC 7692 7.2.1)."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return (deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _deflated(name, *steps):
    """Frames on a session that agreed permessage-deflate; the last step is the expectation."""
    *frames, expect = steps
    offer = Upgrade(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    return case(name, offer, *frames, expect=expect)


PROTOCOL_ERROR = WsClose(1002)
BAD_UTF8 = WsClose(1007)
TOO_BIG = WsClose(1009)

INVALID_UTF8 = {
    "lone continuation byte": b"\x80",
    "byte ff": b"a\xffb",
    "overlong slash": b"\xc0\xaf",
    "overlong nul": b"\xe0\x80\x80",
    "utf16 surrogate": b"\xed\xa0\x80",
    "above 10ffff": b"\xf4\x90\x80\x80",
    "truncated two byte": b"ok\xc3",
    "truncated four byte": b"\xf0\x9f\x98",
}

BAD_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]

FRAMES = [
    _ws("unmasked text", _text(b"hi", mask=None), expect=PROTOCOL_ERROR),
    _ws("unmasked binary", frame(BINARY, b"hi", mask=None), expect=PROTOCOL_ERROR),
    _ws("unmasked ping", frame(PING, b"p", mask=None), expect=PROTOCOL_ERROR),
    _ws("unmasked close", frame(CLOSE, close_payload(1000), mask=None), expect=PROTOCOL_ERROR),
    _ws("unmasked garbage http", b"GET / HTTP/1.1\r\n\r\n", expect=PROTOCOL_ERROR),
    _ws("rsv1 without deflate", _text(b"hi", rsv=4), expect=PROTOCOL_ERROR),
    _ws("rsv2", _text(b"hi", rsv=2), expect=PROTOCOL_ERROR),
    _ws("rsv3", _text(b"hi", rsv=1), expect=PROTOCOL_ERROR),
    _ws("all rsv bits", _text(b"hi", rsv=7), expect=PROTOCOL_ERROR),
    _ws("rsv on ping", frame(PING, b"p", rsv=4), expect=PROTOCOL_ERROR),
    _ws(
        "rsv on continuation",
        _text(b"a", fin=False),
        frame(CONT, b"b", rsv=2),
        expect=PROTOCOL_ERROR,
    ),
    *[
        _ws(f"reserved opcode {opcode:x}", frame(opcode, b"x"), expect=PROTOCOL_ERROR)
        for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
    ],
    _ws("ping of 126 bytes", frame(PING, b"p" * 126), expect=PROTOCOL_ERROR),
    _ws("pong of 126 bytes", frame(PONG, b"p" * 126), expect=PROTOCOL_ERROR),
    _ws("close of 126 bytes", _close(1000, b"r" * 124), expect=PROTOCOL_ERROR),
    _ws("ping of 64k bytes", frame(PING, b"p" * 65536), expect=PROTOCOL_ERROR),
    _ws(
        "ping of 125 bytes is answered",
        frame(PING, b"p" * 125),
        _text(b"after"),
        expect=Messages((b"after",)),
    ),
    _ws(
        "unsolicited pong is ignored",
        frame(PONG, b"x"),
        _text(b"after"),
        expect=Messages((b"after",)),
    ),
    _ws("fragmented ping", frame(PING, b"p", fin=False), expect=PROTOCOL_ERROR),
    _ws("fragmented pong", frame(PONG, b"p", fin=False), expect=PROTOCOL_ERROR),
    _ws("fragmented close", frame(CLOSE, close_payload(1000), fin=False), expect=PROTOCOL_ERROR),
    *[
        _ws(f"invalid utf8 {name}", _text(data), expect=BAD_UTF8)
        for name, data in INVALID_UTF8.items()
    ],
    _ws(
        "invalid utf8 in first fragment fails before the end",
        _text(b"\xff", fin=False),
        expect=BAD_UTF8,
    ),
    _ws(
        "invalid utf8 across fragments",
        _text(b"\xc3", fin=False),
        frame(CONT, b"\x28"),
        expect=BAD_UTF8,
    ),
    _ws(
        "valid utf8 split across fragments",
        _text("é😀".encode()[:1], fin=False),
        frame(CONT, "é😀".encode()[1:4], fin=False),
        frame(CONT, "é😀".encode()[4:]),
        expect=Messages(("é😀".encode(),)),
    ),
    _ws(
        "invalid utf8 in binary is fine",
        frame(BINARY, b"\xff\xfe"),
        expect=Messages((b"\xff\xfe",)),
    ),
    _ws("invalid utf8 in close reason", _close(1000, b"\xff"), expect=BAD_UTF8),
    _ws("truncated utf8 in close reason", _close(1000, b"bye\xe2\x82"), expect=BAD_UTF8),
    _ws("surrogate in close reason", _close(1000, b"\xed\xb0\x80"), expect=BAD_UTF8),
    *[_ws(f"close code {code}", _close(code), expect=PROTOCOL_ERROR) for code in BAD_CLOSE_CODES],
    _ws("close with one byte payload", frame(CLOSE, b"\x03"), expect=PROTOCOL_ERROR),
    *[
        _ws(f"close code {code} is answered with 1000", _close(code), expect=WsClose(1000))
        for code in (1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999)
    ],
    _ws("close without code is answered with 1000", _close(None), expect=WsClose(1000)),
    _ws("close with longest reason", _close(1000, b"r" * 123), expect=WsClose(1000)),
    _ws("data after close is ignored", _close(1000), _text(b"late"), expect=WsClose(1000)),
    _ws("text over the limit", _text(b"x" * (LIMIT + 1)), expect=TOO_BIG),
    _ws("binary over the limit", frame(BINARY, b"x" * (LIMIT + 1)), expect=TOO_BIG),
    _ws(
        "fragments over the limit",
        frame(BINARY, b"x" * 40000, fin=False),
        frame(CONT, b"x" * 40000),
        expect=TOO_BIG,
    ),
    _ws(
        "many small fragments over the limit",
        frame(BINARY, b"", fin=False),
        *[frame(CONT, b"y" * 1000, fin=False) for _ in range(66)],
        expect=TOO_BIG,
    ),
    _ws("header promising 2^63-1 bytes", frame(BINARY, b"", length=2**63 - 1), expect=TOO_BIG),
    _ws("header promising 2^63 bytes", frame(BINARY, b"", length=2**63), expect=PROTOCOL_ERROR),
    _ws(
        "header promising 2^64-1 bytes", frame(BINARY, b"", length=2**64 - 1), expect=PROTOCOL_ERROR
    ),
    _ws("header promising 1 GiB", frame(TEXT, b"", length=2**30), expect=TOO_BIG),
    _ws(
        "message at the limit passes", frame(BINARY, b"z" * LIMIT), expect=Messages((b"z" * LIMIT,))
    ),
    _ws(
        "new text inside a fragmented message",
        _text(b"a", fin=False),
        _text(b"b"),
        expect=PROTOCOL_ERROR,
    ),
    _ws(
        "new binary inside a fragmented text",
        _text(b"a", fin=False),
        frame(BINARY, b"b"),
        expect=PROTOCOL_ERROR,
    ),
    _ws(
        "interleaved unfinished fragments",
        _text(b"a", fin=False),
        frame(BINARY, b"b", fin=False),
        expect=PROTOCOL_ERROR,
    ),
    _ws("continuation without start", frame(CONT, b"x"), expect=PROTOCOL_ERROR),
    _ws(
        "unfinished continuation without start", frame(CONT, b"x", fin=False), expect=PROTOCOL_ERROR
    ),
    _ws(
        "continuation after a finished message",
        _text(b"a"),
        frame(CONT, b"b"),
        expect=WsClose(1002, (b"a",)),
    ),
    _ws(
        "ping between fragments is allowed",
        _text(b"he", fin=False),
        frame(PING, b"p"),
        frame(CONT, b"llo"),
        expect=Messages((b"hello",)),
    ),
    _ws(
        "close between fragments ends the session",
        _text(b"he", fin=False),
        _close(1000),
        expect=WsClose(1000),
    ),
    _ws("zero mask key is fine", _text(b"zero", mask=b"\0\0\0\0"), expect=Messages((b"zero",))),
    _ws(
        "hundred one byte fragments",
        _text(b"a", fin=False),
        *[frame(CONT, b"b", fin=False) for _ in range(98)],
        frame(CONT, b"c"),
        expect=Messages((b"a" + b"b" * 98 + b"c",)),
    ),
    _ws("empty text message", _text(b""), _text(b"then"), expect=Messages((b"", b"then"))),
    _ws(
        "sixteen bit length for a small payload is not minimal",
        _text(b"tiny", length_form=16),
        expect=PROTOCOL_ERROR,
    ),
    _ws(
        "sixty four bit length for a small payload is not minimal",
        _text(b"tiny", length_form=64),
        expect=PROTOCOL_ERROR,
    ),
    _ws(
        "frame split into single bytes",
        *[bytes([b]) for b in _text(b"slow")],
        expect=Messages((b"slow",)),
    ),
    _ws(
        "header trickled with pauses",
        _text(b"trickle")[:3],
        Pause(0.05),
        _text(b"trickle")[3:],
        expect=Messages((b"trickle",)),
    ),
    _ws("truncated frame then eof", _text(b"cut")[:4], HalfClose(), expect=Closed()),
    _ws("eof right after the handshake", HalfClose(), expect=Closed()),
    _ws(
        "backend close code reaches the client",
        _text(b"4001"),
        expect=WsClose(4001),
        path="/close",
    ),
    _ws(
        "deflate bit on text without deflate",
        _text(b"\xf2H\xcd\xc9\xc9\x07\x00", rsv=4),
        expect=PROTOCOL_ERROR,
    ),
    # permessage-deflate agreed end to end (the backend takes the offer): compressed
    # frames pass on as they are, checked as they inflate.
    _deflated(
        "deflate text inflating to invalid UTF-8", _text(_deflate(b"a\xffb"), rsv=4), BAD_UTF8
    ),
    _deflated("deflate data that does not inflate", _text(b"\xff" * 20, rsv=4), PROTOCOL_ERROR),
    _deflated(
        "deflate message inflating past max_message_size",
        frame(BINARY, _deflate(bytes(4 * LIMIT)), rsv=4),
        TOO_BIG,
    ),
    _deflated(
        "deflate bit on a continuation",
        _text(_deflate(b"ab"), fin=False, rsv=4),
        frame(CONT, b"", rsv=4),
        PROTOCOL_ERROR,
    ),
    _deflated("deflate bit on a ping", frame(PING, b"", rsv=4), PROTOCOL_ERROR),
    _deflated("rsv2 with deflate", _text(b"hi", rsv=2), PROTOCOL_ERROR),
]


class WebSocketHandshakeCatalog(CatalogTestCase):
    fixture = proxy_fixture(
        listener={
            "max_message_size": LIMIT,
            "rules": [
                {"path": "/"},
                {"host": "strict.test", "allowed_origins": ["https://app.example"]},
            ],
        }
    )
    cases = HANDSHAKE


class WebSocketFrameCatalog(CatalogTestCase):
    fixture = WebSocketHandshakeCatalog.fixture
    cases = FRAMES

    def test_the_proxy_still_relays_after_the_whole_catalogue(self):
        from tests.hostile.catalog import run_case

        ports = self.fixture.start()
        run_case(ports["proxy"], _ws("sane", _text(b"alive"), expect=Messages((b"alive",))))
        self.assertTrue(self.fixture.alive())
        self.assert_log_clean()
