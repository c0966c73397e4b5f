"""What an HTTP/2 connection counts, and where: the listener's counters and its limits.

The connection is built below the listener (:mod:`clbproxy.listener`), so it
reaches both without importing them: the listener's ``LimitStats`` is handed to
it (or :class:`NoStats`), and the connection limiter's record of its TCP
connection (:class:`clbproxy.listener.streams.StreamHolder`) is found under its
TLS layer by :func:`stream_counter`.
"""

from __future__ import annotations


class NoStats:
    """Counts nothing (a connection without a listener's ``LimitStats``)."""

    def increment(self, name: str) -> None:
        pass


def stream_counter(transport):
    """The connection limiter's record of a connection under its TLS layer, if any."""
    for _ in range(8):
        if transport is None or hasattr(transport, "open_stream"):
            return transport
        transport = getattr(transport, "transport", None)
    return None
