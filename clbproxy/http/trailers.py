"""Trailer fields of chunked messages, carried through the proxy in both directions.

twisted.web's chunked decoder collects the raw trailer lines of a message
(``_ChunkedTransferDecoder._trailerHeaders``, bounded in size) but hands them
to nobody, and its HTTP client ends every chunked request body with an empty
trailer section.  This module holds what the proxy adds:

- :func:`parse_trailer_lines`: the raw lines as ``(name, value)`` pairs, held to
  the rules of a header line (a token name, a colon, no NUL/CR/LF, no obs-fold);
- :func:`forwardable`: the fields that may cross the proxy.  A trailer field is
  never merged into the header section by us, but a recipient may merge it
  (RFC 9110 6.5.2), so a field whose meaning needs to be known before the
  content (RFC 9110 6.5.1: framing, routing, authentication, request modifiers,
  response control, content format) or that the proxy itself vouches for
  (``X-Forwarded-*``, ``X-Real-IP``, ``Via``) is dropped: :data:`FORBIDDEN`;
- the client side: :class:`TrailerClientProtocol` sends a request body's
  trailers after its last chunk and collects a chunked response's trailers
  for :class:`clbproxy.http.forwarder.HTTPForwarder`.  It also shows the forwarder
  the response's ``Connection`` header, which Twisted's client keeps out of
  ``response.headers`` (:func:`response_connection`), so the headers it names
  can be removed.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web._abnf import _istoken
from twisted.web._newclient import ChunkedEncoder, HTTP11ClientProtocol
from twisted.web._newclient import Request as ClientRequest
from twisted.web.http import _ChunkedTransferDecoder

from clbproxy.http.forwarded import FORWARDING_HEADERS

log = Logger()

Field = Tuple[bytes, bytes]

#: Trailer fields never forwarded (lower-case names), in either direction.
FORBIDDEN = frozenset(
    {
        # message framing and connection control
        "content-length",
        "transfer-encoding",
        "trailer",
        "te",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        # routing, and what the proxy vouches for
        "host",
        "max-forwards",
        "via",
        "forwarded",
        *FORWARDING_HEADERS,
        # request modifiers: controls and conditionals
        "expect",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "cache-control",
        "pragma",
        # authentication and state
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "authentication-info",
        "proxy-authentication-info",
        "cookie",
        "set-cookie",
        # response control and content format
        "age",
        "expires",
        "date",
        "location",
        "retry-after",
        "vary",
        "content-type",
        "content-encoding",
        "content-range",
        "content-language",
        "content-location",
    }
)


class TrailerError(ValueError):
    """A trailer line that is not a well-formed field line; the message says which rule."""


def parse_trailer_lines(lines: Iterable[bytes]) -> List[Field]:
    """The ``(name, value)`` pairs of raw trailer lines (no CRLF), or :class:`TrailerError`.

    The same rules as the request's header lines: obs-fold (a line starting
    with a space or tab), a name that is not a token (which includes space
    before the colon), no colon, NUL, CR or LF in a value are all refused.
    """
    fields: List[Field] = []
    for raw in lines:
        line = bytes(raw)
        if line[:1] in (b" ", b"\t"):
            raise TrailerError("obsolete line folding in a trailer field is not accepted")
        name, colon, value = line.partition(b":")
        if not colon:
            raise TrailerError("a trailer line without a colon")
        if not name or not _istoken(name):
            raise TrailerError("a trailer field name that is not a token")
        value = value.strip(b" \t")
        if len(value.translate(None, b"\x00\r\n")) != len(value):
            raise TrailerError("NUL, CR or LF in a trailer field value")
        fields.append((name, value))
    return fields


def forwardable(fields: Iterable[Field], drop: Iterable[str] = ()) -> List[Field]:
    """The fields that may be forwarded: not :data:`FORBIDDEN`, not in ``drop`` (lower-case)."""
    extra = frozenset(drop)
    return [
        (name, value)
        for name, value in fields
        if (lower := name.decode("latin-1").lower()) not in FORBIDDEN and lower not in extra
    ]


def trailer_section(fields: Sequence[Field]) -> bytes:
    """The last chunk and trailer section that end a chunked body carrying ``fields``."""
    return b"0\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"


def accepts_trailers(te_values: Iterable[bytes]) -> bool:
    """True when ``TE`` header values name ``trailers``."""
    return any(
        token.split(b";", 1)[0].strip().lower() == b"trailers"
        for value in te_values
        for token in value.split(b",")
    )


class _TrailerChunkedEncoder(ChunkedEncoder):
    """Twisted's request body chunk encoder, ending the body with the producer's trailers."""

    def __init__(self, transport, producer) -> None:
        super().__init__(transport)
        self._producer = producer

    def unregisterProducer(self) -> None:
        if self.transport is None:
            return super().unregisterProducer()
        trailers = getattr(self._producer, "forwarded_trailers", None)
        fields = trailers() if trailers is not None else []
        self.transport.write(trailer_section(fields))
        self.transport.unregisterProducer()
        self._allowNoMoreWrites()


class TrailerRequest(ClientRequest):
    """A backend request whose chunked body may end with the body producer's trailers."""

    def _writeToBodyProducerChunked(self, transport) -> Deferred:
        # Twisted's own method, with an encoder that writes the trailer section.
        self._writeHeaders(transport, b"Transfer-Encoding: chunked\r\n")
        encoder = _TrailerChunkedEncoder(transport, self.bodyProducer)
        encoder.registerProducer(self.bodyProducer, True)
        d = self.bodyProducer.startProducing(encoder)

        def produced(ignored):
            encoder.unregisterProducer()

        def failed(failure):
            # No last chunk: the backend must not take a failed body as complete.
            encoder._allowNoMoreWrites()
            transport.unregisterProducer()
            return failure

        d.addCallbacks(produced, failed)
        return d


def _response_trailers(decoder: object) -> List[Field]:
    lines = getattr(decoder, "_trailerHeaders", None)
    if not isinstance(decoder, _ChunkedTransferDecoder) or not lines:
        return []
    fields: List[Field] = []
    for line in lines:
        try:
            fields.extend(parse_trailer_lines([line]))
        except TrailerError as e:
            log.warn("A backend sent a malformed trailer line; it is dropped: {error}", error=e)
    return fields


def response_trailers(response: object) -> List[Field]:
    """The trailer fields of a complete response received by :class:`TrailerClientProtocol`."""
    return list(getattr(response, "trailers", None) or ())


def response_connection(response: object) -> List[bytes]:
    """The ``Connection`` header values of a response received by :class:`TrailerClientProtocol`."""
    headers = getattr(response, "connection_headers", None)
    if headers is None:
        return []
    return list(headers.getRawHeaders(b"connection", ()))


class TrailerClientProtocol(HTTP11ClientProtocol):
    """Twisted's HTTP/1.1 client connection, carrying trailers in both directions.

    A chunked response's trailer fields (as parsed, malformed lines left out) are
    set as ``trailers`` on the ``IResponse`` before its body protocol learns the
    body is complete; read them with :func:`response_trailers`.  The parser's
    connection-control headers (Connection, Keep-Alive, ...) are set as
    ``connection_headers`` before the response is delivered; read the
    ``Connection`` values with :func:`response_connection`.
    """

    def request(self, request: ClientRequest) -> Deferred:
        if not isinstance(request, TrailerRequest):
            request = TrailerRequest._construct(
                request.method,
                request.uri,
                request.headers,
                request.bodyProducer,
                request.persistent,
                request._parsedURI,
            )
        d = super().request(request)
        parser: Optional[object] = self._parser
        if parser is not None and getattr(parser, "request", None) is request:
            finisher = parser.finisher

            def finished(rest: bytes) -> None:
                response = getattr(parser, "response", None)
                if response is not None:
                    response.trailers = _response_trailers(parser.bodyDecoder)
                finisher(rest)

            parser.finisher = finished

            def headers_in(response):
                response.connection_headers = parser.connHeaders
                return response

            d.addCallback(headers_in)
        return d
