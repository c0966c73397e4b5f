"""The parsers of :mod:`clbproxy.http.parsing` with llhttp (``httptools``) checking fields.

llhttp reads the field section in C; it is given a canonical start line
(``GET / HTTP/1.1`` for a request's fields: the real line is read and checked
by our own code, as llhttp alone refuses ``get``, ``PURGE`` and ``HTTP/1.2``;
``HTTP/1.1 204 No Content`` for a response's, whose framing is ours: a 204
has no body, so every head llhttp takes is a whole message and its parser is
reused).  Its field rules stay strict: llhttp's lenient mode would take
``Name : value`` as a field named ``Name`` plus a space.  It refuses control
bytes in values that the listener accepts; whatever llhttp refuses goes to the
shared line-by-line replay, which decides.  That llhttp refuses NUL, a bare CR
or LF and obs-fold is relied on (llhttp 9: httptools 0.6.3 and later, which
setup.cfg asks for; older versions took obs-fold and had no leniency settings).

llhttp only checks the fields: a block it takes has a token, a colon and a
value on each CRLF-separated line, so they are cut at those bytes by C calls
(``split``, ``partition``, ``strip``), with no Python call per field.
"""

from __future__ import annotations

from itertools import repeat
from typing import Callable, List, Optional, Union

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser
from zope.interface import implementer

from clbproxy.http.parse_rules import Field
from clbproxy.http.parsing import IRequestParser, IResponseParser, RequestParser, ResponseParser

_REQUEST_LINE = b"GET / HTTP/1.1\r\n"
_RESPONSE_LINE = b"HTTP/1.1 204 No Content\r\n"

_PARTITION = bytes.partition
_STRIP = bytes.strip
_COLONS = repeat(b":")
_OWS = repeat(b" \t")


class _Sink:
    """What llhttp calls back while it reads one head: only its end.

    ``on_message_complete`` is the ``clear`` of the splitter's ``pending`` list
    (a C call).  Apart from the splitter, so that the parser (which holds its
    callbacks) and the splitter (which holds the parser) make no reference
    cycle: a connection's parser is then freed with it, not by the cyclic
    collector.
    """

    __slots__ = ("on_message_complete",)

    def __init__(self, on_message_complete: Callable[[], None]) -> None:
        self.on_message_complete = on_message_complete


class _Splitter:
    """One llhttp parser, reused while each head it reads is a complete message."""

    __slots__ = ("parser", "pending", "_kind", "_line")

    def __init__(self, kind: Union[type[HttpRequestParser], type[HttpResponseParser]], line: bytes):
        #: Holds an item while a head is fed; llhttp empties it at the message's end.
        self.pending: List[bool] = []
        self._kind = kind
        self._line = line
        self.parser = self._new()

    def _new(self):
        parser = self._kind(_Sink(self.pending.clear))
        parser.set_dangerous_leniencies(lenient_keep_alive=True, lenient_data_after_close=True)
        return parser

    def fields(self, block: bytes) -> Optional[List[Field]]:
        """The fields of ``block`` (CRLF-separated lines), or None if llhttp refuses it."""
        pending = self.pending
        pending.append(True)
        try:
            self.parser.feed_data(
                self._line + block + b"\r\n\r\n" if block else self._line + b"\r\n"
            )
        except HttpParserUpgrade:
            pass
        except HttpParserError:
            pending.clear()
            self.parser = self._new()
            return None
        if pending:  # not a whole message (a request's body would follow)
            pending.clear()
            self.parser = self._new()
        if not block:
            return []
        names, _, values = zip(*map(_PARTITION, block.split(b"\r\n"), _COLONS))
        return list(zip(names, map(_STRIP, values, _OWS)))


@implementer(IRequestParser)
class HttptoolsRequestParser(RequestParser):
    """Requests, fields checked by llhttp."""

    backend = "httptools"

    def __init__(self, handler, limits) -> None:
        super().__init__(handler, limits)
        self._split = _Splitter(HttpRequestParser, _REQUEST_LINE).fields


@implementer(IResponseParser)
class HttptoolsResponseParser(ResponseParser):
    """Responses, fields checked by llhttp."""

    backend = "httptools"

    def __init__(self, handler, method: bytes = b"GET", **kwargs) -> None:
        super().__init__(handler, method, **kwargs)
        self._split = _Splitter(HttpResponseParser, _RESPONSE_LINE).fields
