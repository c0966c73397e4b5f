"""The access log: one line per HTTP request and one per WebSocket session, at its end.

The relay and the HTTP forwarder fill a :class:`SessionRecord` or
:class:`RequestRecord` where the data is and hand it to :func:`emit`, which sends
one ``twisted.logger`` event in the ``clbproxy.access`` namespace with the
record's fields, through the listener's access logger: in a running proxy one
on :class:`~clbproxy.observability.service.Observability`'s access publisher,
which twistd's own log does not watch (as nginx keeps request lines out of its
error_log).  :class:`AccessLog` is the observer that writes those events to
a file (or stdout) in one of two formats, a ``write`` and a flush per line;
metrics observe the same events.

Plain format (combined-like, then ``key=value`` fields in a fixed order)::

    CLIENT - - [TIME] "REQUEST" STATUS BYTES_OUT "REFERER" "USER_AGENT" type=... listener=...

A value containing whitespace, ``"`` or ``\\`` or that is empty is written as a
JSON string; ``-`` means "none".  Text the client sent (method, path, Host,
Referer, User-Agent) has its control characters written as ``\\xNN`` in the
record already (:func:`clbproxy.util.logtext.printable`), so it is the same in every
log.  JSON format: one object per line with every
field (``null`` for none) and the time in ISO 8601.
"""

from __future__ import annotations

import datetime
import json
import math
import operator
import re
import sys
import time
from typing import IO, Any, Callable, Iterable, Optional

import attrs
from twisted.logger import ILogObserver, Logger, LogLevel
from zope.interface import implementer

from clbproxy.http.field_headers import FieldHeaders, field_key
from clbproxy.http.forwarded import TrustedProxies, claimed_client_ip
from clbproxy.util.logtext import printable

#: The namespace of access events; the access log and metrics observe only these.
NAMESPACE = "clbproxy.access"

# Where access events go when no access logger was passed in (a component built
# alone, as in tests): the global publisher.
log = Logger(namespace=NAMESPACE)


def access_logger(publisher: Callable[[dict], None]) -> Logger:
    """A logger that sends access events to ``publisher`` only."""
    return Logger(namespace=NAMESPACE, observer=publisher)


FORMATS = ("plain", "json")

#: ``key=value`` fields of a plain line, in order, after the combined-like prefix.
HTTP_FIELDS = (
    "type",
    "listener",
    "host",
    "rule",
    "group",
    "backend",
    "response_ms",
    "duration_ms",
    "bytes_in",
    "request_id",
    "trace_id",
    "parent_id",
)
WEBSOCKET_FIELDS = (
    "type",
    "listener",
    "host",
    "rule",
    "group",
    "backend",
    "handshake_ms",
    "duration_s",
    "bytes_in",
    "bytes_out",
    "messages_in",
    "messages_out",
    "client_close_code",
    "client_close_reason",
    "backend_close_code",
    "backend_close_reason",
    "closed_by",
    "close_reason",
    "request_id",
    "trace_id",
    "parent_id",
)


@attrs.define
class RequestRecord:
    """What the access log says about one plain HTTP request."""

    listener: str = "-"
    client: str = "-"
    method: str = "-"
    path: str = "-"
    protocol: str = "HTTP/1.1"
    host: Optional[str] = None
    referer: Optional[str] = None
    user_agent: Optional[str] = None
    rule: Optional[str] = None
    group: Optional[str] = None
    backend: Optional[str] = None
    status: int = 0
    #: Milliseconds from the request until the backend's response headers.
    response_ms: Optional[float] = None
    duration_ms: float = 0.0
    #: Request body bytes received from the client, response body bytes sent to it.
    bytes_in: int = 0
    bytes_out: int = 0
    #: The request's ID (``request_id_header``; ``None``: IDs are off).
    request_id: Optional[str] = None
    #: The W3C trace and parent IDs the backend was sent (``None``: no valid traceparent).
    trace_id: Optional[str] = None
    parent_id: Optional[str] = None

    def fields(self) -> dict[str, Any]:
        # Every field is a plain value: no attrs.asdict walk (one request each), one dict.
        fields: dict[str, Any] = {"type": "http"}
        fields.update(zip(_REQUEST_NAMES, _request_values(self)))
        return fields


@attrs.define
class SessionRecord:
    """What the access log says about one WebSocket session (or refused handshake).

    ``in``/``out`` are seen from the client: ``bytes_in`` and ``messages_in``
    went client -> backend, ``*_out`` backend -> client.  Bytes are the client
    hop's wire bytes after the handshake.  A close code is what that side sent
    (``1006`` when its connection ended without a Close, ``None`` when it sent a
    Close without a code or never got that far).  ``closed_by`` is the side whose
    end came first: ``client``, ``backend`` or ``-``.  ``close_reason`` says why
    the proxy itself ended the session (``rate_limit``, ``lifetime``,
    ``rebalance``, ``drain``; see :class:`clbproxy.ws.closecodes.CloseReason`),
    ``None`` when it did not.  ``request_id``, ``trace_id`` and ``parent_id``
    are those of the upgrade request, as for :class:`RequestRecord`.
    """

    listener: str = "-"
    client: str = "-"
    path: str = "-"
    #: The client's HTTP version: ``HTTP/2.0`` for a WebSocket over HTTP/2 (RFC 8441).
    protocol: str = "HTTP/1.1"
    host: Optional[str] = None
    user_agent: Optional[str] = None
    rule: Optional[str] = None
    group: Optional[str] = None
    backend: Optional[str] = None
    status: int = 0
    handshake_ms: Optional[float] = None
    duration_s: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    client_close_code: Optional[int] = None
    client_close_reason: Optional[str] = None
    backend_close_code: Optional[int] = None
    backend_close_reason: Optional[str] = None
    closed_by: Optional[str] = None
    close_reason: Optional[str] = None
    request_id: Optional[str] = None
    trace_id: Optional[str] = None
    parent_id: Optional[str] = None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": "websocket"}
        fields.update(zip(_SESSION_NAMES, _session_values(self)))
        return fields


_LOG_FORMATS = {
    "http": "access: {client} {listener} {method} {host}{path} -> {backend}: {status}",
    "websocket": "access: {client} {listener} WebSocket {host}{path} -> {backend}: {status}, "
    "{duration_s:.3f}s, closed by {closed_by}",
}


_LOG_FORMATS_WITH_ID = {
    kind: f"{text} request_id={{request_id}}" for kind, text in _LOG_FORMATS.items()
}

_INFO = LogLevel.info


def _describe(record: type, kind: str) -> None:
    """What :func:`emit` reads of a record's class, worked out once: its event's ``type``,
    its field names and a getter of their values, its event's text formats."""
    record._kind = kind
    record._names = tuple(a.name for a in attrs.fields(record))
    record._values = operator.attrgetter(*record._names)
    record._format = _LOG_FORMATS[kind]
    record._format_with_id = _LOG_FORMATS_WITH_ID[kind]


_describe(RequestRecord, "http")
_describe(SessionRecord, "websocket")
_REQUEST_NAMES, _request_values = RequestRecord._names, RequestRecord._values
_SESSION_NAMES, _session_values = SessionRecord._names, SessionRecord._values


def emit(
    record: RequestRecord | SessionRecord, to: Logger = log, opened_at: Optional[float] = None
) -> None:
    """Send ``record`` as one access event through ``to`` (see :func:`access_logger`).

    ``opened_at``: when a session's hops both opened (the reactor's time), for
    the status page's series (:meth:`clbproxy.observability.series.SeriesStore.count`):
    an event key of its own, in neither log format.

    The event is built here and handed to ``to``'s observer directly, as
    ``Logger.emit`` would at ``info`` (which first checks the level against
    every ``LogLevel``).  Its text is not formatted here: ``log_format`` is a
    fixed format of the event's own fields, rendered only by an observer that
    shows text (``formatEvent``); the access log files, metrics and series read
    the fields, so in a running proxy no text is made per request.  A field's
    value is never read as a format (braces the client sent stay as sent).
    """
    event = {"type": record._kind}
    event.update(
        zip(record._names, record._values(record)),
        log_logger=to,
        log_level=_INFO,
        log_namespace=to.namespace,
        log_source=to.source,
        log_format=record._format_with_id if record.request_id else record._format,
        log_time=time.time(),
    )
    if opened_at is not None:
        event["opened_at"] = opened_at
    to.observer(event)


def rule_label(host: Optional[str], path: str) -> str:
    """How a rule is named in logs and on the status page: ``host/path`` or the path."""
    return f"{host}{path}" if host else path


#: The request fields an access record reads (``FieldHeaders`` keys).
_HOST, _REFERER, _USER_AGENT, _X_FORWARDED_FOR = (
    field_key(name) for name in (b"host", b"referer", b"user-agent", b"x-forwarded-for")
)


#: The common methods and versions as their record text (``printable`` of each is itself).
_KNOWN_TEXT = {
    word: word.decode("ascii")
    for word in (
        b"GET",
        b"HEAD",
        b"POST",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"PATCH",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"HTTP/2",
        b"HTTP/2.0",
    )
}


def request_record(
    request,
    listener: str,
    rule,
    reactor,
    trusted: TrustedProxies,
    to: Logger = log,
    client: Optional[str] = None,
) -> RequestRecord:
    """A record for a listener request, emitted through ``to`` when the response ends.

    (Or when the client leaves.)

    ``client``: the client's address as
    :func:`~clbproxy.http.forwarded.claimed_client_ip` answers it
    for this request, the peer and ``trusted``, when the caller has it already
    (the listener's resource works it out for admission); else worked out here.

    The request's ID and trace context are its ``request_id`` and ``trace``
    attributes, when the listener gave it those; ``bytes_in`` is what its
    streamed ``body`` (:class:`clbproxy.http.server.RequestBody`) received.

    The status of a request whose client left before the response began is 499
    (nginx's "client closed request").
    """
    started = reactor.seconds()
    headers = request.requestHeaders
    # Each header's last value, as text; looked up once each, no call for one not sent.
    if type(headers) is FieldHeaders:  # a listener's request: read in its dict
        get = headers.grouped().get
        host, referer, agent = get(_HOST), get(_REFERER), get(_USER_AGENT)
        claimed = (get(_X_FORWARDED_FOR) or None) if client is None else None
    else:
        get = headers.getRawHeaders
        host, referer, agent, claimed = (
            get(b"host"),
            get(b"referer"),
            get(b"user-agent"),
            get(b"x-forwarded-for"),
        )
    if client is None:
        peer = getattr(request.getClientAddress(), "host", None) or "-"
        client = claimed_client_ip(peer, claimed, trusted)
    # printable() of the path and Host only when they hold a character that is not
    # (every control character is one): most hold none, and keep their text.
    path = request.uri.decode("latin-1")
    if not path.isprintable():
        path = printable(path)
    if host:
        host = host[-1].decode("latin-1")
        if not host.isprintable():
            host = printable(host)
    else:
        host = None
    record = RequestRecord(
        listener=listener,
        client=client,
        method=_KNOWN_TEXT.get(request.method) or printable(request.method.decode("latin-1")),
        path=path,
        protocol=_KNOWN_TEXT.get(request.clientproto)
        or printable(request.clientproto.decode("latin-1")),
        host=host,
        referer=printable(referer[-1].decode("latin-1")) if referer else None,
        user_agent=printable(agent[-1].decode("latin-1")) if agent else None,
        rule=rule_label(rule.host, rule.path) if rule is not None else None,
        request_id=getattr(request, "request_id", None),
    )
    trace = getattr(request, "trace", None)
    if trace is not None:
        record.trace_id, record.parent_id = trace.trace_id, trace.parent_id

    def finished(result: object) -> None:
        record.status = request.code if request.startedWriting else 499
        record.duration_ms = (reactor.seconds() - started) * 1000
        record.bytes_out = request.sentLength
        body = request.body
        if body is not None:
            record.bytes_in = body.received
        emit(record, to)

    on_finish = getattr(request, "on_finish", None)
    if on_finish is not None:
        on_finish(finished)  # a listener request: no Deferred per request
    else:
        request.notifyFinish().addBoth(finished)
    return record


def is_access_event(event: dict) -> bool:
    """Whether ``event`` is an access event (:func:`emit`'s), not another log event."""
    return event.get("log_namespace") == NAMESPACE and "type" in event


# -- formats ---------------------------------------------------------------------------

#: Anything but printable ASCII other than ``"`` and ``\\``: a plain value without
#: any of these is written as it is (the common case, checked in C).
_NOT_BARE = re.compile(r"[^\x21\x23-\x5b\x5d-\x7e]")
#: Anything :func:`json.dumps` would escape (it keeps only printable ASCII but
#: ``"`` and ``\\``, and the space).
_NOT_JSON_PLAIN = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class LocalTime:
    """An event's local time as the two formats write it, worked out once per second.

    ``datetime.fromtimestamp(...).astimezone()`` and ``strftime`` cost more than
    the rest of a line; a busy log writes many lines in the same second, and only
    the milliseconds of the JSON format differ between them.  The second is the
    one ``datetime.fromtimestamp`` would give (its fraction rounded half to even
    to microseconds, which may carry into the next second), so the text is the
    same as that call's.  One second is remembered: a bounded cache.
    """

    __slots__ = ("_second", "_plain", "_iso_head", "_iso_tail")

    def __init__(self) -> None:
        self._second: Optional[float] = None
        self._plain = self._iso_head = self._iso_tail = ""

    def _split(self, when: float) -> tuple[float, int]:
        fraction, second = math.modf(when)
        micro = round(fraction * 1e6)
        if micro >= 1_000_000:
            second += 1.0
            micro -= 1_000_000
        elif micro < 0:
            second -= 1.0
            micro += 1_000_000
        if second != self._second:
            moment = datetime.datetime.fromtimestamp(second).astimezone()
            self._plain = moment.strftime("%d/%b/%Y:%H:%M:%S %z")
            iso = moment.isoformat(timespec="seconds")
            self._iso_head, self._iso_tail = iso[:-6], iso[-6:]
            self._second = second
        return second, micro

    def plain(self, when: float) -> str:
        """``06/Dec/2026:04:21:23 +0000``."""
        self._split(when)
        return self._plain

    def iso(self, when: float) -> str:
        """``2026-12-06T04:21:23.123+00:00`` (milliseconds, as ``isoformat`` writes them)."""
        micro = self._split(when)[1]
        return f"{self._iso_head}.{micro // 1000:03d}{self._iso_tail}"


def _bare(value: object) -> str:
    """A plain-format value: ``-`` for none, a JSON string when it would not be one token."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if text and _NOT_BARE.search(text) is None:
        return text
    if not text or any(c.isspace() or c in '"\\' or not c.isprintable() for c in text):
        return json.dumps(text)
    return text


#: ``key={} key={} ...`` for each list of plain-format fields.
_KEY_VALUE_TEMPLATES = {
    names: " ".join(f"{name}={{}}" for name in names) for names in (HTTP_FIELDS, WEBSOCKET_FIELDS)
}


def _key_values(get: Callable[[str], Any], names: tuple[str, ...]) -> str:
    """The plain format's ``key=value`` fields, as :func:`_bare` writes each value.

    Most values are text, numbers or none that :func:`_bare` writes as they are:
    they are turned into text in one loop and checked together (joined by ``!``,
    itself a bare character) with one search; only a line with a value to quote
    or an empty value goes through :func:`_bare` value by value.
    """
    texts = [
        "-" if value is None else f"{value:.3f}" if value.__class__ is float else str(value)
        for value in map(get, names)
    ]
    if "" in texts or _NOT_BARE.search("!".join(texts)) is not None:
        texts = [_bare(get(name)) for name in names]
    return _KEY_VALUE_TEMPLATES[names].format(*texts)


def _json_string(text: str) -> str:
    """``json.dumps(text)``, without its call chain for text it would not escape."""
    if _NOT_JSON_PLAIN.search(text) is None:
        return f'"{text}"'
    return json.dumps(text)


def _quoted(value: Optional[str]) -> str:
    return _json_string(value) if value else '"-"'


def plain_line(event: dict, clock: LocalTime) -> str:
    """One combined-like line for an access event (:func:`is_access_event`)."""
    kind = event["type"]
    get = event.get
    when = clock.plain(get("log_time", 0.0))
    if kind == "http":
        request = f"{event['method']} {event['path']} {event['protocol']}"
        names = HTTP_FIELDS
    else:
        protocol = get("protocol") or "HTTP/1.1"
        if protocol == "HTTP/1.1":
            request = f"GET {event['path']} WebSocket"
        else:  # RFC 8441: an extended CONNECT on a stream
            request = f"CONNECT {event['path']} WebSocket {protocol}"
        names = WEBSOCKET_FIELDS
    extra = _key_values(get, names)
    return (
        f"{_bare(event['client'])} - - [{when}] {_json_string(request)} {event['status']} "
        f"{event['bytes_out']} {_quoted(get('referer'))} "
        f"{_quoted(get('user_agent'))} {extra}\n"
    )


def json_line(event: dict, clock: LocalTime) -> str:
    """One JSON object per line for an access event (:func:`is_access_event`)."""
    kind = event["type"]
    names = _HTTP_RECORD_FIELDS if kind == "http" else _SESSION_RECORD_FIELDS
    data: dict[str, Any] = {"time": clock.iso(event.get("log_time", 0.0)), "type": kind}
    get = event.get
    for name in names:
        data[name] = get(name)
    return _COMPACT_JSON.encode(data) + "\n"


#: ``json.dumps(..., separators=(",", ":"))`` builds an encoder per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
_HTTP_RECORD_FIELDS = tuple(attrs.fields_dict(RequestRecord))
_SESSION_RECORD_FIELDS = tuple(attrs.fields_dict(SessionRecord))


def format_plain(event: dict) -> Optional[str]:
    """:func:`plain_line` of an access event, ``None`` for other events."""
    return plain_line(event, LocalTime()) if is_access_event(event) else None


def format_json(event: dict) -> Optional[str]:
    """:func:`json_line` of an access event, ``None`` for other events."""
    return json_line(event, LocalTime()) if is_access_event(event) else None


#: The line builders by ``[access_log] format``.
LINES: dict[str, Callable[[dict, LocalTime], str]] = {
    "plain": plain_line,
    "json": json_line,
}


@implementer(ILogObserver)
class AccessLog:
    """Writes the access events of some listeners to a file or stdout.

    ``path`` ``"-"`` is the process's own standard output (``sys.__stdout__``,
    or ``stdout`` if given): twistd replaces ``sys.stdout`` with a logging file
    once it runs, and lines written there would come out as ``[stdout#info]``
    log events.  ``listeners`` limits the log to those listeners' events
    (``None``: every listener).  :meth:`reopen` closes and reopens the file, for
    logrotate; stdout is kept as it is.
    """

    def __init__(
        self,
        path: str,
        format: str = "plain",
        listeners: Optional[Iterable[str]] = None,
        stdout: Optional[IO[str]] = None,
    ) -> None:
        self.path = path
        self.format = format
        self.listeners = None if listeners is None else frozenset(listeners)
        self._stdout = stdout
        self._file: Optional[IO[str]] = None
        self._line = LINES[format]
        self._clock = LocalTime()
        self.reopen()

    def _open(self) -> IO[str]:
        if self.path == "-":
            return self._stdout if self._stdout is not None else sys.__stdout__
        return open(self.path, "a", encoding="utf-8", errors="backslashreplace")

    def reopen(self) -> None:
        """Open the file again under its name (after logrotate moved it)."""
        if self.path == "-" and self._file is not None:
            return
        old = self._file
        self._file = self._open()
        if old is not None and old is not self._file and self.path != "-":
            old.close()

    def close(self) -> None:
        if self._file is not None and self.path != "-":
            self._file.close()
        self._file = None

    def __call__(self, event: dict) -> None:
        """Write ``event``'s line and flush it (one ``write`` per line, as nginx's default)."""
        out = self._file
        if out is None or not is_access_event(event):
            return
        if self.listeners is not None and event.get("listener") not in self.listeners:
            return
        out.write(self._line(event, self._clock))
        out.flush()
