"""The WebSocket upgrade, checked on its way through: the client's request and the backend's 101.

With ``websocket_deflate = "end_to_end"`` the proxy does not terminate the
handshake: the client's upgrade request is forwarded with the client's own key,
subprotocols and first permessage-deflate offer, and the backend's answer is
relayed.  This module is what stands between them, sans-IO (headers in, a
verdict out): :func:`check_client_upgrade` reads the request as a server must
(RFC 6455 4.2.1, RFC 7692 5 and 7.1) and either describes it
(:class:`ClientUpgrade`) or says which status to answer (:class:`UpgradeRefused`);
:func:`check_backend_answer` reads a backend's ``101`` as the client would
(RFC 6455 4.1, RFC 7692 7.1) before the client sees it.

Autobahn still terminates every other hop, and these checks are proven against
its own (``tests/unit/ws/test_upgrade_differential.py``: a generated corpus of
requests and answers that both must accept or refuse alike, with the same
status).  The deliberate differences, each a named table in that test:

Client requests

- *Strict values.*  HTTP's optional whitespace is SP and HTAB (RFC 9110 5.6.3);
  Autobahn trims values with ``str.strip()``, which also takes NBSP (U+00A0)
  and NEL (U+0085) off a key, a version, a token.  Such a value is refused here.
- *Strict numbers.*  ``Sec-WebSocket-Version`` is ``13`` and window bits are
  decimal without a sign or leading zero (RFC 6455 4.1, RFC 7692 7.1.2);
  Autobahn reads them with ``int()``, which takes ``013``, ``+13``, ``1_3``.
- *Subprotocols are tokens* (RFC 6455 4.1).  Autobahn takes any text between
  commas (``a b``, ``chat;v=1``) and offers an empty one (``chat, , x``); here
  a non-token is 400 and an empty list element is skipped, as the list rule
  says (RFC 9110 5.6.1), so ``a, , b`` offers two and ``,`` offers none.
- *Extension grammar* (RFC 6455 9.1): a malformed ``Sec-WebSocket-Extensions``
  (``x;``, ``x; a=``, ``x; a b``, an unbalanced quote) is 400 even when it
  names an extension we would drop; Autobahn splits at ``,``, ``;`` and ``=``
  and looks no further.  A quoted value is unescaped (``"1\\0"`` is ``10``);
  Autobahn only strips the quotes.
- *Several Sec-WebSocket-Extensions fields* are one list (RFC 6455 11.3.2), as
  they are today: twisted.web joins them before Autobahn reads them, while
  Autobahn on its own refuses a repeated field.
- *Other compression extensions* (``permessage-bzip2`` and the like, which
  Autobahn parses when their library is installed) are dropped like any
  extension we do not forward, never refused for their parameters.
- *An unsupported version* is 426 with ``Sec-WebSocket-Version: 13``
  (RFC 6455 4.4), as clbproxy answers today; Autobahn says 400 with that header.
- *HTTP version*: not ``HTTP/1.1`` is 400, as the listener answers today
  (Autobahn, never reached there, would say 505).  A request without
  ``Upgrade`` is 400 (the listener only hands over requests that ask for
  ``websocket``; Autobahn would render its status page).
- *Host*: present once, with a port of digits when it has one.  The rest of
  its syntax is the listener's (:func:`clbproxy.http.server.valid_authority`);
  Autobahn reads a port with ``int()`` (``+80``, ``-1``).

Backend answers

- *An accepted server_max_window_bits is echoed*: an offer with
  ``server_max_window_bits=N`` is accepted by a response with that parameter
  at ``N`` or below (RFC 7692 7.1.2.1).  Autobahn (and the relay before this
  module) took a response without it, after which the backend may compress
  with a window the client never agreed to.
- *Strict numbers and extension grammar*, as for requests.
- *A head that is not UTF-8*: header values are Latin-1 text (RFC 9110 5.5)
  and only the handshake's fields are judged; Autobahn's client decodes the
  whole head as UTF-8 (for a debug line) and raises, so such a 101 never
  completed a handshake.

Two choices that follow Autobahn rather than the letter of RFC 7692: window
bits are 9 to 15 (zlib cannot deflate with a window of 8, so an offer of 8 is
refused as it always was), and a malformed permessage-deflate offer is refused
with 400 wherever it is in the list (RFC 7692 5.1 would decline it; clbproxy
always refused it).  A method other than GET is 405 with ``Allow: GET``, as
Autobahn answers.  The offer passed on is the client's first one, canonical
(:meth:`DeflateOffer.extension`): Autobahn's re-serialization, which the relay
used to forward, always added ``client_no_context_takeover``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Iterable, Optional, Sequence, Union
from urllib.parse import urlsplit

import attrs

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: ``token`` (RFC 9110 5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: An ``Upgrade`` list element: ``protocol-name ["/" protocol-version]`` (RFC 9110 7.8).
_PROTOCOL = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?")
#: A Sec-WebSocket-Key: 16 bytes in base64, the 24-character form (RFC 6455 4.1).
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")
#: ``1*DIGIT`` without a leading zero: a number as the RFCs spell one.
_NUMBER = re.compile(r"0|[1-9][0-9]*")
#: Window bits Autobahn (and zlib's deflate) take: RFC 7692 allows 8 as well.
WINDOW_BITS = range(9, 16)
#: HTTP's optional whitespace (RFC 9110 5.6.3).
_OWS = " \t"

DEFLATE = "permessage-deflate"
_SERVER_NO_CONTEXT = "server_no_context_takeover"
_CLIENT_NO_CONTEXT = "client_no_context_takeover"
_SERVER_BITS = "server_max_window_bits"
_CLIENT_BITS = "client_max_window_bits"


class UpgradeRefused(Exception):
    """The client's upgrade request breaks RFC 6455 4.2.1 / RFC 7692: answer status, not 101.

    ``status`` is 400, 426 for an unsupported ``Sec-WebSocket-Version`` (with
    ``Sec-WebSocket-Version: 13`` in ``headers``) or 405 for a method other
    than GET (with ``Allow: GET``); ``detail`` is one line naming the rule.
    """

    def __init__(self, status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


class BadBackendAnswer(Exception):
    """The backend's 101 does not complete the client's handshake; str() is a one-line reason."""


@attrs.frozen
class DeflateOffer:
    """The parameters of one permessage-deflate offer or response (RFC 7692 7.1).

    ``client_max_window_bits`` says the parameter is present; in an offer it
    may come without a value (``client_window_bits`` None: the client accepts
    a limit but sets none), in a response it always has one.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: Optional[int] = None
    client_max_window_bits: bool = False
    client_window_bits: Optional[int] = None

    def extension(self) -> str:
        """The canonical ``Sec-WebSocket-Extensions`` element: the name, then parameters."""
        parts = [DEFLATE]
        if self.server_no_context_takeover:
            parts.append(_SERVER_NO_CONTEXT)
        if self.client_no_context_takeover:
            parts.append(_CLIENT_NO_CONTEXT)
        if self.server_max_window_bits is not None:
            parts.append(f"{_SERVER_BITS}={self.server_max_window_bits}")
        if self.client_max_window_bits:
            if self.client_window_bits is None:
                parts.append(_CLIENT_BITS)
            else:
                parts.append(f"{_CLIENT_BITS}={self.client_window_bits}")
        return "; ".join(parts)


@attrs.frozen
class ClientUpgrade:
    """A client's upgrade request that passed :func:`check_client_upgrade`: what to forward."""

    #: The client's Sec-WebSocket-Key, stripped.
    key: str
    #: Subprotocols offered, in the client's order (empty: none).
    protocols: tuple[str, ...]
    #: The first permessage-deflate offer, re-serialized canonically, or None.
    deflate_offer: Optional[str]
    #: The same offer parsed.
    deflate_params: Optional[DeflateOffer]
    #: The Origin header, stripped (None: none sent).
    origin: Optional[str]


@attrs.frozen
class BackendAcceptance:
    """A backend's 101 that completes the client's handshake: what the client is told."""

    #: The subprotocol the backend chose (one of those offered), None: none.
    protocol: Optional[str]
    #: The Sec-WebSocket-Extensions value for the client (the backend's
    #: permessage-deflate response, canonical), None: no deflate.
    extensions: Optional[str]
    #: When deflate is agreed: (client_no_context_takeover,
    #: server_no_context_takeover), i.e. whether the client and the backend
    #: start each compressed message with a fresh window.
    deflate: Optional[tuple[bool, bool]]
    #: The checked Sec-WebSocket-Accept, the client's too (one SHA-1 per upgrade).
    accept: Optional[str] = attrs.field(default=None, eq=False)


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key``: base64(SHA-1(key + GUID)), RFC 6455 4.2.2."""
    digest = hashlib.sha1((key + GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


def _fields(headers: Sequence[tuple[object, object]]) -> dict[str, list[str]]:
    """Header values by lower-case name, each without its optional whitespace, in order."""
    fields: dict[str, list[str]] = {}
    for name, value in headers:
        if name.__class__ is not str:  # text pairs (the listener's, the backend's) go straight
            name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if value.__class__ is not str:
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        name = name.lower()
        values = fields.get(name)
        if values is None:
            fields[name] = [value.strip(_OWS)]
        else:
            values.append(value.strip(_OWS))
    return fields


def read_request_headers(
    grouped: Iterable[tuple[bytes, Sequence[bytes]]],
) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, list[str]]]:
    """An upgrade request's headers, read once for everything the pass-through needs of them.

    ``grouped``: (name, values) as twisted.web's ``Headers.getAllRawHeaders``
    gives them (one name each, its values in order).  Returns the (name, value)
    text pairs (latin-1), the values by lower-case name joined with ``", "`` (what
    Autobahn gave the relay: the closing stage and the forwarding headers read
    them) and :func:`_fields`'s reading, which :func:`check_upgrade_fields` checks.
    """
    pairs: list[tuple[str, str]] = []
    joined: dict[str, str] = {}
    fields: dict[str, list[str]] = {}
    for raw_name, raw_values in grouped:
        name = raw_name.decode("latin-1")
        lower = name.lower()
        for raw in raw_values:
            value = raw.decode("latin-1")
            pairs.append((name, value))
            known = fields.get(lower)
            if known is None:
                fields[lower] = [value.strip(_OWS)]
                joined[lower] = value
            else:
                known.append(value.strip(_OWS))
                joined[lower] = f"{joined[lower]}, {value}"
    return pairs, joined, fields


def _elements(values: list[str]) -> list[str]:
    """The elements of a comma-separated list over all of a field's lines, empty ones skipped."""
    if len(values) == 1 and "," not in values[0]:  # most fields: one line, one element
        element = values[0].strip(_OWS)
        return [element] if element else []
    if not values:
        return []
    return [
        element
        for value in values
        for element in (part.strip(_OWS) for part in value.split(","))
        if element
    ]


def _has_token(values: list[str], token: str) -> bool:
    return any(element.lower() == token for element in _elements(values))


#: How nearly every client spells its ``Upgrade`` and ``Connection`` (one element, no
#: comma): each is a valid element naming the token, answered without walking the list.
_USUAL_UPGRADE = frozenset({"websocket", "WebSocket", "Websocket"})
_USUAL_CONNECTION = frozenset({"Upgrade", "upgrade"})


def _list_naming(
    values: list[str], element: re.Pattern, token: str, usual: frozenset[str] = frozenset()
) -> Optional[bool]:
    """Whether a list field (``values``) names ``token`` (lower case), in any case.

    None when one of its elements does not match ``element``.  One pass over the
    elements for both questions: every client upgrade asks them.  ``usual``:
    single values known to be one valid element naming ``token``.
    """
    if len(values) == 1 and values[0] in usual:
        return True
    named = False
    for part in _elements(values):
        if element.fullmatch(part) is None:
            return None
        if part.lower() == token:
            named = True
    return named


def _refuse(detail: str) -> UpgradeRefused:
    return UpgradeRefused(400, detail)


def check_client_upgrade(
    method: bytes, version: bytes, headers: Sequence[tuple[Union[bytes, str], Union[bytes, str]]]
) -> ClientUpgrade:
    """Check a client's upgrade request; raises :class:`UpgradeRefused`.

    ``headers`` are the (name, value) pairs as received, duplicates kept: bytes,
    or text decoded as latin-1 (the listener's pairs, checked as they are).
    The checks run in Autobahn's order, so a request with several faults gets
    the status Autobahn would give it.
    """
    return check_upgrade_fields(method, version, _fields(headers))


def check_upgrade_fields(
    method: bytes, version: bytes, fields: dict[str, list[str]]
) -> ClientUpgrade:
    """:func:`check_client_upgrade` for headers already read into ``fields``.

    ``fields``: the values by lower-case name, in order, each without its
    optional whitespace (what :func:`read_request_headers` gives), so a caller
    that reads the headers for other needs too reads them once.
    """
    if version != b"HTTP/1.1":
        raise _refuse("a WebSocket handshake needs HTTP/1.1 (RFC 6455 4.1)")
    if method != b"GET":
        raise UpgradeRefused(
            405, "a WebSocket handshake is a GET request (RFC 6455 4.1)", (("Allow", "GET"),)
        )
    _check_host(fields.get("host", []))
    named = _list_naming(fields.get("upgrade", []), _PROTOCOL, "websocket", _USUAL_UPGRADE)
    if named is None:
        raise _refuse("Upgrade is not a list of protocols (RFC 9110 7.8)")
    if not named:
        raise _refuse("Upgrade does not name websocket (RFC 6455 4.2.1)")
    named = _list_naming(fields.get("connection", []), _TOKEN, "upgrade", _USUAL_CONNECTION)
    if named is None:
        raise _refuse("Connection is not a list of tokens (RFC 9110 7.6.1)")
    if not named:
        raise _refuse("Connection does not name upgrade (RFC 6455 4.2.1)")
    _check_version(_one(fields, "Sec-WebSocket-Version"))
    protocols = _protocols(fields.get("sec-websocket-protocol", []))
    origin = _origin(fields.get("origin", []))
    key = _one(fields, "Sec-WebSocket-Key")
    if not _KEY.fullmatch(key):
        raise _refuse("Sec-WebSocket-Key is not 16 bytes in base64 (RFC 6455 4.2.1)")
    offer = _first_deflate_offer(fields.get("sec-websocket-extensions", []))
    return ClientUpgrade(
        key=key,
        protocols=protocols,
        deflate_offer=offer.extension() if offer is not None else None,
        deflate_params=offer,
        origin=origin,
    )


def check_extended_connect(
    headers: Sequence[tuple[Union[bytes, str], Union[bytes, str]]],
) -> ClientUpgrade:
    """Check a WebSocket's extended CONNECT (RFC 8441 4-5); raises :class:`UpgradeRefused`.

    ``headers`` are the request's regular fields (``host`` from ``:authority``);
    its pseudo-headers were checked by the HTTP/2 connection.  Such a request
    has no key, ``Upgrade`` or ``Connection``: the version, subprotocols,
    extensions and Origin are read as :func:`check_client_upgrade` reads them,
    and the upgrade the backend gets carries a key the proxy makes (16 random
    bytes, RFC 6455 4.1), whose answer :func:`check_backend_answer` checks.
    """
    fields = _fields(headers)
    _check_host(fields.get("host", []))
    _check_version(_one(fields, "Sec-WebSocket-Version"))
    protocols = _protocols(fields.get("sec-websocket-protocol", []))
    origin = _origin(fields.get("origin", []))
    offer = _first_deflate_offer(fields.get("sec-websocket-extensions", []))
    return ClientUpgrade(
        key=new_key(),
        protocols=protocols,
        deflate_offer=offer.extension() if offer is not None else None,
        deflate_params=offer,
        origin=origin,
    )


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes in base64 (RFC 6455 4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name.lower(), [])
    if not values:
        raise _refuse(f"{name} is missing (RFC 6455 4.2.1)")
    if len(values) > 1:
        raise _refuse(f"{name} appears more than once (RFC 6455 4.2.1)")
    return values[0]


def _check_host(hosts: list[str]) -> None:
    if not hosts:
        raise _refuse("Host is missing (RFC 6455 4.2.1)")
    if len(hosts) > 1:
        raise _refuse("Host appears more than once (RFC 6455 4.2.1)")
    host = hosts[0]
    if ":" in host and not host.endswith("]"):
        port = host.rsplit(":", 1)[1]
        if not port.isdigit() or not port.isascii():
            raise _refuse(f"Host has a port that is not a number (RFC 6455 4.2.1): {host!r}")


def _check_version(version: str) -> None:
    if not _NUMBER.fullmatch(version):
        raise _refuse(f"Sec-WebSocket-Version is not a version number (RFC 6455 4.1): {version!r}")
    if version != "13":
        raise UpgradeRefused(
            426,
            f"Sec-WebSocket-Version {version} is not supported, only 13 (RFC 6455 4.4)",
            (("Sec-WebSocket-Version", "13"),),
        )


def _protocols(values: list[str]) -> tuple[str, ...]:
    protocols = _elements(values)
    for protocol in protocols:
        if not _TOKEN.fullmatch(protocol):
            raise _refuse(f"Sec-WebSocket-Protocol offers {protocol!r}, not a token (RFC 6455 4.1)")
    if len(set(protocols)) != len(protocols):
        raise _refuse("Sec-WebSocket-Protocol offers a subprotocol twice (RFC 6455 4.1)")
    return tuple(protocols)


def _origin(values: list[str]) -> Optional[str]:
    """The Origin, when it is ``null`` or a URL with a host (RFC 6454 7), as Autobahn reads it."""
    if not values:
        return None
    if len(values) > 1:
        raise _refuse("Origin appears more than once (RFC 6454 7.3)")
    origin = values[0]
    if origin.lower() == "null":
        return origin
    try:
        parts = urlsplit(origin)
        if parts.scheme.lower() != "file":
            parts.port  # noqa: B018 (raises for a port that is not a number in range)
            if not parts.hostname:
                raise ValueError("no host")
    except ValueError:
        raise _refuse(f"Origin is not a serialized origin (RFC 6454 7): {origin!r}") from None
    return origin


def _first_deflate_offer(values: list[str]) -> Optional[DeflateOffer]:
    """The client's first permessage-deflate offer; every one of them must be well-formed."""
    if not values:
        return None
    try:
        extensions = parse_extensions(", ".join(values))
    except ValueError as e:
        raise _refuse(
            f"Sec-WebSocket-Extensions is not an extension list (RFC 6455 9.1): {e}"
        ) from None
    first = None
    for name, params in extensions:
        if name != DEFLATE:
            continue
        try:
            offer = deflate_parameters(params, response=False)
        except ValueError as e:
            raise _refuse(f"invalid permessage-deflate offer: {e}") from None
        if first is None:
            first = offer
    return first


def parse_extensions(text: str) -> list[tuple[str, list[tuple[str, Optional[str]]]]]:
    """A ``Sec-WebSocket-Extensions`` value (RFC 6455 9.1), names lower-cased; raises ValueError.

    Each extension is ``(name, [(parameter, value or None), ...])``; a quoted
    value is unescaped and must then be a token, as 9.1 requires.  Empty list
    elements are skipped (RFC 9110 5.6.1).
    """
    scanner = _Scanner(text)
    extensions = []
    while True:
        scanner.skip_ows()
        if scanner.at_end():
            return extensions
        if scanner.take(","):
            continue
        name = scanner.token("an extension name")
        params = []
        scanner.skip_ows()
        while scanner.take(";"):
            scanner.skip_ows()
            param = scanner.token("a parameter name")
            scanner.skip_ows()
            value = None
            if scanner.take("="):
                scanner.skip_ows()
                value = scanner.value()
                scanner.skip_ows()
            params.append((param.lower(), value))
        if not scanner.at_end() and not scanner.take(","):
            raise ValueError(f"unexpected {scanner.rest()!r}")
        extensions.append((name.lower(), params))


class _Scanner:
    """A cursor over a header value, for :func:`parse_extensions`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def at_end(self) -> bool:
        return self.at >= len(self.text)

    def rest(self) -> str:
        return self.text[self.at : self.at + 20]

    def skip_ows(self) -> None:
        while not self.at_end() and self.text[self.at] in _OWS:
            self.at += 1

    def take(self, char: str) -> bool:
        if self.text.startswith(char, self.at):
            self.at += 1
            return True
        return False

    def token(self, what: str) -> str:
        match = _TOKEN.match(self.text, self.at)
        if match is None:
            raise ValueError(f"{what} expected at {self.rest()!r}")
        self.at = match.end()
        return match.group()

    def value(self) -> str:
        if not self.take('"'):
            return self.token("a parameter value")
        chars = []
        while not self.at_end():
            char = self.text[self.at]
            self.at += 1
            if char == '"':
                value = "".join(chars)
                if not _TOKEN.fullmatch(value):
                    raise ValueError(f"quoted value {value!r} is not a token")
                return value
            if char == "\\":
                if self.at_end():
                    break
                char = self.text[self.at]
                self.at += 1
            chars.append(char)
        raise ValueError("a quoted value is not closed")


def deflate_parameters(params: list[tuple[str, Optional[str]]], *, response: bool) -> DeflateOffer:
    """The parameters of a permessage-deflate offer or response (RFC 7692 7.1); raises ValueError.

    Each parameter at most once, no others; the ``no_context_takeover`` ones
    without a value; ``server_max_window_bits`` with one;
    ``client_max_window_bits`` with one in a response, with or without in an
    offer.  Window bits are 9 to 15 (see :data:`WINDOW_BITS`).
    """
    seen: set[str] = set()
    found: dict[str, object] = {}
    for name, value in params:
        if name in seen:
            raise ValueError(f"{name} appears twice")
        seen.add(name)
        if name in (_SERVER_NO_CONTEXT, _CLIENT_NO_CONTEXT):
            if value is not None:
                raise ValueError(f"{name} takes no value")
            found[name] = True
        elif name == _SERVER_BITS or name == _CLIENT_BITS:
            if value is None:
                if name == _SERVER_BITS or response:
                    raise ValueError(f"{name} needs a value")
                found[name] = None
            else:
                found[name] = _window_bits(name, value)
        else:
            raise ValueError(f"unknown parameter {name}")
    return DeflateOffer(
        server_no_context_takeover=_SERVER_NO_CONTEXT in found,
        client_no_context_takeover=_CLIENT_NO_CONTEXT in found,
        server_max_window_bits=found.get(_SERVER_BITS),  # type: ignore[arg-type]
        client_max_window_bits=_CLIENT_BITS in found,
        client_window_bits=found.get(_CLIENT_BITS),  # type: ignore[arg-type]
    )


def _window_bits(name: str, value: str) -> int:
    if not _NUMBER.fullmatch(value) or int(value) not in WINDOW_BITS:
        raise ValueError(f"{name}={value} is not 9 to 15")
    return int(value)


def check_backend_answer(
    upgrade: ClientUpgrade, headers: Sequence[tuple[str, str]]
) -> BackendAcceptance:
    """Check a backend's ``101`` against the request it answers; raises :class:`BadBackendAnswer`.

    For a response whose status is already known to be 101.  The backend was
    offered what :func:`check_client_upgrade` found (the client's key, its
    subprotocols, its first permessage-deflate offer), so what it agreed is
    what the client is told.
    """
    return check_backend_fields(upgrade, header_fields(headers))


def header_fields(headers: Sequence[tuple[object, object]]) -> dict[str, list[str]]:
    """Header values by lower-case name, each without its optional whitespace, in order.

    What the checks read; a caller that reads other fields of the same head
    (the ``Connection`` of a backend's ``101``) reads them here too, once.
    """
    return _fields(headers)


def check_backend_fields(upgrade: ClientUpgrade, fields: dict[str, list[str]]) -> BackendAcceptance:
    """:func:`check_backend_answer` for a head already read by :func:`header_fields`."""
    if ", ".join(fields.get("upgrade", [])).lower() != "websocket":
        raise BadBackendAnswer("Upgrade is not websocket (RFC 6455 4.1)")
    connection = fields.get("connection")
    if not connection or not _has_token(connection, "upgrade"):
        raise BadBackendAnswer("Connection does not name upgrade (RFC 6455 4.1)")
    accepts = fields.get("sec-websocket-accept", [])
    if len(accepts) != 1 or accepts[0] != accept_value(upgrade.key):
        raise BadBackendAnswer("Sec-WebSocket-Accept does not answer the key (RFC 6455 4.1)")
    extensions, deflate = _agreed_deflate(upgrade, fields.get("sec-websocket-extensions", []))
    protocols = fields.get("sec-websocket-protocol", [])
    if len(protocols) > 1:
        raise BadBackendAnswer("Sec-WebSocket-Protocol appears more than once (RFC 6455 4.1)")
    protocol = protocols[0] if protocols and protocols[0] else None
    if protocol is not None and protocol not in upgrade.protocols:
        raise BadBackendAnswer(
            f"Sec-WebSocket-Protocol {protocol!r} was not offered (RFC 6455 4.1)"
        )
    return BackendAcceptance(
        protocol=protocol, extensions=extensions, deflate=deflate, accept=accepts[0]
    )


def _agreed_deflate(
    upgrade: ClientUpgrade, values: list[str]
) -> tuple[Optional[str], Optional[tuple[bool, bool]]]:
    """The backend's permessage-deflate response, checked against the offer it was sent."""
    if len(values) > 1:
        raise BadBackendAnswer("Sec-WebSocket-Extensions appears more than once (RFC 6455 4.1)")
    try:
        extensions = parse_extensions(values[0]) if values else []
    except ValueError as e:
        raise BadBackendAnswer(
            f"Sec-WebSocket-Extensions is not an extension list (RFC 6455 9.1): {e}"
        ) from None
    if not extensions:
        return None, None
    if len(extensions) > 1:
        raise BadBackendAnswer("the backend agreed to more than one extension (RFC 6455 4.1)")
    name, params = extensions[0]
    offer = upgrade.deflate_params
    if name != DEFLATE or offer is None:
        raise BadBackendAnswer(
            f"the backend agreed to {name}, which was not offered (RFC 6455 4.1)"
        )
    try:
        response = deflate_parameters(params, response=True)
        _fits(offer, response)
    except ValueError as e:
        raise BadBackendAnswer(f"invalid permessage-deflate response: {e}") from None
    return response.extension(), (
        response.client_no_context_takeover,
        response.server_no_context_takeover,
    )


def _fits(offer: DeflateOffer, response: DeflateOffer) -> None:
    """Whether ``response`` accepts ``offer`` (RFC 7692 7.1.1 and 7.1.2); raises ValueError.

    A server may add ``server_no_context_takeover``, ``client_no_context_takeover``
    and ``server_max_window_bits``, but must keep what the offer asked of it
    (``server_no_context_takeover``, ``server_max_window_bits`` at the offer's
    value or below) and may limit the client's window only if the offer let it.
    """
    if offer.server_no_context_takeover and not response.server_no_context_takeover:
        raise ValueError(f"{_SERVER_NO_CONTEXT} was asked for and is missing")
    if offer.server_max_window_bits is not None:
        bits = response.server_max_window_bits
        if bits is None:
            raise ValueError(f"{_SERVER_BITS} was asked for and is missing")
        if bits > offer.server_max_window_bits:
            raise ValueError(
                f"{_SERVER_BITS}={bits} is above the {offer.server_max_window_bits} asked for"
            )
    if response.client_max_window_bits and not offer.client_max_window_bits:
        raise ValueError(f"{_CLIENT_BITS} was not offered")
