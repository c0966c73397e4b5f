"""A listener's HTTP connections: bounded header reads, keep-alive idle, graceful drain.

twisted.web's ``HTTPChannel`` has one idle timeout that every received byte
resets, so a client sending one header byte a minute (slowloris) holds a
connection forever.  :class:`ListenerChannel` adds the two timeouts nginx and the
cloud balancers have:

- ``header_timeout``: from the connection (or the first byte of a later request)
  to the last header line, however the bytes trickle in.  Past it the client gets
  ``408 Request Timeout`` (or, when it sent nothing, the connection is simply
  closed, like an idle keep-alive connection).
- ``keepalive_timeout``: how long a keep-alive connection may wait for its next
  request.

``client_timeout`` stays the idle timeout while a request (its body) is read.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from clbproxy.config import ListenerConfig
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.http.request_id import RequestIds
from clbproxy.http.responses import raw_error_response
from clbproxy.http.server import HTTPLimits, ProxyChannel, ProxySite
from clbproxy.listener.limits import LimitStats
from clbproxy.routing.settings import request_ids

log = Logger()


class ListenerChannel(ProxyChannel):
    """The strict, streaming channel with a bounded header read, keep-alive idle and drain."""

    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    stats: Optional[LimitStats] = None
    _header_call: Optional[IDelayedCall] = None
    _between_requests = False
    _received_any = False
    draining = False

    def connectionMade(self) -> None:
        self._idle_timeout = self.timeOut
        super().connectionMade()
        self._start_header_timer()

    def dataReceived(self, data: bytes) -> None:
        if data:
            self._received_any = True
        if self._between_requests:
            self._between_requests = False
            self.setTimeout(self._idle_timeout)
            self._start_header_timer()
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._cancel_header_timer()
        super().allHeadersReceived()

    def requestDone(self, request) -> None:
        super().requestDone(request)
        if self.transport is None or not self.persistent or self._handlingRequest:
            return
        if self.draining and not self.requests:
            self.loseConnection()
            return
        self._received_any = bool(self._buffer)
        if self._received_any:
            self._start_header_timer()
        else:
            self._between_requests = True
            self.setTimeout(self.keepalive_timeout)

    def connectionLost(self, reason) -> None:
        self._cancel_header_timer()
        super().connectionLost(reason)

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
        if not busy or not self._handlingRequest:
            self.loseConnection()

    @property
    def idle(self) -> bool:
        """True while the connection waits for a request (no request under way)."""
        return not self.requests

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        if self.header_timeout:
            self._header_call = self.callLater(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        call, self._header_call = self._header_call, None
        if call is not None and call.active():
            call.cancel()

    def _header_timed_out(self) -> None:
        self._header_call = None
        if self.transport is None:
            return
        if self.stats is not None:
            self.stats.increment("header_timeouts")
        peer = getattr(self.transport.getPeer(), "host", "-")
        if self._received_any:
            request_id = self.refused_request_id()
            log.info(
                "HTTP: {client}: request headers not received within {timeout:g} s: 408"
                " request_id={request_id}",
                client=peer,
                timeout=self.header_timeout,
                request_id=request_id or "-",
            )
            headers = [] if request_id is None else [(self.request_ids.name, request_id)]
            self.transport.write(
                raw_error_response(408, "the request headers did not arrive in time", headers)
            )
        self.setTimeout(None)
        self.persistent = False
        self.transport.loseConnection()


def http_limits(listener: ListenerConfig) -> HTTPLimits:
    """The request size limits of ``listener``."""
    return HTTPLimits(
        max_request_line=listener.max_request_line,
        max_header_size=listener.max_header_size,
        max_body_size=listener.max_body_size,
    )


def listener_request_ids(listener: ListenerConfig) -> RequestIds:
    """Who names ``listener``'s requests, for the refusals its channels answer themselves."""
    return request_ids(listener, TrustedProxies.from_cidrs(listener.trusted_proxies))


class ListenerSite(ProxySite):
    """A listener's ``Site``: :class:`ListenerChannel` connections with its limits and timeouts.

    ``listener`` is replaced on reload; connections opened afterwards use the new
    timeouts.
    """

    protocol = ListenerChannel

    def __init__(
        self, resource, listener: ListenerConfig, reactor, stats: Optional[LimitStats] = None
    ) -> None:
        super().__init__(
            resource,
            limits=http_limits(listener),
            timeout=listener.client_timeout,
            reactor=reactor,
        )
        self.displayTracebacks = False
        self.listener = listener
        self.stats = stats
        self.request_ids = listener_request_ids(listener)

    def log(self, request) -> None:
        """Nothing: clbproxy's access log (:mod:`clbproxy.observability.accesslog`) covers them."""

    def configure(self, listener: ListenerConfig) -> None:
        self.listener = listener
        self.timeOut = listener.client_timeout
        self.limits = http_limits(listener)
        self.request_ids = listener_request_ids(listener)

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.header_timeout = self.listener.header_timeout
        channel.keepalive_timeout = self.listener.keepalive_timeout
        channel.stats = self.stats
        return channel
