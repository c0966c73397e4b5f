"""Which HTTP/1.1 parser back end a connection gets: llhttp on CPython, h11 elsewhere.

``httptools`` is installed on CPython and ``h11`` on PyPy (setup.cfg's
environment markers); either back end frames exactly the same
(:mod:`clbproxy.http.parsing`).  ``CLBPROXY_HTTP_PARSER=httptools|h11`` or the
``backend`` argument forces one (tests run both).
"""

from __future__ import annotations

import os
import platform
from typing import Optional

from clbproxy.http.parsing import (
    MAX_RESPONSE_HEAD,
    IRequestParser,
    IResponseParser,
    RequestHandler,
    ResponseHandler,
)
from clbproxy.http.server import HTTPLimits

try:
    from clbproxy.http import parse_httptools
except ImportError:  # not CPython, or httptools not installed
    parse_httptools = None  # type: ignore[assignment]

try:
    from clbproxy.http import parse_h11
except ImportError:  # CPython without the test extra
    parse_h11 = None  # type: ignore[assignment]

#: The environment variable that forces a back end.
ENVIRONMENT = "CLBPROXY_HTTP_PARSER"


def available() -> list[str]:
    """The back ends importable here, preferred first."""
    found = []
    if parse_httptools is not None:
        found.append("httptools")
    if parse_h11 is not None:
        found.append("h11")
    return found


def chosen(backend: Optional[str] = None) -> str:
    """The back end to use: ``backend``, else the environment's, else httptools on CPython."""
    name = backend or os.environ.get(ENVIRONMENT) or None
    choices = available()
    if name is not None:
        if name not in ("httptools", "h11"):
            raise ValueError(f"{ENVIRONMENT}: unknown HTTP parser {name!r} (httptools or h11)")
        if name not in choices:
            raise ValueError(f"{ENVIRONMENT}: the {name!r} HTTP parser is not installed")
        return name
    if platform.python_implementation() == "CPython" and "httptools" in choices:
        return "httptools"
    if "h11" in choices:
        return "h11"
    if choices:
        return choices[0]
    raise ValueError("no HTTP parser is installed: install httptools (CPython) or h11")


def request_parser(
    handler: RequestHandler, limits: HTTPLimits, backend: Optional[str] = None
) -> IRequestParser:
    """A request parser calling ``handler`` back, with the listener's ``limits``."""
    if chosen(backend) == "httptools":
        return parse_httptools.HttptoolsRequestParser(handler, limits)
    return parse_h11.H11RequestParser(handler, limits)


def response_parser(
    handler: ResponseHandler,
    method: bytes = b"GET",
    max_head_size: int = MAX_RESPONSE_HEAD,
    backend: Optional[str] = None,
) -> IResponseParser:
    """A response parser for the answer to a ``method`` request, calling ``handler`` back."""
    if chosen(backend) == "httptools":
        return parse_httptools.HttptoolsResponseParser(handler, method, max_head_size=max_head_size)
    return parse_h11.H11ResponseParser(handler, method, max_head_size=max_head_size)
