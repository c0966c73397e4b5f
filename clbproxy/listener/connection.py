"""A listener's HTTP/1.1 connection: a sans-IO parser, bounded reads, keep-alive, drain.

:class:`ListenerConnection` is a plain Twisted ``Protocol``.  The bytes a
client sends go to a request parser (:func:`clbproxy.http.parsers.request_parser`:
llhttp through ``httptools`` on CPython, ``h11`` on PyPy; both frame alike and
are exactly as strict as the listener always was, see
:mod:`clbproxy.http.parsing`).  Each request becomes a
:class:`~clbproxy.listener.request.ListenerRequest` handed to the listener's
root resource as soon as its head is in; a body streams after it through a
:class:`~clbproxy.http.server.RequestBody` that stops reading the client while
the backend cannot take more.

- Requests are answered in order: after a request's last byte the parser
  stays paused until its response is finished (pipelined requests wait in the
  parser; past 16 KiB the socket is not read either).  A connection is kept
  open after a response by twisted.web's rule: HTTP/1.1 without ``close`` in
  its first ``Connection`` value (which then gets ``Connection: close``).
- A refusal (400, 408, 413, 414, 431, 501, 505) is an error page from
  :mod:`clbproxy.http.responses` and the connection closes; once a response
  has begun, a refusal can only abort the connection.  A body over
  ``max_body_size`` is 413 before the response began, an abort after.
- ``Expect: 100-continue`` is answered only when a backend starts taking the
  body, so a request refused, redirected or answered by the proxy gets its
  final status without the client sending its body.
- Timeouts, as nginx and the cloud balancers have them: ``header_timeout``
  from the connection (or the first byte of a later request) to the end of
  the head, however the bytes trickle in (408, or a plain close when nothing
  was sent); ``keepalive_timeout`` while waiting for the next request;
  ``client_timeout`` between two reads while a request (its body) is read.
- ``drain()`` lets the request under way finish with ``Connection: close``
  and closes an idle connection now.
- An upgrade leaves the connection (:meth:`ListenerConnection.hand_off`):
  the bytes the client sent behind its request are handed over untouched.
"""

from __future__ import annotations

from typing import List, Optional

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import _PullToPush
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from clbproxy.config import ListenerConfig
from clbproxy.http.field_headers import FieldHeaders, field_key
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.parse_rules import ExactHead, Refused
from clbproxy.http.parsers import chosen, request_parser
from clbproxy.http.parsing import RequestHead
from clbproxy.http.request_id import OFF, RequestIds, new_request_id
from clbproxy.http.responses import raw_error_response, refusal
from clbproxy.http.server import SERVER, BodyTooLarge, HTTPLimits, RequestBody
from clbproxy.listener.limits import LimitStats
from clbproxy.listener.request import ListenerRequest, http_date
from clbproxy.net.certificates import client_certificate_headers
from clbproxy.net.transports import send_now, socket_under
from clbproxy.routing.settings import request_ids
from clbproxy.util.delays import Deadline
from clbproxy.util.logtext import printable

log = Logger()

#: Bytes of later (pipelined) requests read while a response is under way before
#: the socket stops being read (twisted.web's ``_optimisticEagerReadSize``).
EAGER_READ = 0x4000

#: Seconds a timed-out connection gets to close before it is aborted (twisted.web's).
ABORT_TIMEOUT = 15

_VERSIONS = {b"1.1": b"HTTP/1.1", b"1.0": b"HTTP/1.0"}

#: The keys of the headers every response gets (FieldHeaders.set_field).
_SERVER = field_key(b"Server")
_DATE = field_key(b"Date")

_PROCESSING_FAILED = (
    b"<html><head><title>Processing Failed</title></head><body>"
    b"<b>Processing Failed</b></body></html>"
)


def keeps_open(version: bytes, connection) -> bool:
    """twisted.web's ``checkPersistence``: HTTP/1.1, no ``close`` in the first Connection value."""
    if version != b"1.1":
        return False
    if connection:
        return b"close" not in [token.lower() for token in connection[0].split(b" ")]
    return True


def read_so_far(data: bytes, limits: HTTPLimits) -> tuple[bool, list]:
    """``(line_read, fields)``: what twisted.web had read of a head when it was refused.

    A refused or timed-out request is named from the headers received before
    the fault (the last complete field line counts only once the next line
    began, as twisted.web reads them); nothing when its request line is at fault.
    """
    exact = ExactHead(limits)
    try:
        exact.feed(data)
    except Refused:
        pass
    return exact.first == 0, exact.fields


@implementer(IPushProducer)
class ListenerConnection(Protocol):
    """One client connection of a listener (see the module doc)."""

    #: Set by the factory when it builds the connection.
    limits = HTTPLimits()
    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    client_timeout: Optional[float] = 60.0
    stats: Optional[LimitStats] = None
    backend: Optional[str] = None

    # What a connection starts with, as class attributes: no store per connection.
    persistent = True
    draining = False
    _parser = None
    _clock = None
    _handling = False
    _rejected = False
    _discarding = False
    _lost = False
    _waiting_for_transport = False
    _paused_reading = False
    _network = None
    _request_producer = None
    _request_producer_streaming = None
    #: The one timer of the header and idle timeouts (_timer_fired), waking every _shortest s.
    _timer: Optional[Deadline] = None
    _armed = False
    _shortest = 0.0
    _idle_timeout: Optional[float] = None
    _last_read = 0.0
    _header_deadline: Optional[float] = None
    #: A read began a request: its deadlines count from now, read once it is parsed.
    _unstamped = False
    _abort_call = None
    _between_requests = False
    _received_any = False
    _peer = None
    _host = None
    #: The TCP connection responses are sent on at once (None: TLS, or not TCP).
    _direct: Optional[tcp.Connection] = None
    _certificate_headers: Optional[list] = None

    def __init__(self) -> None:
        self.requests: List[ListenerRequest] = []

    # -- the connection --------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self._clock = factory.reactor
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        self._parser = request_parser(self, self.limits, backend=self.backend)
        self._direct = socket_under(transport)
        if IPushProducer.providedBy(transport):
            # As twisted.web: a transport that cannot pause (TLS) is not paced.
            self._network = transport
            transport.registerProducer(self, True)
        timeouts = (self.header_timeout, self.keepalive_timeout, self.client_timeout)
        timeouts = [timeout for timeout in timeouts if timeout]
        if timeouts:
            self._shortest = min(timeouts)
            self._timer = Deadline(self._clock, self._timer_fired)
        self._set_idle_timeout(self.client_timeout)
        self._start_header_timer()

    def dataReceived(self, data: bytes) -> None:
        if self._rejected or self._discarding or self._parser is None:
            return
        if data:
            self._received_any = True
        if self._between_requests:
            self._between_requests = False
            # The request's deadlines count from this read; the clock is read only
            # when they outlive it (a head that arrives whole cancels them first).
            self._unstamped = True
            self._idle_timeout = self.client_timeout
            self._header_deadline = self.header_timeout or None
            self._parser.feed(data)
            if self._unstamped:
                self._stamp()
        else:
            if self._idle_timeout:
                self._last_read = self._clock.seconds()
            self._parser.feed(data)
        self._bound_reading()

    def _bound_reading(self) -> None:
        """Stop reading while a response is under way and later requests fill the parser."""
        parser = self._parser
        if (
            self._handling
            and parser is not None
            and not self._paused_reading
            and not self._waiting_for_transport
            and len(parser.buffered) > EAGER_READ
        ):
            self._pause_reading()

    def connectionLost(self, reason: Failure = None) -> None:
        self._lost = True
        self._stop_timers()
        abort, self._abort_call = self._abort_call, None
        if abort is not None and abort.active():
            abort.cancel()
        requests, self.requests = self.requests, []
        for request in requests:
            request.connectionLost(reason)
        self._parser = None
        self._request_producer = None

    @property
    def peer(self):
        """The client's address (under ``haproxy:``, the one its PROXY header named)."""
        peer = self._peer
        if peer is None and self.transport is not None:
            peer = self._peer = self.transport.getPeer()
        return peer

    @property
    def host(self):
        """The listening address the client connected to."""
        host = self._host
        if host is None and self.transport is not None:
            host = self._host = self.transport.getHost()
        return host

    @property
    def certificate_headers(self) -> list:
        """The client certificate's headers for backends, read once per connection.

        (:func:`clbproxy.net.certificates.client_certificate_headers`: none
        without TLS or a verified certificate; the handshake is over before a
        request is read.)
        """
        headers = self._certificate_headers
        if headers is None:
            headers = self._certificate_headers = client_certificate_headers(self.transport)
        return headers

    def getPeer(self):
        return self.peer

    def getHost(self):
        return self.host

    # -- the parser's callbacks -------------------------------------------------------------

    def request_head(self, head: RequestHead) -> None:
        if self._discarding:
            return
        self._header_deadline = None
        if head.grouped is None:
            headers = FieldHeaders.from_pairs(head.headers)
        else:
            headers = FieldHeaders.from_grouped(head.grouped)  # grouped as it was parsed
        request = ListenerRequest(self, head.method, head.target, _VERSIONS[head.version], headers)
        self.requests.append(request)
        self.persistent = keeps_open(head.version, head.connection)
        if not self.persistent and head.version == b"1.1":
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
        if head.chunked or head.content_length:
            body = request.body = RequestBody(self.transport, head.content_length)
            if head.expect_continue:
                body.on_start = lambda: self._send_continue(request)
            self._process(request)

    def body_data(self, data: bytes) -> None:
        if self._rejected or self._discarding or not self.requests:
            return
        request = self.requests[-1]
        body = request.body
        limit = self.limits.max_body_size
        if limit and self._parser.body_received > limit:
            self._parser.pause()
            body.fail(BodyTooLarge(f"request body over {limit} bytes"))
            if request.startedWriting:
                self.transport.abortConnection()
            else:
                self.reject(413, f"the request body is larger than {limit} bytes")
            return
        body.write(data)

    def message_complete(self, trailers: List) -> None:
        if self._rejected or self._discarding or not self.requests:
            return
        request = self.requests[-1]
        self._handling = True
        self._idle_timeout = None
        self._unstamped = False  # the head cleared the header deadline: nothing left to stamp
        body = request.body
        if body is None:
            self._process(request)
        else:
            body.trailers = trailers
            body.finish()

    def parse_error(self, status: int, detail: str) -> None:
        if self._discarding:
            return
        self.reject(status, detail)

    # -- handling a request -----------------------------------------------------------------

    def _process(self, request: ListenerRequest) -> None:
        """Render ``request`` with the listener's root resource, as twisted.web's ``Site`` does."""
        headers = request.responseHeaders  # a listener request's: FieldHeaders
        headers.set_field(_SERVER, SERVER)
        headers.set_field(_DATE, http_date())
        if request.path == b"*":
            self._answer_star(request)
            return
        transport = self.transport
        try:
            body = self.factory.resource.render(request)
            if self.transport is None and transport is not None and self._parser is not None:
                # Taken over without hand_off (Autobahn's resource, per_hop); not lost
                # either (connectionLost lets go of the parser too).
                self._taken_over(transport)
            if body is NOT_DONE_YET:
                return
            if not isinstance(body, bytes):
                raise TypeError(f"render returned {body!r}, not bytes")
            if request.method == b"HEAD":
                if body:
                    request.setHeader(b"Content-Length", b"%d" % (len(body),))
                request.write(b"")
            else:
                request.setHeader(b"Content-Length", b"%d" % (len(body),))
                request.write(body)
            request.finish()
        except Exception:
            self._processing_failed(request, Failure())

    @staticmethod
    def _answer_star(request: ListenerRequest) -> None:
        """``OPTIONS *`` gets an empty 200, any other method on ``*`` a 405, as on twisted.web."""
        if request.method == b"OPTIONS":
            request.setResponseCode(200)
        else:
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"OPTIONS")
        request.setHeader(b"Content-Length", b"0")
        request.finish()

    def _processing_failed(self, request: ListenerRequest, reason: Failure) -> None:
        """A bug while answering: logged with its traceback; a 500 page, or a cut response."""
        log.failure("Failed to answer {request}", failure=reason, request=request)
        if request.finished or request._disconnected:
            return
        if request.startedWriting:
            if self.transport is not None:
                self.transport.abortConnection()
            return
        request.setResponseCode(500)
        request.setHeader(b"Content-Type", b"text/html")
        request.setHeader(b"Content-Length", b"%d" % (len(_PROCESSING_FAILED),))
        request.write(_PROCESSING_FAILED)
        request.finish()

    def _send_continue(self, request: ListenerRequest) -> None:
        """Send the ``100 Continue`` a request asked for, unless its answer has begun."""
        if self._rejected or self.transport is None or request.startedWriting:
            return
        if request.finished or request.channel is not self:
            return
        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def request_done(self, request: ListenerRequest) -> None:
        """``request``'s response is finished: read the next request, or close."""
        if request in self.requests:
            self.requests.remove(request)
        if self.transport is None or self._lost:
            return
        if not self._waiting_for_transport and (self._paused_reading or request.body is not None):
            # Paused by the parser's bound, or by the request's body (the backend was full).
            self._resume_reading()
        if not self.persistent or self._rejected:
            self.loseConnection()
            return
        self._handling = False
        if self.draining:
            self.loseConnection()
            return
        parser = self._parser
        if parser is None:
            return
        self._received_any = bool(parser.buffered)
        if self._received_any:
            self._set_idle_timeout(self.client_timeout)
            self._start_header_timer()
        else:
            self._between_requests = True
            self._header_deadline = None
            self._set_idle_timeout(self.keepalive_timeout)
        parser.resume()
        self._bound_reading()

    def discard_input(self) -> None:
        """Ignore the rest of the client's input (a response ended before its request)."""
        self._discarding = True
        if self._parser is not None:
            self._parser.pause()

    # -- upgrades ------------------------------------------------------------------------------

    def hand_off(self) -> bytes:
        """Leave the connection to another protocol; the bytes the client sent behind its request.

        The caller puts its protocol on the transport (see
        :func:`clbproxy.ws.passthrough.take_over`); this connection stops
        reading, timing and producing, and drops its transport and its request
        (which refers back to it): both are freed as soon as the upgrade's call
        chain returns.
        """
        transport = self.transport
        self.requests.clear()
        parser, self._parser = self._parser, None
        early = parser.detach() if parser is not None else b""
        if transport is not None:
            self._taken_over(transport)
        self.transport = None
        return early

    def _taken_over(self, transport) -> None:
        """Another protocol has the transport now (the relay's): stop timing and producing."""
        self._stop_timers()
        self._parser = None
        self._direct = None
        self._release_network()

    # -- refusals ------------------------------------------------------------------------------

    def reject(self, status: int, detail: str) -> None:
        """Answer ``status`` with an error page and close, without reading anything more."""
        if self._rejected:
            return
        self._rejected = True
        parser = self._parser
        if parser is not None:
            parser.pause()
        transport = self.transport
        if transport is None:
            return
        writing = [request for request in self.requests if request.startedWriting]
        if writing:
            # A response is under way: an error page would land inside it.
            log.info(
                "Closed the connection from {peer} during a response: {detail}"
                " request_id={request_id}",
                peer=getattr(self.peer, "host", None),
                detail=printable(detail),
                request_id=writing[0].request_id or "-",
            )
            transport.abortConnection()
            return
        fields = self._fields_read()
        request_id = self._refused_id(fields)
        accept = None
        if fields:
            values = [value for name, value in fields if name.lower() == b"accept"]
            accept = values[-1].decode("latin-1") if values else None
        log.info(
            "Rejected a request from {peer} with {status}: {detail} request_id={request_id}",
            peer=getattr(self.peer, "host", None),
            status=status,
            detail=printable(detail),
            request_id=request_id or "-",
        )
        transport.write(refusal(status, detail, accept, request_id, self.request_ids.name))
        self.loseConnection()

    def _fields_read(self) -> Optional[list]:
        """The header fields of the request being refused, None when its line was not read."""
        if self.requests:
            request = self.requests[-1]
            return [
                (name, value)
                for name, values in request.requestHeaders.getAllRawHeaders()
                for value in values
            ]
        parser = self._parser
        data = getattr(parser, "refused", None) or (parser.buffered if parser else b"")
        line_read, fields = read_so_far(data, self.limits)
        return fields if line_read else None

    def _refused_id(self, fields: Optional[list]) -> Optional[str]:
        """The ID of the request this connection is refusing (``None``: IDs are off).

        The one the listener gave it when it got that far; else chosen from the
        headers read so far (a request refused in its headers keeps a believed
        client's ID when that header came before the fault); a new one when
        its request line is refused.
        """
        policy = self.request_ids
        if not policy.enabled:
            return None
        if fields is None:
            return new_request_id()
        if self.requests and self.requests[-1].request_id is not None:
            return self.requests[-1].request_id
        key = policy.key
        received = [value for name, value in fields if name.lower() == key] or None
        return policy.choose(received, getattr(self.peer, "host", None) or "")

    @property
    def request_ids(self) -> RequestIds:
        """The listener's request-ID policy (its factory's)."""
        return getattr(self.factory, "request_ids", OFF)

    # -- drain and state -----------------------------------------------------------------------

    def drain(self) -> None:
        """Finish the requests under way, answer them with ``Connection: close``, then close.

        A connection waiting for its next request (or still reading one's headers)
        is closed now.
        """
        self.draining = True
        self.persistent = False
        busy = False
        for request in self.requests:
            busy = True
            if not request.startedWriting:
                request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        if not busy or not self._handling:
            self.loseConnection()

    @property
    def idle(self) -> bool:
        """True while the connection waits for a request (no request under way)."""
        return not self.requests

    def loseConnection(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self._release_network()
        transport.loseConnection()

    def _release_network(self) -> None:
        network, self._network = self._network, None
        if network is not None:
            network.unregisterProducer()

    # -- timers ----------------------------------------------------------------------------------

    def _set_idle_timeout(self, timeout: Optional[float]) -> None:
        """Close the connection after ``timeout`` seconds without a read (None: never)."""
        self._unstamped = False
        self._idle_timeout = timeout
        if timeout:
            self._last_read = self._clock.seconds()
            if not self._armed:  # (most calls: a request's end, the timer running)
                self._arm()

    def _start_header_timer(self) -> None:
        """The head of the next request must be in within ``header_timeout`` from now."""
        self._unstamped = False
        timeout = self.header_timeout
        self._header_deadline = self._clock.seconds() + timeout if timeout else None
        if timeout:
            self._arm()

    def _stamp(self) -> None:
        """The deadlines a request's first read set, still running after it: from now."""
        self._unstamped = False
        if self._header_deadline is None and not self._idle_timeout:
            return
        now = self._last_read = self._clock.seconds()
        if self._header_deadline is not None:
            self._header_deadline += now
        self._arm()

    def _arm(self) -> None:
        """Wake in ``_shortest`` seconds, unless armed: no deadline set from now on comes
        before that, so a request moves no timer; it waits again for what is left."""
        timer = self._timer
        if timer is not None and not self._armed:
            self._armed = True
            timer.within(self._shortest)

    def _timer_fired(self) -> None:
        """The idle and header deadlines, checked when the timer wakes: act on those due."""
        self._armed = False
        if self.transport is None:
            return
        now = self._clock.seconds()
        timeout = self._idle_timeout
        if timeout and self._last_read + timeout - now <= 0:
            self._idle_timeout = None
            log.info("Timing out client: {peer}", peer=str(self.peer))
            self._abort_call = self._clock.callLater(ABORT_TIMEOUT, self._force_abort)
            self.loseConnection()
        deadline = self._header_deadline
        if deadline is not None and self.transport is not None and deadline - now <= 0:
            self._header_timed_out()
            return
        left = self._shortest
        if deadline is not None:
            left = min(left, deadline - now)
        if self._idle_timeout:
            left = min(left, self._last_read + self._idle_timeout - now)
        elif deadline is None:
            return
        timer = self._timer
        if timer is not None:
            self._armed = True
            if left < self._shortest:
                timer.wait(left)
            else:
                timer.within(left)

    def _stop_timers(self) -> None:
        """No header or idle timeout any more (the connection ended or was taken over)."""
        self._idle_timeout = None
        self._header_deadline = None
        self._unstamped = False
        self._armed = False
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
        # The timer holds a bound method: no cycle left to keep a handed-off connection.

    def _force_abort(self) -> None:
        self._abort_call = None
        if self.transport is not None:
            log.info("Forcibly timing out client: {peer}", peer=str(self.peer))
            self.transport.abortConnection()

    def _header_timed_out(self) -> None:
        self._stop_timers()
        if self.stats is not None:
            self.stats.increment("header_timeouts")
        if self._received_any:
            request_id = self._refused_id(self._fields_read())
            log.info(
                "HTTP: {client}: request headers not received within {timeout:g} s: 408"
                " request_id={request_id}",
                client=getattr(self.peer, "host", "-"),
                timeout=self.header_timeout,
                request_id=request_id or "-",
            )
            headers = [] if request_id is None else [(self.request_ids.name, request_id)]
            self.transport.write(
                raw_error_response(408, "the request headers did not arrive in time", headers)
            )
        self.persistent = False
        self._rejected = True
        self.transport.loseConnection()

    # -- producing: the transport paces the response, the response paces the reads ---------------

    def registerProducer(self, producer, streaming: bool) -> None:
        if self._request_producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer}, because producer"
                f" {self._request_producer} was never unregistered."
            )
        if not streaming:
            producer = _PullToPush(producer, self)
        self._request_producer = producer
        self._request_producer_streaming = streaming
        if not streaming:
            producer.startStreaming()

    def unregisterProducer(self) -> None:
        producer = self._request_producer
        if producer is None:
            return
        if not self._request_producer_streaming:
            producer.stopStreaming()
        self._request_producer = None
        self._request_producer_streaming = None

    def write(self, data: bytes) -> None:
        """For a pull producer's ``_PullToPush``: response bytes to the client."""
        self.transport.write(data)

    def send(self, data: bytes) -> None:
        """Response bytes to the client, to the socket at once when nothing waits before them.

        Twisted's ``write`` queues them for the reactor's next turn (an epoll
        registration and a second pass per response); see
        :func:`clbproxy.net.transports.send_now`, which keeps the order, the
        buffer limit and back-pressure.
        """
        direct = self._direct
        if direct is not None and self.transport is not None:
            send_now(direct, data)
        else:
            self.transport.write(data)

    def pauseProducing(self) -> None:
        """The client's socket buffer is full: pause the response, stop reading requests."""
        if self.transport is None:
            return
        self._waiting_for_transport = True
        if self._request_producer is not None:
            self._request_producer.pauseProducing()
        if not self._handling:
            self._pause_reading()

    def resumeProducing(self) -> None:
        if self.transport is None:
            return
        self._waiting_for_transport = False
        if self._request_producer is not None:
            self._request_producer.resumeProducing()
        if not self._handling:
            self._resume_reading()

    def stopProducing(self) -> None:
        if self._request_producer is not None:
            self._request_producer.stopProducing()

    def _pause_reading(self) -> None:
        if self._network is not None:
            self._paused_reading = True
            self._network.pauseProducing()

    def _resume_reading(self) -> None:
        self._paused_reading = False
        if self._network is not None:
            self._network.resumeProducing()


def http_limits(listener: ListenerConfig) -> HTTPLimits:
    """The request size limits of ``listener``."""
    return HTTPLimits(
        max_request_line=listener.max_request_line,
        max_header_size=listener.max_header_size,
        max_body_size=listener.max_body_size,
    )


def listener_request_ids(listener: ListenerConfig) -> RequestIds:
    """Who names ``listener``'s requests, for the refusals its connections answer themselves."""
    return request_ids(listener, TrustedProxies.from_cidrs(listener.trusted_proxies))


class ListenerSite(Factory):
    """A listener's connections: :class:`ListenerConnection` with its limits and timeouts.

    ``resource`` renders every request (the listener's
    :class:`~clbproxy.listener.service.ListenerResource`, or a redirect);
    ``listener`` is replaced on reload (``configure``): connections opened
    afterwards use the new limits and timeouts.  ``backend`` forces a parser
    back end (``httptools`` or ``h11``; default: the environment's, see
    :mod:`clbproxy.http.parsers`), read once here.
    """

    protocol = ListenerConnection
    noisy = False

    def __init__(
        self,
        resource,
        listener: ListenerConfig,
        reactor,
        stats: Optional[LimitStats] = None,
        backend: Optional[str] = None,
    ) -> None:
        self.resource = resource
        self.reactor = reactor
        self.stats = stats
        self.backend = chosen(backend)
        self.configure(listener)

    def configure(self, listener: ListenerConfig) -> None:
        self.listener = listener
        self.limits = http_limits(listener)
        self.request_ids = listener_request_ids(listener)

    def buildProtocol(self, addr):
        connection = self.protocol()
        connection.factory = self
        listener = self.listener
        connection.limits = self.limits
        connection.header_timeout = listener.header_timeout
        connection.keepalive_timeout = listener.keepalive_timeout
        connection.client_timeout = listener.client_timeout
        connection.stats = self.stats
        connection.backend = self.backend
        return connection
