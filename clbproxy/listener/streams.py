"""HTTP/2 streams counted as connections, for the connection limits.

One HTTP/2 connection carries many requests at once, each holding a backend
connection (issue 22), so every stream in flight beyond a connection's first
counts as one more connection: of its client's address
(``max_connections_per_ip``), of its listener (``max_connections``) and of the
global count (``max_connections`` and the descriptor budget; a stream holds
one backend descriptor, the budget counts two per connection, so this errs on
the safe side).  A connection with one request in flight counts once, exactly
as an HTTP/1.1 keep-alive connection.  A stream over a limit is refused with
``REFUSED_STREAM`` (HTTP/2's "not processed, try again": the counterpart of the
connection closed unanswered at accept), counted (``refused_streams_per_ip``,
``refused_streams_max_connections``) and logged as those closes are
(:class:`clbproxy.listener.limits.CloseLog`).  A limit never pauses a stream:
accepting pauses, and the next connection waits in the backlog, but a stream
cannot wait.
"""

from __future__ import annotations


class StreamHolder:
    """:class:`clbproxy.listener.limits.CountedConnection`'s part: its streams' count."""

    #: HTTP/2 streams in flight beyond the connection's first, counted as connections.
    extra_streams = 0
    #: How many of those count against the client's address.
    extra_ip_streams = 0

    def open_stream(self) -> bool:
        """One more request in flight on this connection than it had (HTTP/2): counted
        as one more connection; False (nothing counted) when a limit is reached."""
        return self.factory.open_stream(self)

    def close_stream(self) -> None:
        """A stream counted by :meth:`open_stream` ended."""
        self.factory.close_stream(self)


class StreamCounting:
    """:class:`clbproxy.listener.limits.ConnectionLimiter`'s part for HTTP/2 streams.

    ``extra_streams``: the streams counted, every connection's together.
    """

    extra_streams = 0

    def open_stream(self, p) -> bool:
        """Count one more stream in flight on ``p`` as a connection, unless that passes
        ``max_connections_per_ip``, the listener's or the global count (False: the
        stream is to be refused; logged and counted here)."""
        if p not in self.protocols:
            return True  # closing: its streams end with it
        client = p.client_ip
        if self._over_limit(client):
            self.stats.increment("refused_streams_per_ip")
            self._stream_log.closed(
                client or "-", limit=f"max_connections_per_ip {self.max_per_ip}"
            )
            return False
        if self.full or self.gate.full:
            self.stats.increment("refused_streams_max_connections")
            limit = (
                f"max_connections {self.max_connections}"
                if self.full
                else f"the global connection limit {self.gate.limit}"
            )
            self._stream_log.closed(client or "-", limit=limit)
            return False
        p.extra_streams += 1
        self.extra_streams += 1
        if self.max_per_ip and client not in self.trusted:
            self._per_ip[client] = self._per_ip.get(client, 0) + 1
            p.extra_ip_streams += 1
        self._gate_moved(+1)
        return True

    def close_stream(self, p) -> None:
        """One stream counted by :meth:`open_stream` ended."""
        if p.extra_streams <= 0:
            return  # released when the connection ended
        p.extra_streams -= 1
        self.extra_streams -= 1
        if p.extra_ip_streams:
            p.extra_ip_streams -= 1
            self._uncount_ip(p.client_ip)
        self._gate_moved(-1)

    def _gate_moved(self, step: int) -> None:
        """The global count moves by ``step``: every listener looks whether to pause or
        resume accepting only when that crosses a limit (a stream is a request, a
        connection a handshake, and looking at every listener for each would cost each
        that much); this listener looks when it has a ``max_connections`` of its own."""
        gate = self.gate
        limit = gate.limit
        crossing = limit and (gate.count + step >= limit or gate.count >= limit)
        if crossing:
            if step > 0:
                gate.opened()
            else:
                gate.closed()
            return
        gate.count += step
        if self.max_connections:
            self.update_accepting()

    def release_streams(self, p) -> None:
        """``p`` ended: what its streams still held is given back."""
        while p.extra_streams > 0:
            self.close_stream(p)
