"""What clbproxy knows about Twisted's protocol wrappers and transports, in one place.

A connection reaches a protocol through layers: the socket transport
(``tcp.Connection``), then wrappers that are both a protocol to the layer below
and a transport to the layer above (the listener's connection limiter, PROXY
protocol, TLS, the endpoint's ``_WrappingProtocol``, twisted.web's protocol
switcher).  A wrapper answers for its transport's attributes
(``ProtocolWrapper.__getattr__``), so it is recognised here by its type, not by
the attributes it seems to have.  Every walk through those layers is a function
of this module, so a change in Twisted's wrappers is answered here once.
"""

from __future__ import annotations

import socket as _socket
from typing import Optional, Sequence

from twisted.internet import tcp
from twisted.internet.endpoints import _WrappingFactory, _WrappingProtocol
from twisted.protocols.policies import ProtocolWrapper
from zope.interface import directlyProvides, providedBy

from clbproxy.net.endpoints import DirectConnectFactory

#: Windows sockets have no ``sendmsg``: pieces are queued there.
_NO_SENDMSG = not hasattr(_socket.socket, "sendmsg")

#: More layers than any connection of ours has: a loop in the links stops here.
_MAX_LAYERS = 8


def innermost_transport(transport):
    """The socket transport under any protocol wrappers (connection limiter, TLS, PROXY protocol).

    Setting ``bufferSize`` or ``producer`` on a wrapper would not reach the
    socket: this is where they go.
    """
    for _ in range(_MAX_LAYERS):
        if not isinstance(transport, ProtocolWrapper) or transport.transport is None:
            break
        transport = transport.transport
    return transport


def socket_under(transport) -> Optional[tcp.Connection]:
    """The TCP connection under ``transport`` when writing to it directly is the same thing.

    That is a plain TCP transport, or one under pass-through wrappers (the
    connection limiter, PROXY protocol) whose ``write`` only hands the bytes down;
    never under TLS, which must encrypt them.
    """
    for _ in range(4):
        if isinstance(transport, tcp.Connection):
            return transport
        if not isinstance(transport, ProtocolWrapper) or type(transport).write is not (
            ProtocolWrapper.write
        ):
            return None
        transport = transport.transport
    return None


def send_now(connection: tcp.Connection, data: bytes) -> None:
    """Write ``data`` to a TCP connection: straight to the socket when nothing waits before it.

    Twisted's ``write`` only queues the bytes and sends them on the reactor's next
    turn, which for a relay of small messages doubles the reactor's work per
    message and adds latency.  When the connection's buffer is empty the bytes go
    to the kernel at once; whatever the socket does not take (or any doubt: a
    connection closing, an error) goes through ``write`` as usual, which keeps
    the order, the buffer limit and back-pressure as they were.
    """
    if (
        connection.dataBuffer
        or connection._tempDataLen
        or connection.disconnecting
        or connection._aborting
        or connection._writeDisconnected
        or not connection.connected
    ):
        connection.write(data)
        return
    try:
        sent = connection.socket.send(data)
    except OSError:
        sent = 0
    if sent < len(data):
        connection.write(data[sent:])


def send_parts_now(connection: tcp.Connection, parts: Sequence[bytes]) -> None:
    """:func:`send_now` for bytes in pieces (a chunk's size line, data and CRLF): one ``sendmsg``.

    Joining the pieces first would copy the data; ``writeSequence`` would queue
    them for the reactor's next turn.  What the socket does not take goes
    through ``writeSequence``, in order.
    """
    if (
        _NO_SENDMSG
        or connection.dataBuffer
        or connection._tempDataLen
        or connection.disconnecting
        or connection._aborting
        or connection._writeDisconnected
        or not connection.connected
    ):
        connection.writeSequence(parts)
        return
    try:
        sent = connection.socket.sendmsg(parts)
    except OSError:
        sent = 0
    rest = []
    for part in parts:
        if sent >= len(part):
            sent -= len(part)
        else:
            rest.append(part[sent:] if sent else part)
            sent = 0
    if rest:
        connection.writeSequence(rest)


def tcp_connection_under(transport) -> Optional[tcp.Connection]:
    """The TCP connection under ``transport`` and any wrappers, TLS included (None if none)."""
    for _ in range(_MAX_LAYERS):
        if transport is None or isinstance(transport, tcp.Connection):
            return transport
        transport = getattr(transport, "transport", None)
    return None


#: (wrapper class, what its transport provides) -> the wrapper's declaration (see provide_like).
_DECLARATIONS: dict = {}


def provide_like(wrapper, transport) -> None:
    """Make ``wrapper`` provide what ``transport`` provides, as ``ProtocolWrapper`` does.

    ``directlyProvides(wrapper, providedBy(transport))`` normalises the
    arguments and looks the declaration up in zope's weak registry on every
    connection; the declaration for a wrapper class over a kind of transport is
    always the same one, so it is built once (a process sees a few kinds).
    """
    spec = providedBy(transport)
    key = (wrapper.__class__, spec)
    declaration = _DECLARATIONS.get(key)
    if declaration is None:
        directlyProvides(wrapper, spec)
        if len(_DECLARATIONS) < 64:
            _DECLARATIONS[key] = wrapper.__provides__
    else:
        wrapper.__provides__ = declaration


def innermost_protocol(protocol):
    """The protocol under every protocol wrapper that wraps ``protocol`` (the limiter, TLS)."""
    for _ in range(_MAX_LAYERS):
        inner = getattr(protocol, "wrappedProtocol", None)
        if inner is None:
            break
        protocol = inner
    return protocol


def switch_protocol(old, new, socket=None) -> bool:
    """Make ``new`` receive what the transport under ``old`` delivers; False if not found.

    The link to ``old`` is on the socket transport or on one of the protocol
    wrappers above it (connection limiter, TLS, PROXY protocol, endpoint wrapper).
    ``socket``: the TCP connection under ``old``'s transport, when the caller
    knows it (see :func:`socket_under`); else it is looked for.
    """
    if socket is None:
        socket = old.transport
        for _ in range(_MAX_LAYERS):
            if hasattr(socket, "bufferSize") or not hasattr(socket, "transport"):
                break
            socket = socket.transport
    if getattr(socket, "protocol", None) is old:
        socket.protocol = new
        return True
    holder = getattr(socket, "protocol", None)
    for _ in range(_MAX_LAYERS):
        if holder is None:
            return False
        for name in ("wrappedProtocol", "_wrappedProtocol"):
            if getattr(holder, name, None) is old:
                setattr(holder, name, new)
                return True
        holder = getattr(holder, "wrappedProtocol", None) or getattr(
            holder, "_wrappedProtocol", None
        )
    return False


class _TakenOver:
    """Stands in for the connector of a client connection whose endpoint objects were dropped.

    Twisted's connector (with the endpoint's per-connection factory and
    protocol wrappers, and the Deferred of the connect) stays referenced by the
    connection until it ends, only to be told that it ended; for a connection
    whose factory has nothing left to learn that is dead weight.
    """

    __slots__ = ()

    def connectionLost(self, reason) -> None:
        pass

    def connectionFailed(self, reason) -> None:
        pass


_TAKEN_OVER = _TakenOver()


def unwrap_client(protocol) -> None:
    """Make a plain TCP client transport deliver to ``protocol`` with no endpoint objects between.

    Only the plain case is touched: an open TCP connection whose protocol is the
    endpoint's ``_WrappingProtocol`` around ``protocol`` and whose connector
    connected it with the endpoint's ``_WrappingFactory``.  The wrapper only
    passed calls through (``protocol`` must not be half-closeable, so nothing it
    adds is used); the factory would only hear that the connection was lost.
    """
    socket = protocol.transport
    if not isinstance(socket, tcp.Client) or not socket.connected:
        return
    connector = getattr(socket, "connector", None)
    factory = getattr(connector, "factory", None)
    if type(factory) is DirectConnectFactory and socket.protocol is protocol:
        # No wrapper to remove; the connector and the connection refer to each other.
        socket.connector = _TAKEN_OVER
        factory.release()
        return
    wrapper = socket.protocol
    if type(wrapper) is not _WrappingProtocol or wrapper._wrappedProtocol is not protocol:
        return
    connector = getattr(socket, "connector", None)
    if type(getattr(connector, "factory", None)) is not _WrappingFactory:
        return
    socket.protocol = protocol
    socket.connector = _TAKEN_OVER
    # The factory, its connect Deferred and the connector refer to one another:
    # freed now instead of at the next full garbage collection.
    vars(connector.factory).clear()


def buffered_bytes(transport) -> int:
    """Bytes waiting in the outgoing buffer of the socket under ``transport``."""
    socket = innermost_transport(transport)
    if socket is None:
        return 0
    return len(getattr(socket, "dataBuffer", b"")) + getattr(socket, "_tempDataLen", 0)


def peer_ip(transport) -> str:
    """The peer's address as text ("-" when the transport cannot tell)."""
    try:
        peer = transport.getPeer()
    except Exception:
        return "-"
    return getattr(peer, "host", None) or str(peer)


def host_address(transport):
    """The listening side's address of a connection (under PROXY protocol: the original)."""
    try:
        return transport.getHost()
    except Exception:
        return None
