"""Client endpoints to backends: one place that decides how a backend is reached."""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
from typing import Callable, Optional, Union

from twisted.internet import defer, error, tcp
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint, ITCPTransport
from twisted.internet.posixbase import PosixReactorBase
from twisted.python.failure import Failure
from zope.interface import implementer

from clbproxy.util.delays import DelayQueue, delay_queue

#: ``connect`` results of a non-blocking socket whose connect is under way.
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY})


def backend_endpoint(reactor, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """An endpoint to ``host:port``: IP literals directly, DNS names via ``HostnameEndpoint``.

    ``HostnameEndpoint`` resolves names on every connection (so DNS changes take
    effect at once) but reports a refused connection only after its 0.3 s
    happy-eyeballs delay, even for an IP literal; a backend given as an address
    fails fast and the next one is tried sooner.
    """
    version = _ip_version(host)
    if version is None:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    endpoint = TCP4ClientEndpoint if version == 4 else TCP6ClientEndpoint
    return endpoint(reactor, host, port, timeout=timeout)


def relay_endpoint(reactor, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """Like :func:`backend_endpoint`, but an IP literal is reached by :class:`DirectTCPEndpoint`.

    For the WebSocket relay's backend connections, opened once per session.
    """
    if _ip_version(host) is None:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    return DirectTCPEndpoint(reactor, host, port, timeout)


@implementer(IStreamClientEndpoint)
class DirectTCPEndpoint:
    """A TCP client endpoint whose protocol is the connection's own, with no wrapper between.

    ``TCP4ClientEndpoint`` wraps the factory and the protocol it builds (to fire
    its Deferred from ``connectionMade`` and to pass half-closes on), so each
    connection costs two more objects and every call into the protocol one more
    hop; a relay hop needs neither.  The Deferred fires with the protocol when it
    is built (just before its ``connectionMade``) and fails as the endpoint's
    does: with the connect error, or ``ConnectingCancelledError`` when cancelled.
    """

    __slots__ = ("_reactor", "_host", "_port", "_timeout")

    def __init__(self, reactor, host: str, port: int, timeout: float) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred:
        factory = DirectConnectFactory(protocolFactory)
        # Ready before connecting: a connect that fails at once fails it at once.
        factory.deferred = deferred = defer.Deferred(factory.cancel)
        try:
            self._start(factory)
        except BaseException:
            factory.deferred = None
            return defer.fail()
        return deferred

    def connect_calling(self, protocolFactory: IProtocolFactory, outcome: ConnectOutcome) -> None:
        """``connect`` with no Deferred: ``outcome`` is told how the connect ends.

        ``outcome`` stands where the Deferred would (see :class:`ConnectOutcome`);
        the caller keeps it before this is called, as a connect may end at once.
        """
        factory = DirectConnectFactory(protocolFactory)
        factory.deferred = outcome
        outcome.factory = factory
        try:
            self._start(factory)
        except BaseException:
            failure = Failure()
        else:
            return
        factory.deferred = None
        outcome.errback(failure)

    def _start(self, factory: DirectConnectFactory) -> None:
        reactor = self._reactor
        if isinstance(reactor, PosixReactorBase):
            connector = factory.connector = _DirectConnector(
                self._host, self._port, factory, self._timeout, None, reactor
            )
            connector.connect()
        else:  # a reactor of tests (MemoryReactor) records the connect
            factory.connector = reactor.connectTCP(
                self._host, self._port, factory, timeout=self._timeout
            )


class ConnectOutcome:
    """How a :meth:`DirectTCPEndpoint.connect_calling` ends, told by two plain calls.

    It takes the place of the connect's Deferred for a caller that only needs
    to hear which way the connect went, and to cancel it: a relay session
    connects once, and a Deferred with its callback chain cost it some 150
    bytecodes.  ``connected(protocol)`` runs when the protocol is built (before
    its ``connectionMade``), ``failed(failure)`` with the reason the Deferred
    would fail with (``ConnectingCancelledError`` after :meth:`cancel`).  Unlike
    a Deferred's callbacks they are called directly: what they raise is not
    kept for later.
    """

    __slots__ = ("factory", "_connected", "_failed")

    def __init__(
        self, connected: Callable[[object], object], failed: Callable[[Failure], object]
    ) -> None:
        #: The connect's factory, once started (what :meth:`cancel` cancels).
        self.factory: Optional[DirectConnectFactory] = None
        self._connected = connected
        self._failed = failed

    def callback(self, protocol) -> None:
        self._connected(protocol)

    def errback(self, reason=None) -> None:
        """As ``Deferred.errback``: a Failure, an exception, or (none) the one being handled."""
        self._failed(reason if isinstance(reason, Failure) else Failure(reason))

    def cancel(self) -> None:
        """Stop connecting, as cancelling the Deferred would; nothing once the connect ended."""
        factory = self.factory
        if factory is not None and factory.deferred is self:
            factory.cancel(self)


class _DirectClient(tcp.Client):
    """A TCP client connection to an IP address, connected with fewer calls than Twisted's.

    Twisted's waits a reactor turn (a ``callLater(0)``) before it connects, then
    passes even an address literal through a fired Deferred (``succeed`` and two
    callbacks) on its way to ``connect``; its ``doConnect`` calls ``connect``
    again once the socket is writable, and when connected stops reading and
    writing only to start reading again.  Here the connector starts the connect
    (:meth:`start`) as soon as its timeout is set; ``SO_ERROR`` alone says how
    the attempt ended (as Twisted's own comment there says is enough), and the
    socket stays registered for reading throughout: the same readiness events,
    so a failed connect is reported as Twisted reports it.
    """

    #: Whether the connector is yet to :meth:`start` the connect (no callLater was set).
    _waiting_for_start = False
    #: Whether ``connect`` was called on the socket.
    _connect_called = False

    def _finishInit(self, whenDone, skt, error, reactor) -> None:
        if whenDone and not self._requiresResolution:
            self._commonConnection.__init__(self, skt, None, reactor)
            self._waiting_for_start = True
            return
        super()._finishInit(whenDone, skt, error, reactor)

    def start(self) -> None:
        """Connect now (called by the connector once it is ready for the outcome)."""
        if not self._waiting_for_start:
            return
        self._waiting_for_start = False
        self.resolveAddress()

    def resolveAddress(self) -> None:
        if self._requiresResolution:
            super().resolveAddress()
            return
        try:
            self._setRealAddress(self.addr)
        except BaseException:
            self.failIfNotConnected(Failure())

    def doConnect(self) -> None:
        self.doWrite = self.doConnect
        self.doRead = self.doConnect
        if not hasattr(self, "connector"):
            return  # the attempt failed (or was stopped) already
        if self._connect_called:
            # Readiness after connect: it completed, or SO_ERROR says why not.
            err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.failIfNotConnected(error.getConnectError((err, os.strerror(err))))
                return
        else:
            self._connect_called = True
            try:
                result = self.socket.connect_ex(self.realAddress)
            except OSError as e:
                result = e.args[0]
            if result in _IN_PROGRESS:
                self.startReading()
                self.startWriting()
                return
            if result and result != errno.EISCONN:
                self.failIfNotConnected(error.getConnectError((result, os.strerror(result))))
                return
        del self.doWrite
        del self.doRead
        self.stopWriting()
        self._connectDone()  # starts reading: already registered, no epoll call


class _DirectConnector(tcp.Connector):
    """``reactor.connectTCP``'s connector, whose connection is a :class:`_DirectClient`.

    Its connect timeout waits on the shared queue of its delay
    (:func:`~clbproxy.util.delays.delay_queue`), not on a ``DelayedCall`` of its own.
    """

    _timeouts: Optional[DelayQueue] = None

    def _makeTransport(self) -> tcp.Client:
        return _DirectClient(self.host, self.port, self.bindAddress, self, self.reactor)

    def connect(self) -> None:
        # BaseConnector.connect, but for where the timeout waits.
        if self.state != "disconnected":
            raise RuntimeError("can't connect in this state")
        self.state = "connecting"
        if not self.factoryStarted:
            self.factory.doStart()
            self.factoryStarted = 1
        self.transport = transport = self._makeTransport()
        if self.timeout is not None:
            self._timeouts = delay_queue(self.reactor, self.timeout)
            self._timeouts.add(self, self._timed_out)
        self.factory.startedConnecting(self)
        if isinstance(transport, _DirectClient):
            transport.start()

    def _timed_out(self) -> None:
        self._timeouts = None
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.failIfNotConnected(error.TimeoutError())

    def cancelTimeout(self) -> None:
        timeouts, self._timeouts = self._timeouts, None
        if timeouts is not None:
            timeouts.discard(self)


@implementer(IProtocolFactory)
class DirectConnectFactory:
    """The factory given to ``connectTCP`` by :class:`DirectTCPEndpoint`."""

    __slots__ = ("factory", "connector", "deferred")

    def __init__(self, factory: IProtocolFactory) -> None:
        self.factory = factory
        self.connector = None
        #: The connect's Deferred, or the :class:`ConnectOutcome` in its place.
        self.deferred: Union[defer.Deferred, ConnectOutcome, None] = None

    def buildProtocol(self, addr):
        deferred, self.deferred = self.deferred, None
        try:
            protocol = self.factory.buildProtocol(addr)
            if protocol is None:
                raise error.NoProtocol()
        except BaseException:
            if deferred is not None:
                deferred.errback()
            return None
        if deferred is not None:
            deferred.callback(protocol)
        return protocol

    def cancel(self, deferred: Union[defer.Deferred, ConnectOutcome]) -> None:
        self.deferred = None
        connector = self.connector
        deferred.errback(error.ConnectingCancelledError(connector.getDestination()))
        connector.stopConnecting()

    def startedConnecting(self, connector) -> None:
        pass

    def clientConnectionFailed(self, connector, reason) -> None:
        deferred, self.deferred = self.deferred, None
        if deferred is not None:
            deferred.errback(reason)

    def clientConnectionLost(self, connector, reason) -> None:
        pass

    def doStart(self) -> None:
        if self.factory is not None:
            self.factory.doStart()

    def doStop(self) -> None:
        if self.factory is not None:
            self.factory.doStop()

    def release(self) -> None:
        """Let go of everything (the connection no longer needs its factory)."""
        self.factory = self.connector = self.deferred = None


@functools.lru_cache(maxsize=1024)
def _ip_version(host: str) -> Optional[int]:
    """4 or 6 for an IP literal, None for a name (parsed once per backend, not per connection)."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def disable_nagle(transport) -> None:
    """Send small writes at once on ``transport``'s TCP socket (``TCP_NODELAY``).

    A proxy relays what it receives as it arrives; with Nagle's algorithm on, a
    small frame written while an earlier one is unacknowledged waits for that ACK,
    which the peer delays by up to 40 ms: a relayed stream of small or fragmented
    messages slows to about 25 writes a second.  nginx (``tcp_nodelay on``) and
    HAProxy set it on both sides of a proxied connection.  twisted.web sets it on
    the connections it serves and the HTTP client's, but Autobahn's
    ``tcpNoDelay`` option never reaches the socket (its ``connectionMade`` reads
    the option before the factory's options are copied onto the protocol), so
    the relay's backend connections set it here.  TLS and the connection
    limiter's wrappers declare ``ITCPTransport`` and pass the call down.
    """
    if ITCPTransport.providedBy(transport):
        transport.setTcpNoDelay(True)
