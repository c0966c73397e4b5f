"""The lean HTTP/1.1 backend client: keep-alive connections, one exchange at a time each.

Twisted's ``Agent`` and ``HTTPConnectionPool`` (which the forwarder used
until this client replaced them) cost several Deferreds, two state machines
and a twisted ``Headers`` per request.  Here a request is the head bytes its
caller built, written straight to the transport, and the answer comes back
through the sans-IO response parser
(:func:`clbproxy.http.parsers.response_parser`) as plain method calls on the
caller's :class:`UpstreamSink`.  On a reused connection a request makes
one object (the :class:`UpstreamExchange`), the parser one more (the head),
and one timer (``response_timeout``); a Deferred only on a new connection (the
endpoint's).

What stays the caller's (:class:`clbproxy.http.forwarder.HTTPForwarder`):
building the head (the request line, the rewritten fields and the framing:
``Content-Length`` or ``Transfer-Encoding: chunked``; ``Connection: close``
when ``UpstreamPool.persistent`` is false), choosing the backend, and
retrying a failure reported ``retryable`` with ``pool.send`` again.

The connections' endpoints come from ``connect(backend)``: in the forwarder
``lambda b: connector.endpoint(b, group)``
(:class:`clbproxy.net.tls_client.BackendConnector`: TCP with the group's
connect timeout, TLS with its SNI and verification), so a pool is one target
group's, and only reuses connections made with that group's TLS settings.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Protocol, Set

from twisted.internet import tcp
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from zope.interface import implementer

from clbproxy.config import BackendConfig, TargetGroupConfig
from clbproxy.http.parse_rules import Field
from clbproxy.http.parsers import response_parser
from clbproxy.http.parsing import ResponseHead
from clbproxy.net.endpoints import disable_nagle
from clbproxy.net.transports import send_now, send_parts_now, socket_under, unwrap_client

__all__ = ["IDEMPOTENT", "UpstreamExchange", "UpstreamPool", "UpstreamSink", "is_chunked"]


#: Methods a request may be sent again with after its connection failed (RFC 9110 9.2.2).
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"))

_CRLF = b"\r\n"


class UpstreamSink(Protocol):
    """What an exchange tells its caller, in this order.

    ``connected(exchange)`` once the head is on its way (on a reused
    connection: before ``send`` returns, hence the argument): from here the
    body may be written, or after ``interim(100, ...)`` when the request asked
    ``Expect: 100-continue``.  Then ``interim`` for each 1xx, one
    ``response_head``, ``response_data`` as the body arrives and
    ``response_complete(trailers)``; or at any point ``response_failed(status,
    reason, retryable)``, after which nothing more comes.  ``body_paused`` /
    ``body_resumed``: the backend's socket is full / drained, stop / go on
    writing the request body.

    While in ``response_head``, the exchange's ``response_read`` says whether
    the rest of the response is read already (it then comes before
    ``response_head`` returns, unless the caller aborts): a caller that paces
    reading with ``pause_response`` has nothing to pace.

    ``response_timeout`` counts from the end of the request body, so a caller
    that waits for a ``100 Continue`` before sending the body bounds that wait
    itself (sending the body anyway, or ``abort()``), as RFC 9110 10.1.1 lets
    a client do.
    """

    def connected(self, exchange: UpstreamExchange) -> None: ...

    def interim(self, status: int, fields: List[Field]) -> None: ...

    def response_head(self, head: ResponseHead) -> None: ...

    def response_data(self, data: bytes) -> None: ...

    def response_complete(self, trailers: List[Field]) -> None: ...

    def response_failed(self, status: int, reason: str, retryable: bool) -> None: ...

    def body_paused(self) -> None: ...

    def body_resumed(self) -> None: ...


def is_chunked(head: bytes) -> bool:
    """True when the request head frames its body with ``Transfer-Encoding: chunked``."""
    lowered = head.lower()
    at = lowered.find(b"\r\ntransfer-encoding:")
    while at != -1:
        end = lowered.find(_CRLF, at + 2)
        if b"chunked" in lowered[at + 20 : end]:
            return True
        at = lowered.find(b"\r\ntransfer-encoding:", at + 2)
    return False


class UpstreamExchange:
    """One request and its response on one backend connection (see :class:`UpstreamSink`).

    Its state starts as class attributes, so making one per request stores
    only what the request brings (no ``__slots__``: a slot has no default).
    """

    _connection: Optional[_Connection] = None
    #: The endpoint's Deferred while the exchange waits for its new connection
    #: (None: attached to one, or failed): when ``pool.send`` returns with it
    #: set, nothing of the exchange has happened yet.
    connecting: Optional[Deferred] = None
    #: The request head says ``Transfer-Encoding: chunked``.
    _chunked = False
    #: The request body is complete (or there is none).
    _body_done = True
    #: The final response head arrived.
    _answered = False
    _done = False
    #: When the response is due (the reactor's time; None: not timed now).
    _deadline: Optional[float] = None
    #: The request went out on a kept-alive connection (known once attached).
    reused = False
    #: The reactor's time of the last body bytes written (0.0: none yet),
    #: for the caller's upload timeout.
    body_written_at = 0.0
    #: Set before ``response_head``: the whole response (its body, or it has
    #: none) is read already, so it all comes before ``response_head``
    #: returns (unless the exchange is aborted) and no reading needs pacing.
    response_read = False

    def __init__(
        self,
        pool: UpstreamPool,
        backend: BackendConfig,
        head: bytes,
        sink: UpstreamSink,
        method: bytes,
        body: bool,
        response_timeout: float,
    ) -> None:
        self._pool = pool
        self.backend = backend
        self._head = head
        self.sink = sink
        self.method = method
        self._timeout = response_timeout
        if body:
            self._body_done = False
            self._chunked = is_chunked(head)

    # -- the caller's side

    def write_body(self, data: bytes) -> None:
        """Request body bytes (framed as a chunk when the head says chunked)."""
        connection = self._connection
        if connection is None and not self._done:
            raise RuntimeError("the request body is written after connected()")
        if self._done or self._body_done or not data:
            return
        self.body_written_at = self._pool._reactor.seconds()
        direct = connection.direct
        if self._chunked:
            parts = (b"%x\r\n" % len(data), data, _CRLF)
            if direct is not None:
                send_parts_now(direct, parts)
            else:
                connection.transport.writeSequence(parts)
        elif direct is not None:
            send_now(direct, data)
        else:
            connection.transport.write(data)

    #: As an ``IConsumer`` (a :class:`~clbproxy.http.server.RequestBody` produces to it).
    write = write_body

    def finish_body(self, trailers: List[Field] = ()) -> None:
        """The request body is complete; ``trailers`` end a chunked one."""
        connection = self._connection
        if connection is None and not self._done:
            raise RuntimeError("the request body is written after connected()")
        if self._body_done:
            return
        self._body_done = True
        if self._done:
            return
        if self._chunked:
            if trailers:
                lines = b"".join(b"%s: %s\r\n" % (name, value) for name, value in trailers)
                connection.transport.write(b"0\r\n" + lines + _CRLF)
            else:
                connection.transport.write(b"0\r\n\r\n")
        self._sent()

    def pause_response(self) -> None:
        """Stop reading the backend (the client's socket is full); this read's rest still comes."""
        if self._connection is not None and not self._done:
            self._connection.pause_reading()

    def resume_response(self) -> None:
        """Read the backend again."""
        if self._connection is not None and not self._done:
            self._connection.resume_reading()

    def abort(self) -> None:
        """Drop the exchange and its connection (the client went away); the sink hears nothing."""
        if self._done:
            return
        self._finish()
        if self.connecting is not None:
            self.connecting.cancel()
        elif self._connection is not None:
            parser = self._connection.parser
            parser.pause()  # the rest of what was read is nobody's (abort may come
            parser.detach()  # from inside a parser callback)
            self._connection.reusable = False
            self._connection.transport.abortConnection()

    # -- the pool's and the connection's side

    def _attach(self, connection: _Connection, reused: bool) -> None:
        """Send on ``connection`` (``connecting`` is None: taken idle, or cleared by the pool)."""
        self._connection = connection
        self.reused = reused
        # (``connection.received`` is False: a connection goes idle only once its
        # response is complete, which clears it, and reading while idle closes it.)
        connection.parser.next_response(self.method)
        if connection.direct is not None:
            send_now(connection.direct, self._head)
        else:
            connection.transport.write(self._head)
        full = connection.write_full  # before the sink writes: then it is told at once
        connection.exchange = self
        self.sink.connected(self)
        if full and connection.write_full and not self._body_done and not self._done:
            self.sink.body_paused()
        if self._body_done and not self._done and self._deadline is None and not self._answered:
            self._start_timer()

    def _sent(self) -> None:
        """The whole request is written: the response timeout starts, unless it has come."""
        if self._answered or self._done:
            return
        self._start_timer()

    def _start_timer(self) -> None:
        """``response_timeout`` from now, on the connection's one timer (``_Connection.due``)."""
        reactor = self._pool._reactor
        self._deadline = deadline = reactor.seconds() + self._timeout
        connection = self._connection
        if connection.timer is None:
            connection.timer = reactor.callLater(self._timeout, connection.due)
            connection.timer_at = deadline
        elif connection.timer_at > deadline:
            connection.timer.reset(self._timeout)
            connection.timer_at = deadline

    def _timed_out(self) -> None:
        self._deadline = None
        if self._done:
            return
        connection = self._connection
        self._fail(504, f"no response within {self._timeout:g} s", False)
        if connection is not None:
            connection.transport.abortConnection()

    def _finish(self) -> None:
        self._done = True
        self._deadline = None
        connection = self._connection
        if connection is not None and connection.exchange is self:
            connection.exchange = None

    def _fail(self, status: int, reason: str, retryable: bool) -> None:
        if self._done:
            return
        self._finish()
        self.sink.response_failed(status, reason, retryable)

    def _connect_failed(self, reason: str) -> None:
        self.connecting = None
        self._fail(502, f"cannot connect to {self._pool.address(self.backend)}: {reason}", True)


@implementer(IPushProducer)
class _Connection(TwistedProtocol):
    """One backend connection: the response parser's handler and its transport's producer.

    As the transport's (streaming) producer it is told when the write buffer
    fills and drains (as :class:`clbproxy.ws.hops.WriteBufferWatch`), which
    the exchange passes on as ``body_paused``/``body_resumed``; reading the
    backend is paused with the transport's own ``pauseProducing``.
    """

    def __init__(self, pool: UpstreamPool, backend: BackendConfig) -> None:
        self.pool = pool
        self.backend = backend
        #: The pool's key of the backend's idle connections.
        self.key = (backend.host, backend.port)
        self.exchange: Optional[UpstreamExchange] = None
        self.parser = response_parser(self)
        self.received = False  # a byte of the current exchange's response
        self.reusable = True
        self.reading = True
        self.write_full = False  # the transport's write buffer, until it drains
        self.idle_timer = None
        #: The exchanges' response timer: one per connection, not one per request.
        self.timer = None
        #: When ``timer`` is due (the reactor's time; its ``getTime()``, without a call).
        self.timer_at = 0.0
        #: The reactor's time this connection last became idle.
        self.idle_since = 0.0
        self.head: Optional[ResponseHead] = None
        #: The TCP connection body bytes are sent on at once (None: TLS, or not
        #: TCP), as the WebSocket fast path does: queued for the reactor's next
        #: turn, a 64 KiB read from the client cost an epoll registration, a
        #: second turn and, every other read, a pause and resume of the client.
        self.direct: Optional[tcp.Connection] = None
        #: Fired once the connection is gone (asked for by :meth:`UpstreamPool.retire`).
        self.closed: Optional[Deferred] = None

    def connectionMade(self) -> None:
        disable_nagle(self.transport)
        self.transport.registerProducer(self, True)
        self.direct = socket_under(self.transport)

    # IPushProducer: the transport's write buffer
    def pauseProducing(self) -> None:
        if self.write_full:
            return  # Twisted says it again on each write past the buffer's size
        self.write_full = True
        if self.exchange is not None and not self.exchange._body_done:
            self.exchange.sink.body_paused()

    def resumeProducing(self) -> None:
        if not self.write_full:
            return
        self.write_full = False
        if self.exchange is not None and not self.exchange._body_done:
            self.exchange.sink.body_resumed()

    def stopProducing(self) -> None:
        pass

    def close(self) -> None:
        """Close cleanly.  The transport is told we no longer produce first: with a
        producer registered, TLS never sends its close alert, so it never closes."""
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.exchange is None:
            # Nothing is asked: an idle connection the backend writes to is broken.
            self.reusable = False
            self.pool._forget_idle(self)
            self.transport.abortConnection()
            return
        self.received = True
        self.parser.feed(data)

    def due(self) -> None:
        """The response timer: the current exchange's response is late, or it waits again.

        Its deadline may have moved since it was armed (a new exchange) or be
        gone (answered, finished): it fires for the first deadline, and then
        waits for what is left of the current one.
        """
        self.timer = None
        exchange = self.exchange
        if exchange is None or exchange._deadline is None:
            return
        reactor = self.pool._reactor
        left = exchange._deadline - reactor.seconds()
        if left > 0:
            self.timer = reactor.callLater(left, self.due)
            self.timer_at = exchange._deadline
            return
        exchange._timed_out()

    def connectionLost(self, reason) -> None:
        self.reusable = False
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.pool._lost(self)
        closed, self.closed = self.closed, None
        if closed is not None:
            closed.callback(None)
        exchange = self.exchange
        if exchange is None:
            return
        self.parser.eof()
        if self.exchange is not exchange or exchange._done:
            return  # completed (read until close) or failed by the parser
        if exchange.reused and not self.received and exchange.method in IDEMPOTENT:
            exchange._fail(
                502, "the reused connection was closed before the backend answered", True
            )
            return
        message = reason.getErrorMessage() if reason is not None else "closed"
        exchange._fail(502, f"the backend closed the connection: {message}", False)

    # The parser's handler (clbproxy.http.parsing.ResponseHandler)
    def interim(self, status: int, fields: List[Field]) -> None:
        self.exchange.sink.interim(status, fields)

    def response_head(self, head: ResponseHead) -> None:
        exchange = self.exchange
        exchange._answered = True
        exchange._deadline = None
        if not head.keep_alive or head.version == b"1.0" or head.upgrade:
            self.reusable = False
        exchange.response_read = self.parser.response_read
        exchange.sink.response_head(head)

    def body_data(self, data: bytes) -> None:
        self.exchange.sink.response_data(data)

    def message_complete(self, trailers: List[Field]) -> None:
        exchange = self.exchange
        exchange._done = True  # exchange._finish(), without a call per response
        self.exchange = None  # (its _deadline: None since its response_head)
        if not exchange._body_done:
            self.reusable = False  # the backend did not read the whole request
        self.received = False
        self.pool._release(self)
        exchange.sink.response_complete(trailers)

    def parse_error(self, status: int, detail: str) -> None:
        self.reusable = False
        exchange = self.exchange
        self.transport.abortConnection()
        if exchange is not None:
            exchange._fail(status, detail, False)


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, pool: UpstreamPool, backend: BackendConfig) -> None:
        self.pool = pool
        self.backend = backend

    def buildProtocol(self, addr) -> _Connection:
        return _Connection(self.pool, self.backend)


class UpstreamPool:
    """One target group's backend connections, idle ones kept per backend address.

    At most ``http_pool_max_idle`` idle connections per backend (the most
    recently used is taken first, so extra ones age out), each closed after
    ``http_pool_idle_timeout`` seconds.  With ``http_pool_max_idle = 0`` the
    pool is not ``persistent``: every request gets its own connection,
    closed once its response is complete.  The pool does not add
    ``Connection: close`` to the head (the caller builds it and should, when
    ``persistent`` is false); it only never reuses the connection.
    """

    def __init__(
        self,
        reactor,
        group: TargetGroupConfig,
        connect: Callable[[BackendConfig], IStreamClientEndpoint],
    ) -> None:
        self._reactor = reactor
        self.group = group
        self._connect = connect
        self._max_idle = group.http_pool_max_idle
        self._idle_timeout = group.http_pool_idle_timeout
        self.persistent = self._max_idle > 0
        self._idle: Dict[tuple, List[_Connection]] = {}
        self._connections: Set[_Connection] = set()
        self._pending: Set[UpstreamExchange] = set()
        self._retired = False
        self._closing = False
        self._waiters: List[Deferred] = []

    @staticmethod
    def address(backend: BackendConfig) -> str:
        host = backend.host
        return f"[{host}]:{backend.port}" if ":" in host else f"{host}:{backend.port}"

    def idle_count(self, backend: BackendConfig) -> int:
        """Idle connections kept to ``backend`` (for tests and the status page)."""
        return len(self._idle.get((backend.host, backend.port), ()))

    def send(
        self,
        backend: BackendConfig,
        head: bytes,
        sink: UpstreamSink,
        *,
        method: bytes,
        body: bool,
        response_timeout: float,
    ) -> UpstreamExchange:
        """Send a request whose complete head is ``head`` (see :class:`UpstreamSink`)."""
        exchange = UpstreamExchange(self, backend, head, sink, method, body, response_timeout)
        idle = self._idle.get((backend.host, backend.port))
        if idle:
            connection = idle.pop()  # its idle timer stays: see _idle_expired
            if not connection.reading:
                connection.resume_reading()
            exchange._attach(connection, True)
            return exchange
        if self._closing:
            exchange._connect_failed("the pool is closed")
            return exchange
        try:
            endpoint = self._connect(backend)
            connecting = endpoint.connect(_ConnectionFactory(self, backend))
        except Exception as e:  # e.g. a bad CA file: this request fails, not the proxy
            exchange._connect_failed(f"{type(e).__name__}: {e}")
            return exchange
        exchange.connecting = connecting
        self._pending.add(exchange)
        connecting.addCallbacks(
            self._connected, self._not_connected, (exchange,), None, (exchange,)
        )
        return exchange

    def _connected(self, connection: _Connection, exchange: UpstreamExchange) -> None:
        self._pending.discard(exchange)
        self._connections.add(connection)
        if exchange._done or self._closing:
            connection.reusable = False
            connection.transport.abortConnection()
            return
        # The endpoint's wrapper would stand between every read and the connection.
        unwrap_client(connection)
        exchange.connecting = None
        exchange._attach(connection, False)

    def _not_connected(self, failure, exchange: UpstreamExchange) -> None:
        self._pending.discard(exchange)
        if not exchange._done:  # else aborted while connecting
            message = failure.getErrorMessage()
            name = type(failure.value).__name__
            exchange._connect_failed(f"{name}: {message}" if message and message != name else name)
        self._check_closed()

    def _release(self, connection: _Connection) -> None:
        """A response is complete: keep the connection idle, or close it."""
        if (
            not connection.reusable
            or not self.persistent
            or self._retired
            or connection.parser.buffered
        ):
            connection.reusable = False
            connection.close()
            return
        idle = self._idle.get(connection.key)
        if idle is None:
            idle = self._idle[connection.key] = []
        elif len(idle) >= self._max_idle:
            connection.close()
            return
        if not connection.reading:
            connection.resume_reading()
        connection.idle_since = self._reactor.seconds()
        if connection.idle_timer is None:
            connection.idle_timer = self._reactor.callLater(
                self._idle_timeout, self._idle_expired, connection
            )
        idle.append(connection)

    def _idle_expired(self, connection: _Connection) -> None:
        """Close ``connection`` if it has been idle ``http_pool_idle_timeout`` seconds.

        One timer per connection, not one per response: taking a connection
        leaves its timer running, so when it fires the connection may be busy
        (the next release arms a new one) or idle for less time (it waits again
        for what is left).
        """
        connection.idle_timer = None
        idle = self._idle.get(connection.key)
        if not idle or connection not in idle:
            return  # busy
        left = connection.idle_since + self._idle_timeout - self._reactor.seconds()
        if left > 0:
            connection.idle_timer = self._reactor.callLater(left, self._idle_expired, connection)
            return
        self._forget_idle(connection)
        connection.close()

    def _forget_idle(self, connection: _Connection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
        if connection.idle_timer is not None:
            connection.idle_timer.cancel()
            connection.idle_timer = None

    def _lost(self, connection: _Connection) -> None:
        self._forget_idle(connection)
        self._connections.discard(connection)
        self._check_closed()

    def retire(self) -> Deferred:
        """Close the idle connections and keep none from now on (busy ones close when done).

        Fires once the idle connections are closed.
        """
        self._retired = True
        closing = []
        for idle in list(self._idle.values()):
            for connection in list(idle):
                self._forget_idle(connection)
                connection.closed = Deferred()
                closing.append(connection.closed)
                connection.close()
        self._idle.clear()
        return gatherResults(closing).addCallback(lambda _: None)

    def close(self) -> Deferred:
        """Close every connection, busy ones too; fires once all are gone."""
        self.retire()
        self._closing = True
        closed: Deferred = Deferred()
        self._waiters.append(closed)
        for exchange in list(self._pending):
            exchange.abort()
        for connection in list(self._connections):
            connection.reusable = False
            connection.transport.abortConnection()
        self._check_closed()
        return closed

    def _check_closed(self) -> None:
        if self._closing and not self._connections and not self._pending:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
