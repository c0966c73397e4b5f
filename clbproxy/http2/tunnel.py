"""An extended CONNECT stream (RFC 8441) as the transport of the protocol that takes it over.

A WebSocket over HTTP/2 is one stream of the client's connection, its DATA
frames the bytes a TCP connection would carry.  The relay's hops are built for
transports (the HTTP/1.1 client hop is the listener's TCP or TLS connection),
so :class:`StreamTunnel` gives a stream the part of a transport they use, and
the relay runs on it unchanged:

- ``write``/``writeSequence`` send DATA within the stream's and the
  connection's windows; while those are shut, the registered producer (the
  relay's hop, which then stops reading the backend) is paused;
- ``pauseProducing``/``resumeProducing`` stop and start reading the client:
  DATA that arrives meanwhile waits here, unacknowledged, so the client's window
  closes; DATA is acknowledged once handed on (the backend hop took it, or its
  own buffer limit paused this tunnel), which is how a backend's backpressure
  reaches the client;
- ``loseConnection`` ends the stream (END_STREAM after what is waiting),
  ``abortConnection`` resets it (``RST_STREAM CANCEL``); the client's
  END_STREAM or RST_STREAM, or the end of its connection, is the protocol's
  ``connectionLost``, delivered once, on the next reactor turn as a socket's is.

Until the protocol's first answer the stream has sent nothing: the relay's
handshake stage answers an upgrade as HTTP/1.1 (a ``101``, or a refusal with
its body), and that one answer is turned into the stream's response here
(:func:`answer_headers`): a ``101`` becomes ``:status 200`` (RFC 8441 5), any
other status passes with its headers and body.  HTTP/2 never carries a ``101``.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from clbproxy.ws.handshake import MalformedAnswer, read_response_head

#: Response fields HTTP/2 does not carry (RFC 9113 8.2.2): the connection's, not the message's.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
    }
)

#: Fields of the handshake's HTTP/1.1 answer that a stream's response does not carry:
#: the connection's (RFC 9113 8.2.2), the key's answer (RFC 8441 5 has no key), and a
#: length, which a 2xx answer to CONNECT must not have (RFC 9110 9.3.6).
_NOT_ON_THE_STREAM = HOP_BY_HOP | {b"sec-websocket-accept"}


class ConnectionFailed(ConnectionLost):
    """The client's HTTP/2 connection ended with a connection error (our GOAWAY)."""


def answer_headers(status: int, headers) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The stream's status and fields for a handshake answered ``status`` with ``headers``."""
    fields = []
    for name, value in headers:
        lower = name.lower().encode("latin-1")
        if lower in _NOT_ON_THE_STREAM or (status == 101 and lower == b"content-length"):
            continue
        fields.append((lower, value.encode("latin-1")))
    return (200 if status == 101 else status), fields


class StreamTunnel:
    """One extended CONNECT stream, as a transport for ``protocol`` (see the module doc).

    ``stream`` is the :class:`~clbproxy.http2.stream.StreamRequest`; its
    connection calls ``data_received``, ``end_received`` and (through the
    stream) ``connection_lost``.  ``on_connection_error(reason)``, when
    set, hears that the whole connection failed before the protocol hears it
    is lost (the relay then tells the backend 1011).
    """

    disconnecting = False

    def __init__(self, stream, protocol) -> None:
        self.stream = stream
        self.protocol = protocol
        self._clock = stream.connection.clock
        self._answered = False
        self._reading = True
        self._waiting: list[bytes] = []
        self._lost = False
        self._reported = False
        self._flush_call = None
        self.on_connection_error: Optional[Callable[[str], None]] = None

    # -- the transport the protocol sees ----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.disconnecting or self._lost or not data:
            return
        if not self._answered:
            self._answer(data)
            return
        self.stream.write(data)

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """END_STREAM once what waits is sent; the protocol hears it is lost next turn."""
        if self.disconnecting or self._lost:
            return
        self.disconnecting = True
        if not self._answered:
            self.stream.setResponseCode(502)
            self._answered = True
        self.stream.finish()
        self._report(Failure(ConnectionDone("the stream was ended")))

    def abortConnection(self) -> None:
        """RST_STREAM CANCEL: this stream only."""
        if self._lost:
            return
        self.disconnecting = True
        self.stream.connection.reset_stream(self.stream, _CANCEL)
        self._report(Failure(ConnectionDone("the stream was reset")))

    def pauseProducing(self) -> None:
        self._reading = False

    def resumeProducing(self) -> None:
        """Read again: what waits is handed on next turn, as a socket's next read would be.

        Never now: the caller may still have bytes of its own to pass on first
        (the handshake's early data).
        """
        if self._reading:
            return
        self._reading = True
        if self._waiting and self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        while self._waiting and self._reading and not self._reported:
            self._hand_on(self._waiting.pop(0))

    def stopProducing(self) -> None:
        self.abortConnection()

    def registerProducer(self, producer, streaming: bool) -> None:
        self.stream.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.stream.unregisterProducer()

    @property
    def producer(self):
        return self.stream.producer

    def getPeer(self):
        return self.stream.connection.transport.getPeer()

    def getHost(self):
        return self.stream.connection.transport.getHost()

    def getPeerCertificate(self):
        return self.stream.connection.transport.getPeerCertificate()

    # -- driven by the connection -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._reported or self.disconnecting:
            self._acknowledge(len(data))
        elif self._reading and not self._waiting and self._flush_call is None:
            self._hand_on(data)
        else:
            self._waiting.append(data)

    def end_received(self) -> None:
        """The client's END_STREAM: its side is done, as a TCP peer's close; ours ends too."""
        if self._reported:
            return
        if not self.disconnecting:
            self.disconnecting = True
            if self._answered:
                self.stream.finish()
            else:
                # Left during the handshake: nothing will be answered.
                self.stream.connection.reset_stream(self.stream, _CANCEL)
        self._report(Failure(ConnectionDone("the client ended the stream")))

    def connection_lost(self, reason: Failure) -> None:
        """The stream was reset, by either side, or its connection is gone."""
        self._lost = True
        self._waiting = []
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if reason.check(ConnectionFailed) and self.on_connection_error and not self._reported:
            self.on_connection_error(reason.getErrorMessage())
        self._report(reason)

    # -- inside -----------------------------------------------------------------------------

    def _hand_on(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self._acknowledge(len(data))

    def _acknowledge(self, count: int) -> None:
        stream = self.stream
        # Once the stream is gone its window was given back whole (and is no more).
        if count and not self._lost and stream.stream_id in stream.connection.streams:
            stream.connection.acknowledge(stream.stream_id, count)

    def _report(self, reason: Failure) -> None:
        if self._reported:
            return
        self._reported = True
        self._clock.callLater(0, self.protocol.connectionLost, reason)

    def _answer(self, data: bytes) -> None:
        """The handshake's HTTP/1.1 answer, as the stream's response (see the module doc)."""
        self._answered = True
        stream = self.stream
        try:
            answer = read_response_head(data)
        except MalformedAnswer:
            answer = None
        if answer is None:
            # Not expected: the relay writes whole heads.  The client gets a 502.
            stream.setResponseCode(502)
            stream.write(b"")
            return
        head, body = answer
        status, fields = answer_headers(head.status, head.headers)
        stream.setResponseCode(status)
        headers = stream.responseHeaders
        for name in {name for name, _ in fields}:
            headers.removeHeader(name)
        for name, value in fields:
            headers.addRawHeader(name, value)
        stream.write(b"")
        if body and status != 200:
            stream.write(body)


#: RST_STREAM CANCEL (RFC 9113 7): the stream is no longer needed.
_CANCEL = 0x8
