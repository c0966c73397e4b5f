"""The shared catalog of hostile HTTP input: (name, raw bytes sent, expected status).

Each case is sent as is on a fresh connection to a listener whose one rule
forwards everything to a live backend (run by ``test_http.py``).  For ``CASES``
and ``PATH_CASES`` the proxy must answer exactly ``status`` and close, and the
backend must see nothing; ``ACCEPTED`` requests reach the backend, whose answer
(``status``) comes back.
Extend the table; keep names unique and say in the name what is wrong.
Listener limits in force: ``LIMITS`` below.
"""

from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    name: str
    request: bytes
    status: int
    #: The start of the reason the proxy logs (and puts in its error page).
    detail: str = ""


LIMITS = {"max_request_line": 1024, "max_header_size": 4096, "max_body_size": 1000}

_GET = b"GET / HTTP/1.1\r\nHost: a.test\r\n"
_POST = b"POST / HTTP/1.1\r\nHost: a.test\r\n"

SMUGGLING = [
    Case(
        "content-length with transfer-encoding",
        _POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "transfer-encoding before content-length",
        _POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "repeated content-length", _POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400
    ),
    Case("content-length list", _POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    Case("negative content-length", _POST + b"Content-Length: -1\r\n\r\n", 400),
    Case("signed content-length", _POST + b"Content-Length: +3\r\n\r\nabc", 400),
    Case("hex content-length", _POST + b"Content-Length: 0x3\r\n\r\nabc", 400),
    Case("empty content-length", _POST + b"Content-Length: \r\n\r\n", 400),
    Case("transfer-encoding identity", _POST + b"Transfer-Encoding: identity\r\n\r\n", 400),
    Case(
        "transfer-encoding gzip, chunked", _POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 400
    ),
    Case(
        "transfer-encoding chunked twice",
        _POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    Case("transfer-encoding xchunked", _POST + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    Case(
        "invalid chunk size",
        _POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "negative chunk size",
        _POST + b"Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "chunk size with 0x",
        _POST + b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "chunk without CRLF",
        _POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        400,
    ),
    Case("obs-fold", _GET + b"X-A: one\r\n two\r\n\r\n", 400),
    Case("obs-fold with tab", _GET + b"X-A: one\r\n\ttwo\r\n\r\n", 400),
    Case("bare LF in header value", _GET + b"X-A: one\nX-B: two\r\n\r\n", 400),
    Case("bare CR in header value", _GET + b"X-A: one\rX-B: two\r\n\r\n", 400),
    Case("bare CR in request line", b"GET /\r HTTP/1.1\r\nHost: a.test\r\n\r\n", 400),
    Case("space before colon", _GET + b"X-A : one\r\n\r\n", 400),
    Case("space in header name", _GET + b"X A: one\r\n\r\n", 400),
    Case("non-token header name", _GET + b"X(A): one\r\n\r\n", 400),
    Case("header without colon", _GET + b"X-A one\r\n\r\n", 400),
    Case("empty header name", _GET + b": one\r\n\r\n", 400),
    Case("NUL in header value", _GET + b"X-A: o\x00ne\r\n\r\n", 400),
    Case(
        "transfer-encoding with space before colon",
        _POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
]

_CHUNKED = _POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"

TRAILERS = [
    Case("obs-fold in a trailer", _CHUNKED + b"X-A: one\r\n two\r\n\r\n", 400),
    Case("obs-fold with tab in a trailer", _CHUNKED + b"X-A: one\r\n\ttwo\r\n\r\n", 400),
    Case("trailer line without colon", _CHUNKED + b"X-A one\r\n\r\n", 400),
    Case("space before colon in a trailer", _CHUNKED + b"X-A : one\r\n\r\n", 400),
    Case("non-token trailer name", _CHUNKED + b"X(A): one\r\n\r\n", 400),
    Case("empty trailer name", _CHUNKED + b": one\r\n\r\n", 400),
    Case("NUL in a trailer value", _CHUNKED + b"X-A: o\x00ne\r\n\r\n", 400),
    Case("bare LF in a trailer", _CHUNKED + b"X-A: one\nX-B: two\r\n\r\n", 400),
    Case("bare CR in a trailer", _CHUNKED + b"X-A: one\rX-B: two\r\n\r\n", 400),
    Case(
        "trailer larger than max_header_size", _CHUNKED + b"X-A: " + b"t" * 5000 + b"\r\n\r\n", 400
    ),
    Case(
        "trailer section larger than max_header_size",
        _CHUNKED + b"".join(b"X-%d: %s\r\n" % (i, b"t" * 50) for i in range(100)) + b"\r\n",
        400,
    ),
    Case(
        "unterminated trailer line past max_header_size",
        _CHUNKED + b"X-A: " + b"t" * 5000,
        400,
    ),
]

LIMIT_CASES = [
    Case(
        "request line too long", b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a.test\r\n\r\n", 414
    ),
    Case("headers too large", _GET + b"X-A: " + b"b" * 5000 + b"\r\n\r\n", 431),
    Case(
        "many headers too large",
        _GET + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 50) for i in range(100)) + b"\r\n",
        431,
    ),
    Case("declared body too large", _POST + b"Content-Length: 1001\r\n\r\n", 413),
    Case(
        "chunked body too large",
        _POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"d" * 1024 + b"\r\n0\r\n\r\n",
        413,
    ),
]

MALFORMED = [
    Case("garbage request line", b"HELLO\r\n\r\n", 400),
    Case("unknown HTTP version token", b"GET / FOO/1.1\r\nHost: a.test\r\n\r\n", 400),
    Case("DEL in the target", b"GET /a\x7f HTTP/1.1\r\nHost: a.test\r\n\r\n", 400),
    Case("control byte in the target", b"GET /a\x01b HTTP/1.1\r\nHost: a.test\r\n\r\n", 400),
    Case("tab in the target", b"GET /a\tb HTTP/1.1\r\nHost: a.test\r\n\r\n", 400),
    Case("utf-8 in the target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a.test\r\n\r\n", 400),
    Case(
        "control byte in a websocket target",
        b"GET /a\x7f HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        400,
    ),
]

_TE = _POST + b"Transfer-Encoding: chunked\r\n\r\n"


def _te(value: bytes) -> bytes:
    return _POST + b"Transfer-Encoding: " + value + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


def _line(request_line: bytes) -> bytes:
    return request_line + b"\r\nHost: a.test\r\n\r\n"


EDGE = [
    Case(
        "content-length of 20 digits",
        _POST + b"Content-Length: " + b"9" * 20 + b"\r\n\r\n",
        413,
        "the request body is larger than 1000 bytes",
    ),
    Case(
        "chunk size overflowing 64 bits",
        _TE + b"1" + b"0" * 16 + b"\r\nabc\r\n0\r\n\r\n",
        400,
        "the chunk size is larger than 2^63-1",
    ),
    Case(
        "chunk size of 24 hex digits",
        _TE + b"f" * 24 + b"\r\nabc\r\n0\r\n\r\n",
        400,
        "the chunk size is larger than 2^63-1",
    ),
    Case(
        "NUL in a chunk extension",
        _TE + b"3;e\x00xt\r\nabc\r\n0\r\n\r\n",
        400,
        "a malformed chunk size line",
    ),
    Case(
        "bare LF after a chunk extension",
        _TE + b"3;ext\nabc\r\n0\r\n\r\n",
        400,
        "a malformed chunk size line",
    ),
    Case(
        "chunk extension over 1024 bytes",
        _TE + b"3;" + b"e" * 1100 + b"\r\nabc\r\n0\r\n\r\n",
        400,
        "a malformed chunk size line",
    ),
    Case(
        "transfer-encoding with a trailing comma",
        _te(b"chunked,"),
        400,
        "only Transfer-Encoding: chunked is accepted",
    ),
    Case(
        "transfer-encoding with a parameter",
        _te(b"chunked;x"),
        400,
        "only Transfer-Encoding: chunked is accepted",
    ),
    Case(
        "transfer-encoding chunked, identity",
        _te(b"chunked, identity"),
        400,
        "only Transfer-Encoding: chunked is accepted",
    ),
    Case(
        "vertical tab before transfer-encoding",
        _te(b"\x0bchunked"),
        400,
        "only Transfer-Encoding: chunked is accepted",
    ),
    Case(
        "vertical tab after transfer-encoding",
        _te(b"chunked\x0b"),
        400,
        "only Transfer-Encoding: chunked is accepted",
    ),
    Case(
        "501 tiny header fields",
        _GET + b"".join(b"%x:\r\n" % i for i in range(500)) + b"\r\n",
        431,
        "more than 500 header fields",
    ),
    Case("method with a parenthesis", _line(b"G(ET / HTTP/1.1"), 400, "the request is malformed"),
    Case(
        "HTTP/2.0 request line",
        _line(b"GET / HTTP/2.0"),
        505,
        "only HTTP/1.0 and HTTP/1.1 are served here",
    ),
    Case(
        "HTTP/3.0 request line",
        _line(b"GET / HTTP/3.0"),
        505,
        "only HTTP/1.0 and HTTP/1.1 are served here",
    ),
    Case(
        "HTTP/2 preface",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        505,
        "only HTTP/1.0 and HTTP/1.1 are served here",
    ),
    Case("HTTP/0.9 request line", b"GET /\r\n\r\n", 400, "the request is malformed"),
    Case("lower-case http version", _line(b"GET / http/1.1"), 400, "the request is malformed"),
    Case(
        "version with two-digit minor", _line(b"GET / HTTP/1.10"), 400, "the request is malformed"
    ),
    Case(
        "authority-form CONNECT",
        b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
        501,
        "CONNECT is not supported",
    ),
]

CASES = SMUGGLING + TRAILERS + LIMIT_CASES + MALFORMED + EDGE

_CLOSE = b"Connection: close\r\n"

#: Unusual but valid requests: each is forwarded (the backend answers ``status``).
ACCEPTED = [
    Case("chunk extension", _TE[:-2] + _CLOSE + b"\r\n3;ext=1\r\nabc\r\n0\r\n\r\n", 200),
    Case(
        "chunk extension without value", _TE[:-2] + _CLOSE + b"\r\n3;ext\r\nabc\r\n0\r\n\r\n", 200
    ),
    Case(
        "transfer-encoding Chunked capitalised",
        _POST + _CLOSE + b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        200,
    ),
    Case(
        "tab before transfer-encoding value",
        _POST + _CLOSE + b"Transfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        200,
    ),
    Case(
        "490 tiny header fields",
        _GET + _CLOSE + b"".join(b"%x:\r\n" % i for i in range(488)) + b"\r\n",
        200,
    ),
    Case(
        "lower-case method is another method",
        b"get / HTTP/1.1\r\nHost: a.test\r\n" + _CLOSE + b"\r\n",
        200,
    ),
    Case("unknown token method", b"PURGE / HTTP/1.1\r\nHost: a.test\r\n" + _CLOSE + b"\r\n", 200),
    Case(
        "HTTP/1.2 is served as 1.1", b"GET / HTTP/1.2\r\nHost: a.test\r\n" + _CLOSE + b"\r\n", 200
    ),
]


#: The rules of the listener the PATH_CASES are sent to: ``/admin`` answers 403
#: itself, everything else goes to the backend (which must see none of these).
DENIED = "/admin"


def _path(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


PATH_CASES = [
    Case("denied path", _path(b"/admin"), 403),
    Case("denied path percent-encoded", _path(b"/%61dmin"), 403),
    Case("denied path upper-case escapes", _path(b"/%61%64%6D%69%6E/x"), 403),
    Case("denied path after a double slash", _path(b"//admin"), 403),
    Case("denied path after a dot segment", _path(b"/./admin"), 403),
    Case("denied path after a dot-dot segment", _path(b"/x/../admin"), 403),
    Case("denied path after an encoded dot-dot", _path(b"/x/%2e%2e/admin"), 403),
    Case("denied path after encoded slashes", _path(b"/x%2F..%2Fadmin"), 403),
    Case("denied path in absolute form", _path(b"http://a.test/%61dmin"), 403),
    Case("dot-dot above the root", _path(b"/../admin"), 400),
    Case("encoded dot-dot above the root", _path(b"/%2e%2e/admin"), 400),
    Case("invalid percent-escape", _path(b"/%zzadmin"), 400),
    Case("truncated percent-escape", _path(b"/admin%4"), 400),
    Case("encoded NUL", _path(b"/admin%00.html"), 400),
    Case(
        "websocket upgrade to an encoded denied path",
        b"GET /%61dmin HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        403,
    ),
    Case(
        "websocket upgrade above the root",
        b"GET /../x HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        400,
    ),
]


# -- Host header and absolute-form targets (RFC 9112 3.2, 3.2.2) ----------------

#: The listener the HOST_CASES are sent to: requests for FORWARDED_HOST go to the
#: backend (which must see none of these), DENIED_HOST is answered 403 by the
#: proxy, DEFAULT_HOST is the default domain and answers 410.
FORWARDED_HOST = "a.test"
DENIED_HOST = "b.test"
DEFAULT_HOST = "c.test"

_WS = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)

HOST_CASES = [
    Case(
        "absolute-form target wins over the Host header",
        b"GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        403,
    ),
    Case(
        "absolute-form target with a port and upper case wins over the Host header",
        b"GET HTTP://B.TEST:8080/x?q=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        403,
    ),
    Case(
        "absolute-form target without a Host header on HTTP/1.1",
        b"GET http://a.test/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        400,
    ),
    Case(
        "absolute-form target with userinfo",
        b"GET http://a.test@b.test/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        400,
    ),
    Case(
        "duplicate Host headers",
        b"GET / HTTP/1.1\r\nHost: b.test\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        400,
    ),
    Case(
        "duplicate identical Host headers",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        400,
    ),
    Case("Host header missing on HTTP/1.1", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    Case(
        "duplicate Host headers with a body",
        b"POST / HTTP/1.1\r\nHost: b.test\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    Case("HTTP/1.0 without Host goes to the default domain", b"GET / HTTP/1.0\r\n\r\n", 410),
    Case("HTTP/1.0 absolute-form target", b"GET http://b.test/ HTTP/1.0\r\n\r\n", 403),
    Case(
        "websocket upgrade in absolute form wins over the Host header",
        b"GET http://b.test/ws HTTP/1.1\r\nHost: a.test\r\n" + _WS,
        403,
    ),
    Case(
        "websocket upgrade with duplicate Host headers",
        b"GET /ws HTTP/1.1\r\nHost: b.test\r\nHost: a.test\r\n" + _WS,
        400,
    ),
    Case("websocket upgrade without a Host header", b"GET /ws HTTP/1.1\r\n" + _WS, 400),
]
