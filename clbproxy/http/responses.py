"""Error responses the proxy itself produces: a small HTML page and the raw HTTP bytes.

Shared by the listener's connections (HTTP/1.1 and HTTP/2), the HTTP forwarder
and the WebSocket relay (which answers a refused handshake on the raw
transport), so a client sees the same page whichever path failed.
"""

from __future__ import annotations

import json
from html import escape
from http import HTTPStatus
from typing import Iterable

_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>{status} {phrase}</title></head>\n"
    "<body><h1>{status} {phrase}</h1>\n<p>{detail}</p>\n<hr><address>clbproxy</address>"
    "</body></html>\n"
)


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` ("Unknown" for unregistered codes)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def error_page(status: int, detail: str) -> bytes:
    """The HTML body of an error the proxy answers itself."""
    return _PAGE.format(
        status=status, phrase=escape(reason_phrase(status)), detail=escape(detail)
    ).encode("utf-8")


def wants_json(accept: str | None) -> bool:
    """True when an ``Accept`` header prefers JSON to HTML (the first listed wins)."""
    if not accept:
        return False
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/problem+json") or media.endswith("+json"):
            return True
        if media in ("text/html", "application/xhtml+xml", "*/*", "text/*"):
            return False
    return False


def negotiated_error(
    status: int, detail: str, accept: str | None, request_id: str | None = None
) -> tuple[str, bytes]:
    """``(content type, body)`` of a proxy error: JSON if ``accept`` prefers it, else HTML.

    A JSON error names the request's ID (``request_id``) when it has one.
    """
    if wants_json(accept):
        fields = {"status": status, "error": reason_phrase(status), "detail": detail}
        if request_id is not None:
            fields["request_id"] = request_id
        return "application/json", json.dumps(fields).encode("utf-8") + b"\n"
    return "text/html; charset=utf-8", error_page(status, detail)


def raw_response(
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    reason: str | None = None,
) -> bytes:
    """A complete ``HTTP/1.1`` response that closes the connection, as bytes.

    ``headers`` must not contain framing headers (Content-Length, Transfer-Encoding,
    Connection): this function sets them.
    """
    phrase = reason if reason is not None else reason_phrase(status)
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1", "replace") + body


def refusal(
    status: int, detail: str, accept: str | None, request_id: str | None, id_header: str
) -> bytes:
    """The whole answer to a request the proxy refuses before any response began.

    The error page in the form ``accept`` prefers (:func:`negotiated_error`),
    with the request's ID under ``id_header`` when it has one; it closes the
    connection (:func:`raw_response`).
    """
    content_type, body = negotiated_error(status, detail, accept, request_id)
    headers = [("Content-Type", content_type)]
    if request_id is not None:
        headers.append((id_header, request_id))
    return raw_response(status, headers, body)


def raw_error_response(status: int, detail: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A proxy-generated HTML error response as raw bytes."""
    return raw_response(
        status,
        [("Content-Type", "text/html; charset=utf-8"), *headers],
        error_page(status, detail),
    )


def with_header(response: bytes, name: str, value: str) -> bytes:
    """``response`` (a whole response's bytes) with one more header, after its status line."""
    status_line, _, rest = response.partition(b"\r\n")
    return b"%s\r\n%s: %s\r\n%s" % (
        status_line,
        name.encode("latin-1"),
        value.encode("latin-1"),
        rest,
    )
