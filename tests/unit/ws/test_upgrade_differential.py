"""Our upgrade checks and Autobahn's, side by side on a generated corpus.

:mod:`clbproxy.ws.upgrade` replaces Autobahn's handshake on the default relay
path, so it must accept and refuse what Autobahn accepts and refuses.  A seeded
generator mutates a valid upgrade request (every header missing, repeated,
renamed in another case, padded, given odd or invalid values; keys of wrong
lengths and alphabets; versions; subprotocol lists; permessage-deflate offers
with valid and invalid parameters and broken grammar) and a valid backend
``101`` (the accept wrong, headers missing, subprotocols and extension
parameters not offered or invalid).

Each request goes to an in-memory Autobahn server with the options of
clbproxy's relay (:class:`clbproxy.ws.relay.RelayServerFactory`); each answer
to an Autobahn client that sent the same offer, its key fixed, accepting a
permessage-deflate response as the relay does
(:func:`clbproxy.ws.deflate.end_to_end_accept`).  Both must agree (the same
status for a request, accept or fail for an answer), except where a named
:class:`Difference` below says why not; every named difference must show up
in the corpus, so the tables cannot go stale.
"""

from __future__ import annotations

import base64
import functools
import random
import re
from typing import Callable, Optional

import attrs
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PERMESSAGE_COMPRESSION_EXTENSION,
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clbproxy.ws.deflate import accept_first_deflate_offer, end_to_end_accept
from clbproxy.ws.upgrade import (
    BadBackendAnswer,
    ClientUpgrade,
    UpgradeRefused,
    accept_value,
    check_backend_answer,
    check_client_upgrade,
)

SEED = 6455
#: Random requests and answers, on top of the single mutations listed in full.
RANDOM_CASES = 2500

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
VALID_REQUEST = (
    ("Host", "public.test"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CANONICAL_NUMBER = re.compile(r"0|[1-9][0-9]*")
#: Whitespace ``str.strip()`` removes that HTTP's OWS (SP, HTAB) is not.
_OBS_SPACES = "\xa0\x85"
#: Compression extensions Autobahn parses besides permessage-deflate (installed libraries).
OTHER_COMPRESSION = frozenset(PERMESSAGE_COMPRESSION_EXTENSION) - {"permessage-deflate"}


@attrs.frozen
class Request:
    """A client's upgrade request: request line parts and header lines in order."""

    headers: tuple[tuple[str, str], ...]
    method: str = "GET"
    http: str = "HTTP/1.1"

    def wire(self) -> bytes:
        lines = [f"{self.method} / {self.http}"] + [f"{n}: {v}" for n, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


@attrs.frozen
class Answer:
    """A backend's 101 headers, for the client upgrade they answer."""

    upgrade: ClientUpgrade
    headers: tuple[tuple[str, str], ...]

    def wire(self) -> bytes:
        lines = ["HTTP/1.1 101 Switching Protocols"] + [f"{n}: {v}" for n, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


@attrs.frozen
class Difference:
    """A deliberate difference from Autobahn: which cases it covers, and why we differ."""

    name: str
    why: str
    covers: Callable[..., bool]


# -- the features the differences are about -----------------------------------------


def _obs_space_at_ends(values: list[str]) -> bool:
    return any(v.strip(" \t") != v.strip() for v in values)


def _int_but_not_canonical(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return not _CANONICAL_NUMBER.fullmatch(value.strip(" \t"))


def _autobahn_extensions(value: str, remove_quotes: bool = True) -> list:
    return WebSocketProtocol._parseExtensionsHeader(None, value, removeQuotes=remove_quotes)


def _window_bits_read_by_int(values: list[str]) -> bool:
    """A window-bits value Autobahn's ``int()`` takes though it is not plain decimal."""
    for value in values:
        for name, params in _autobahn_extensions(value):
            for param, found in params.items():
                if param.endswith("_window_bits") and name == "permessage-deflate":
                    if any(v is not True and _int_but_not_canonical(v) for v in found):
                        return True
    return False


def _quoted_is_token(value: str) -> bool:
    if len(value) < 2 or not value.endswith('"') or value.endswith('\\"'):
        return False
    return bool(_TOKEN.fullmatch(re.sub(r"\\(.)", r"\1", value[1:-1])))


def _breaks_extension_grammar(values: list[str]) -> bool:
    """A ``Sec-WebSocket-Extensions`` RFC 6455 9.1 refuses, read apart from our parser.

    Autobahn's own split (at ``,``, ``;`` and ``=``, quotes kept) is checked
    piece by piece: names must be tokens, values tokens or quoted tokens; a
    quoted-pair (``\\``) is unescaped by RFC 9110 and not by Autobahn.
    """
    for value in values:
        if "\\" in value:
            return True
        for name, params in _autobahn_extensions(value, remove_quotes=False):
            if not _TOKEN.fullmatch(name):
                return True
            for param, found in params.items():
                if not _TOKEN.fullmatch(param):
                    return True
                for v in found:
                    if v is True:
                        continue
                    if not (_TOKEN.fullmatch(v) or (v.startswith('"') and _quoted_is_token(v))):
                        return True
    return False


def _escaped(values: list[str]) -> bool:
    return any("\\" in value for value in values)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bad_subprotocol_list(values: list[str]) -> bool:
    elements = [e.strip() for v in values for e in v.split(",")]
    return any(not e or not _TOKEN.fullmatch(e) for e in elements)


def _other_compression_offer(values: list[str]) -> bool:
    return any(
        name in OTHER_COMPRESSION for value in values for name, _ in _autobahn_extensions(value)
    )


def _all_request_values(case: Request) -> list[str]:
    return [v for _, v in case.headers]


#: Where our answer to a client's request differs from Autobahn's, and why.
REQUEST_DIFFERENCES = (
    Difference(
        "Upgrade and Connection are lists of tokens",
        "RFC 9110 7.8 and 7.6.1: an Upgrade element is protocol-name[/version], a Connection "
        "element a token; a list with anything else (web socket, a NEL) is malformed and 400, "
        "where Autobahn only looks for its own token among the elements",
        lambda case, ours, theirs: (
            ours[0] == 400 and ours[1].endswith(("(RFC 9110 7.8)", "(RFC 9110 7.6.1)"))
        ),
    ),
    Difference(
        "unsupported version: 426",
        "RFC 6455 4.4 and clbproxy today (RelayServerProtocol.failHandshake) answer a "
        "version other than 13 with 426 Upgrade Required; Autobahn says 400 with the same "
        "Sec-WebSocket-Version: 13 header",
        lambda case, ours, theirs: ours[0] == 426 and theirs[0] == 400,
    ),
    Difference(
        "HTTP version",
        "a handshake that is not HTTP/1.1 is 400, as clbproxy's listener answers before the "
        "relay; Autobahn (never reached there) says 505",
        lambda case, ours, theirs: case.http != "HTTP/1.1" and ours[0] == 400,
    ),
    Difference(
        "no Upgrade header",
        "the listener never hands a request without Upgrade: websocket to the relay (it is "
        "forwarded as HTTP); on its own our check says 400 and Autobahn renders its status page",
        lambda case, ours, theirs: not case.values("upgrade") and ours[0] == 400,
    ),
    Difference(
        "NBSP or NEL around a value",
        "HTTP's optional whitespace is SP and HTAB (RFC 9110 5.6.3); Autobahn trims values with "
        "str.strip(), which also removes U+00A0 and U+0085, so it reads a key, version, token "
        "or port that is not one",
        lambda case, ours, theirs: _obs_space_at_ends(_all_request_values(case)) and ours[0] != 101,
    ),
    Difference(
        "numbers read by int()",
        "Sec-WebSocket-Version and window bits are plain decimal (RFC 6455 4.1, RFC 7692 "
        "7.1.2); Autobahn reads them with int(), which takes 013, +13, 1_3; a Host port "
        "likewise (+80 or -1 is no port, RFC 3986 3.2.3)",
        lambda case, ours, theirs: (
            ours[0] == 400
            and (
                any(_int_but_not_canonical(v) for v in case.values("sec-websocket-version"))
                or _window_bits_read_by_int(case.values("sec-websocket-extensions"))
                or any(
                    ":" in h and _int_but_not_canonical(h.rsplit(":", 1)[1])
                    for h in case.values("host")
                )
            )
        ),
    ),
    Difference(
        "subprotocols are tokens",
        "RFC 6455 4.1: each offered subprotocol is a token, and an empty list element is "
        "skipped (RFC 9110 5.6.1); Autobahn takes any text between commas and offers an empty "
        "one, refusing two of them as duplicates",
        lambda case, ours, theirs: (
            {ours[0], theirs[0]} == {101, 400}
            and _bad_subprotocol_list(case.values("sec-websocket-protocol"))
        ),
    ),
    Difference(
        "extension grammar",
        "a Sec-WebSocket-Extensions value outside RFC 6455 9.1 (an empty or non-token name, "
        "a value that is no token or quoted token) is 400 whatever the extension, and a "
        "quoted-pair is unescaped; Autobahn splits at , ; = and only looks at the offers it "
        "knows, quotes stripped, escapes kept",
        lambda case, ours, theirs: (
            _breaks_extension_grammar(case.values("sec-websocket-extensions"))
            and (ours[0] == 400 or _escaped(case.values("sec-websocket-extensions")))
        ),
    ),
    Difference(
        "several Sec-WebSocket-Extensions fields",
        "RFC 6455 11.3.2: repeated fields in a request are one list, as clbproxy reads them "
        "today (twisted.web joins them before Autobahn sees them); Autobahn on its own refuses",
        lambda case, ours, theirs: (
            len(case.values("sec-websocket-extensions")) > 1 and theirs[0] == 400
        ),
    ),
    Difference(
        "other compression extensions",
        "an offer of permessage-bzip2 (parsed by Autobahn when bz2 is installed) is dropped "
        "like any extension the relay does not forward, never refused for its parameters",
        lambda case, ours, theirs: (
            _other_compression_offer(case.values("sec-websocket-extensions")) and theirs[0] == 400
        ),
    ),
)


def _deflate_response_lacks_server_bits(case: Answer) -> bool:
    offer = case.upgrade.deflate_params
    if offer is None or offer.server_max_window_bits is None:
        return False
    return any(
        name == "permessage-deflate" and "server_max_window_bits" not in params
        for value in case.values("sec-websocket-extensions")
        for name, params in _autobahn_extensions(value)
    )


#: Where our verdict on a backend's 101 differs from Autobahn's client, and why.
ANSWER_DIFFERENCES = (
    Difference(
        "server_max_window_bits echoed",
        "RFC 7692 7.1.2.1: a server accepts server_max_window_bits=N by answering it at N or "
        "below; Autobahn (and the relay before) took an answer without it, after which the "
        "backend may compress with a window the client never agreed to",
        lambda case, ours, theirs: _deflate_response_lacks_server_bits(case) and not ours,
    ),
    Difference(
        "numbers read by int()",
        "as for requests: window bits are plain decimal (RFC 7692 7.1.2)",
        lambda case, ours, theirs: (
            not ours and _window_bits_read_by_int(case.values("sec-websocket-extensions"))
        ),
    ),
    Difference(
        "extension grammar",
        "as for requests: RFC 6455 9.1, quoted-pairs unescaped",
        lambda case, ours, theirs: (
            _breaks_extension_grammar(case.values("sec-websocket-extensions"))
            and (not ours or _escaped(case.values("sec-websocket-extensions")))
        ),
    ),
    Difference(
        "a 101 head that is not UTF-8",
        "header values are Latin-1 text (RFC 9110 5.5, obs-text), and only the handshake's "
        "fields are judged; Autobahn's client decodes the whole head as UTF-8 for a debug line "
        "and raises, so it never completes such a handshake",
        lambda case, ours, theirs: ours and not _utf8(case.wire()),
    ),
)


# -- the two sides ----------------------------------------------------------------


class _Transport(StringTransport):
    """A StringTransport that lets Autobahn unregister a producer it never registered."""

    def unregisterProducer(self) -> None:
        self.producer = None


class _Silent:
    """A log that drops everything: thousands of refused handshakes need no log lines."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


@functools.cache
def _server_factory() -> WebSocketServerFactory:
    """Autobahn's server with the options of :class:`clbproxy.ws.relay.RelayServerFactory`."""
    factory = WebSocketServerFactory(server="clbproxy")
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(
        openHandshakeTimeout=0,
        closeHandshakeTimeout=5,
        failByDrop=False,
        perMessageCompressionAccept=accept_first_deflate_offer,
        versions=[13],
        allowNullOrigin=True,
    )
    return factory


def autobahn_answer(case: Request) -> tuple[int, bytes]:
    """The status Autobahn's server answers ``case`` with, and its response."""
    protocol = _server_factory().buildProtocol(None)
    protocol.log = _Silent()
    transport = _Transport()
    protocol.makeConnection(transport)
    protocol.dataReceived(case.wire())
    response = transport.value()
    return int(response.split(b" ", 2)[1]), response


def our_answer(case: Request) -> tuple[int, str]:
    """The status :func:`check_client_upgrade` answers ``case`` with, and why."""
    try:
        check_client_upgrade(
            case.method.encode("latin-1"),
            case.http.encode("latin-1"),
            [(n.encode("latin-1"), v.encode("latin-1")) for n, v in case.headers],
        )
    except UpgradeRefused as e:
        return e.status, e.detail
    return 101, ""


class _Client(WebSocketClientProtocol):
    accepted = False

    def onConnect(self, response) -> None:
        self.accepted = True


@functools.cache
def _client_factory(protocols: tuple[str, ...], offer: Optional[str]) -> WebSocketClientFactory:
    """Autobahn's client offering ``protocols`` and the client's deflate ``offer``, as the relay.

    The relay parsed the client's offer with Autobahn, passed it to the backend
    and accepted the backend's response only if it fits the offer
    (:func:`clbproxy.ws.deflate.end_to_end_accept` raised otherwise).
    """
    factory = WebSocketClientFactory(url="ws://public.test/", protocols=list(protocols))
    factory.protocol = _Client
    options: dict = dict(openHandshakeTimeout=0, failByDrop=False)
    if offer is not None:
        (_, params), *_ = _autobahn_extensions(offer)
        parsed = PerMessageDeflateOffer.parse(params)

        def accept(response):
            if not isinstance(response, PerMessageDeflateResponse):
                return None
            try:
                end_to_end_accept(parsed, response)
            except Exception:
                return None
            return PerMessageDeflateResponseAccept(response)

        options.update(perMessageCompressionOffers=[parsed], perMessageCompressionAccept=accept)
    factory.setProtocolOptions(**options)
    return factory


def autobahn_accepts(case: Answer) -> bool:
    """Whether Autobahn's client, having sent ``case.upgrade``'s key and offers, accepts."""
    factory = _client_factory(case.upgrade.protocols, case.upgrade.deflate_offer)
    protocol = factory.buildProtocol(None)
    protocol.log = _Silent()
    protocol.makeConnection(_Transport())
    protocol.websocket_key = case.upgrade.key.encode("ascii")
    try:
        protocol.dataReceived(case.wire())
    except UnicodeDecodeError:
        # Autobahn's client decodes the head as UTF-8 for a debug line: a
        # Latin-1 byte (NEL) makes it raise, so the handshake never completes.
        return False
    return protocol.accepted


def we_accept(case: Answer) -> bool:
    try:
        check_backend_answer(case.upgrade, case.headers)
    except BadBackendAnswer:
        return False
    return True


# -- the corpus -------------------------------------------------------------------

PADDING = ("", " ", "\t", "  ", "\xa0", "\x85")
BITS = ("9", "10", "12", "15")
ODD_BITS = ("8", "16", "0", "010", "+10", "1_0", "abc", '"10"', '"1\\0"', '"10', '" 10"', "")
PARAMS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)


#: Extension offers every corpus tries, besides generated ones.
EXTENSIONS = (
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_max_window_bits=010",
    'permessage-deflate; server_max_window_bits="10"',
    'permessage-deflate; server_max_window_bits="10',
    'permessage-deflate; client_max_window_bits="1\\0"',
    "permessage-deflate; x, permessage-deflate",
    "permessage-deflate, permessage-deflate; mem_level=8",
    "permessage-bzip2; server_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover=1",
    "PerMessage-Deflate; Client_Max_Window_Bits",
    "x-webkit-deflate-frame, permessage-deflate",
    "foo; a b, permessage-deflate",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
)


def _key(rng: random.Random, size: int = 16) -> str:
    return base64.b64encode(rng.randbytes(size)).decode("ascii")


def _deflate(rng: random.Random, valid: bool, name: str = "permessage-deflate") -> str:
    """A permessage-deflate element: valid parameters, or any mix of odd ones."""
    params = []
    names = list(PARAMS) + ([] if valid else ["mem_level", "x"])
    for param in rng.sample(names, rng.randint(0, 3 if valid else 4)):
        if param.endswith("takeover"):
            value = None if valid or rng.random() < 0.7 else rng.choice(("", "1", '""'))
        elif param == "client_max_window_bits" and rng.random() < 0.4:
            value = None
        elif param.endswith("bits"):
            value = rng.choice(BITS if valid or rng.random() < 0.5 else ODD_BITS)
            value = None if not valid and rng.random() < 0.1 else value
        else:
            value = rng.choice((None, "8"))
        if not valid and rng.random() < 0.1:
            param = param.upper()
        params.append(param if value is None else param + rng.choice(("=", " = ")) + value)
    if not valid and params and rng.random() < 0.15:
        params.append(params[0])
    separator = rng.choice(("; ", ";", " ; "))
    return separator.join([name] + params)


def _extensions(rng: random.Random) -> str:
    """A Sec-WebSocket-Extensions value: offers, other extensions, broken grammar."""
    elements = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.random()
        if kind < 0.4:
            elements.append(_deflate(rng, valid=True))
        elif kind < 0.7:
            elements.append(_deflate(rng, valid=False))
        elif kind < 0.8:
            elements.append(rng.choice(("x-webkit-deflate-frame", "foo; bar=baz", "foo; bar")))
        elif kind < 0.85:
            elements.append(_deflate(rng, valid=rng.random() < 0.5, name="permessage-bzip2"))
        else:
            elements.append(
                rng.choice(
                    (
                        "permessage-deflate;",
                        "foo;",
                        "foo; a=",
                        "foo; a b",
                        'foo; a="b',
                        "foo; =1",
                        "PerMessage-Deflate; Client_Max_Window_Bits",
                        'permessage-deflate; server_max_window_bits="1\\2"',
                        "",
                        "a b",
                        "permessage-bzip2; server_max_window_bits=10",
                    )
                )
            )
    return rng.choice((", ", ",", " , ")).join(elements)


def _request_values(rng: random.Random) -> dict[str, list[str]]:
    """Values to try for each request header, valid and not."""
    return {
        "Host": ["public.test", "public.test:8080", "public.test:", "public.test:abc"]
        + ["[::1]:80", "[::1]", "public.test:+80", "public.test:-1", "", "a:80:80"],
        "Upgrade": ["websocket", "WebSocket", "websocket, h2c", "h2c,websocket", "h2c"]
        + ["websocket/13", "", "web socket", ",websocket,"],
        "Connection": ["Upgrade", "upgrade", "keep-alive, Upgrade", "keep-alive", "Upgrade2"]
        + ["", "close,upgrade", "Upgrade, Upgrade"],
        "Sec-WebSocket-Key": [_key(rng), _key(rng), _key(rng, 15), _key(rng, 17), _key(rng, 12)]
        + [_key(rng).rstrip("="), base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode()]
        + [KEY[:10] + "=" + KEY[11:], KEY.lower(), KEY[:-2] + "A=", KEY + "==", ""]
        + [KEY[:12] + " " + KEY[13:], "dGhlIHNhbXBsZSBub25jZR==", KEY[:-2] + "=" + " "],
        "Sec-WebSocket-Version": ["13", "8", "7", "13, 8", "8, 13", "", "abc", "013", "+13"]
        + ["1_3", "999", "0", "-13", "13.0", "08"],
        "Origin": ["http://public.test", "https://a.test:8443", "null", "NULL", "file://"]
        + ["http://", "foo", "http://a:99999", "http://a:x", "http://[::1", "", "HTTP://A.TEST"],
        "Sec-WebSocket-Protocol": ["chat", "chat, superchat", "chat,chat", "chat, , superchat"]
        + ["", ",", ", ,", "a b", "chat;v=1", "\xe9", "chat,Chat", "v1.proto, v2.proto"],
        "Sec-WebSocket-Extensions": list(EXTENSIONS) + [_extensions(rng) for _ in range(20)],
    }


def _mutate(rng: random.Random, headers: list, values: dict[str, list[str]]) -> None:
    name = rng.choice(list(values))
    present = [i for i, (n, _) in enumerate(headers) if n.lower() == name.lower()]
    op = rng.random()
    if op < 0.45 or not present:
        value = rng.choice(values[name])
        if present:
            headers[present[0]] = (name, value)
        else:
            headers.insert(rng.randint(0, len(headers)), (name, value))
    elif op < 0.6:
        del headers[present[0]]
    elif op < 0.75:
        value = headers[present[0]][1] if rng.random() < 0.5 else rng.choice(values[name])
        headers.append((name, value))
    elif op < 0.85:
        n, v = headers[present[0]]
        headers[present[0]] = (rng.choice((n.lower(), n.upper(), n.swapcase())), v)
    else:
        n, v = headers[present[0]]
        headers[present[0]] = (n, rng.choice(PADDING) + v + rng.choice(PADDING))


@functools.cache
def request_corpus() -> tuple[Request, ...]:
    """Every single mutation of a valid request, then random combinations of a few."""
    rng = random.Random(SEED)
    values = _request_values(rng)
    cases = [Request(VALID_REQUEST), Request(VALID_REQUEST, http="HTTP/1.0")]
    cases += [Request(VALID_REQUEST, method=m) for m in ("get", "POST", "HEAD")]
    for name, options in values.items():
        others = [(n, v) for n, v in VALID_REQUEST if n != name]
        cases.append(Request(tuple(others)))
        for value in options:
            cases.append(Request(tuple(others) + ((name, value),)))
            cases.append(Request(tuple(others) + ((name, value), (name, value))))
            for pad in PADDING[1:]:
                cases.append(Request(tuple(others) + ((name, pad + value + pad),)))
    for _ in range(RANDOM_CASES):
        headers = list(VALID_REQUEST)
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            _mutate(rng, headers, values)
        cases.append(Request(tuple(headers)))
    return tuple(cases)


def _upgrade(rng: random.Random) -> ClientUpgrade:
    """A client upgrade that passed our check: some subprotocols, maybe a deflate offer."""
    protocols = rng.choice(("", "chat", "chat, superchat", "v2.chat, chat, x"))
    headers = [(n.encode(), v.encode()) for n, v in VALID_REQUEST if n != "Sec-WebSocket-Key"]
    headers.append((b"Sec-WebSocket-Key", _key(rng).encode()))
    if protocols:
        headers.append((b"Sec-WebSocket-Protocol", protocols.encode()))
    if rng.random() < 0.75:
        headers.append((b"Sec-WebSocket-Extensions", _deflate(rng, valid=True).encode()))
    return check_client_upgrade(b"GET", b"HTTP/1.1", headers)


def _deflate_response(rng: random.Random, upgrade: ClientUpgrade) -> str:
    """A permessage-deflate response that fits the offer, or one that may not."""
    offer = upgrade.deflate_params
    if offer is None or rng.random() < 0.4:
        return _deflate(rng, valid=rng.random() < 0.6)
    params = []
    if offer.server_no_context_takeover or rng.random() < 0.3:
        params.append("server_no_context_takeover")
    if rng.random() < 0.4:
        params.append("client_no_context_takeover")
    if offer.server_max_window_bits is not None:
        params.append(f"server_max_window_bits={rng.randint(9, offer.server_max_window_bits)}")
    elif rng.random() < 0.3:
        params.append(f"server_max_window_bits={rng.randint(9, 15)}")
    if offer.client_max_window_bits and rng.random() < 0.6:
        params.append(f"client_max_window_bits={rng.randint(9, 15)}")
    rng.shuffle(params)
    return "; ".join(["permessage-deflate"] + params)


#: Extension responses every answer corpus tries, besides generated ones.
ANSWER_EXTENSIONS = (
    "permessage-deflate; server_max_window_bits=10",
    'permessage-deflate; server_max_window_bits="10',
    'permessage-deflate; server_max_window_bits=10"',
    'permessage-deflate; server_max_window_bits="1\\0"',
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_max_window_bits=+9",
    "permessage-deflate, ",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
)


#: Offers every answer corpus answers with each of :data:`ANSWER_EXTENSIONS`.
FIXED_OFFERS = (
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_max_window_bits=12; server_no_context_takeover",
)


def _answer_values(rng: random.Random, upgrade: ClientUpgrade) -> dict[str, list[str]]:
    return {
        "Upgrade": ["websocket", "WebSocket", "websocket, h2c", "h2c", "", "websocket/13"],
        "Connection": ["Upgrade", "upgrade", "keep-alive, Upgrade", "keep-alive", ""],
        "Sec-WebSocket-Accept": [accept_value(upgrade.key), accept_value(_key(rng))]
        + [accept_value(upgrade.key).lower(), accept_value(upgrade.key)[:-1], ""],
        "Sec-WebSocket-Protocol": list(upgrade.protocols)
        + ["other", "", "CHAT", ", ".join(upgrade.protocols) or "chat"],
        "Sec-WebSocket-Extensions": [_deflate_response(rng, upgrade) for _ in range(6)]
        + [_extensions(rng), "", "x-foo"]
        + [rng.choice(EXTENSIONS), rng.choice(ANSWER_EXTENSIONS)],
    }


@functools.cache
def answer_corpus() -> tuple[Answer, ...]:
    """Every listed extension response to a few offers, then generated upgrades and answers."""
    rng = random.Random(SEED + 1)
    cases = []
    for offered in FIXED_OFFERS:
        upgrade = check_client_upgrade(
            b"GET",
            b"HTTP/1.1",
            [(n.encode(), v.encode()) for n, v in VALID_REQUEST]
            + [(b"Sec-WebSocket-Extensions", offered.encode())],
        )
        valid = (
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_value(KEY)),
        )
        cases.append(Answer(upgrade, valid + (("Server", "caf\xe9"),)))
        for response in ANSWER_EXTENSIONS + EXTENSIONS:
            cases.append(Answer(upgrade, valid + (("Sec-WebSocket-Extensions", response),)))
    for _ in range(RANDOM_CASES):
        upgrade = _upgrade(rng)
        values = _answer_values(rng, upgrade)
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_value(upgrade.key)),
        ]
        if upgrade.protocols and rng.random() < 0.7:
            headers.append(("Sec-WebSocket-Protocol", rng.choice(upgrade.protocols)))
        if upgrade.deflate_params is not None and rng.random() < 0.7:
            headers.append(("Sec-WebSocket-Extensions", _deflate_response(rng, upgrade)))
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            _mutate(rng, headers, values)
        cases.append(Answer(upgrade, tuple(headers)))
    return tuple(cases)


# -- the comparison ---------------------------------------------------------------


@functools.cache
def request_results() -> tuple[list, dict[str, int]]:
    """Cases where we and Autobahn differ for no named reason, and how often each reason applied."""
    unexplained, used = [], {d.name: 0 for d in REQUEST_DIFFERENCES}
    for case in request_corpus():
        ours, (theirs, response) = our_answer(case), autobahn_answer(case)
        if ours[0] == theirs:
            continue
        reason = next(
            (d for d in REQUEST_DIFFERENCES if d.covers(case, ours, (theirs, response))), None
        )
        if reason is None:
            unexplained.append((case, ours, theirs, response[:120]))
        else:
            used[reason.name] += 1
    return unexplained, used


@functools.cache
def answer_results() -> tuple[list, dict[str, int]]:
    unexplained, used = [], {d.name: 0 for d in ANSWER_DIFFERENCES}
    for case in answer_corpus():
        ours, theirs = we_accept(case), autobahn_accepts(case)
        if ours == theirs:
            continue
        reason = next((d for d in ANSWER_DIFFERENCES if d.covers(case, ours, theirs)), None)
        if reason is None:
            unexplained.append((case, ours, theirs))
        else:
            used[reason.name] += 1
    return unexplained, used


class ClientRequestDifferentialTests(unittest.TestCase):
    def test_we_answer_every_request_with_autobahns_status_but_for_the_named_differences(self):
        unexplained, _ = request_results()
        self.assertEqual(unexplained[:10], [], f"{len(unexplained)} unexplained differences")

    def test_every_named_difference_is_seen_in_the_corpus(self):
        _, used = request_results()
        self.assertEqual([name for name, count in used.items() if not count], [])

    def test_the_corpus_holds_accepted_requests_and_every_refusal_status(self):
        statuses = {our_answer(case)[0] for case in request_corpus()}
        self.assertEqual(statuses, {101, 400, 405, 426})
        accepted = sum(our_answer(case)[0] == 101 for case in request_corpus())
        self.assertGreater(accepted, len(request_corpus()) // 5)


class BackendAnswerDifferentialTests(unittest.TestCase):
    def test_we_accept_exactly_the_answers_autobahns_client_accepts_but_for_the_named_ones(self):
        unexplained, _ = answer_results()
        self.assertEqual(unexplained[:10], [], f"{len(unexplained)} unexplained differences")

    def test_every_named_difference_is_seen_in_the_corpus(self):
        _, used = answer_results()
        self.assertEqual([name for name, count in used.items() if not count], [])

    def test_the_corpus_holds_accepted_answers_with_and_without_deflate(self):
        accepted = [case for case in answer_corpus() if we_accept(case)]
        with_deflate = [
            case for case in accepted if check_backend_answer(case.upgrade, case.headers).deflate
        ]
        self.assertGreater(len(accepted), len(answer_corpus()) // 5)
        self.assertGreater(len(with_deflate), len(accepted) // 5)
