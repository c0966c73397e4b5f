"""The parsers of :mod:`clbproxy.http.parsing` with llhttp (``httptools``) splitting fields.

llhttp reads the field section in C; it is given a canonical request line
(``GET / HTTP/1.1``: the real line is read and checked by our own code, as
llhttp alone refuses ``get``, ``PURGE`` and ``HTTP/1.2``).  Its field rules
stay strict: llhttp's lenient mode would take ``Name : value`` as a field named
``Name`` plus a space.  It refuses control bytes in values that the
listener accepts; whatever llhttp refuses goes to the shared line-by-line
replay, which decides.  That llhttp refuses NUL, a bare CR or LF and obs-fold
is relied on (llhttp 9: httptools 0.6.3 and later, which setup.cfg asks for;
older versions took obs-fold and had no leniency settings).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
from zope.interface import implementer

from clbproxy.http.parse_rules import Field
from clbproxy.http.parsing import IRequestParser, IResponseParser, RequestParser, ResponseParser

_LINE = b"GET / HTTP/1.1\r\n"

#: The specials of a response's fields: its parser reads its framing itself.
_NONE: Tuple[Field, ...] = ()


class _Sink:
    """What llhttp calls back while it reads one head.

    Apart from the splitter, so that the parser (which holds its callbacks) and
    the splitter (which holds the parser) make no reference cycle: a connection's
    parser is then freed with it, not by the cyclic collector.
    """

    __slots__ = ("fields", "done")

    def __init__(self) -> None:
        self.fields: List[Field] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value.rstrip(b" \t")))  # llhttp keeps trailing whitespace

    def on_message_complete(self) -> None:
        self.done = True


class _Splitter:
    """One llhttp parser, reused while each head it reads is a complete message."""

    __slots__ = ("sink", "parser")

    def __init__(self) -> None:
        self.sink = _Sink()
        self.parser = self._new()

    def _new(self) -> HttpRequestParser:
        parser = HttpRequestParser(self.sink)
        parser.set_dangerous_leniencies(lenient_keep_alive=True, lenient_data_after_close=True)
        return parser

    def split_plain(self, block: bytes) -> Optional[Tuple[List[Field], Tuple[Field, ...]]]:
        """The fields and no specials, which a response parser does not read."""
        fields = self.fields(block)
        return None if fields is None else (fields, _NONE)

    def fields(self, block: bytes) -> Optional[List[Field]]:
        sink = self.sink
        sink.fields = fields = []
        sink.done = False
        try:
            self.parser.feed_data(_LINE + block + b"\r\n\r\n" if block else _LINE + b"\r\n")
        except HttpParserUpgrade:
            pass
        except HttpParserError:
            self.parser = self._new()
            return None
        if not sink.done:
            self.parser = self._new()
        return fields


@implementer(IRequestParser)
class HttptoolsRequestParser(RequestParser):
    """Requests, fields split by llhttp."""

    backend = "httptools"

    def __init__(self, handler, limits) -> None:
        super().__init__(handler, limits)
        self._split = _Splitter().fields


@implementer(IResponseParser)
class HttptoolsResponseParser(ResponseParser):
    """Responses, fields split by llhttp."""

    backend = "httptools"

    def __init__(self, handler, method: bytes = b"GET", **kwargs) -> None:
        super().__init__(handler, method, **kwargs)
        self._fields = _Splitter().split_plain
