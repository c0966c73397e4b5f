"""The ``h2`` state machine as an HTTP/2 server connection uses it, and its bounds.

:class:`H2Limits` are a listener's HTTP/2 settings as the connection reads them;
:class:`ServerH2` is ``h2``'s connection with the checks RFC 9113 lets a server
answer per stream handed to :class:`~clbproxy.http2.connection.H2ServerConnection`
(kept apart so that the connection's own module reads as the protocol it is).
"""

from __future__ import annotations

import attrs
from h2.connection import H2Connection
from h2.errors import ErrorCodes, _error_code_from_int
from h2.events import ConnectionTerminated
from hyperframe.frame import GoAwayFrame

from clbproxy.config import ListenerConfig
from clbproxy.http.server import HTTPLimits

#: Each stream's flow-control window for request bodies: RFC 9113's initial one.
STREAM_WINDOW = 65535


@attrs.frozen
class H2Limits:
    """A listener's HTTP/2 bounds and timeouts (see :class:`clbproxy.config.ListenerConfig`)."""

    http: HTTPLimits = HTTPLimits()
    max_concurrent_streams: int = 128
    connection_window: int = 1024 * 1024
    max_resets: int = 200
    max_control_frames: int = 1000
    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    client_timeout: float = 60.0
    #: Extended CONNECT (RFC 8441) is advertised and served (``websocket_over_http2``).
    connect_protocol: bool = False

    @classmethod
    def from_listener(cls, listener: ListenerConfig) -> H2Limits:
        return cls(
            http=HTTPLimits(
                max_request_line=listener.max_request_line,
                max_header_size=listener.max_header_size,
                max_body_size=listener.max_body_size,
            ),
            max_concurrent_streams=listener.http2_max_concurrent_streams,
            connection_window=listener.http2_connection_window,
            max_resets=listener.http2_max_resets,
            max_control_frames=listener.http2_max_control_frames,
            header_timeout=listener.header_timeout,
            keepalive_timeout=listener.keepalive_timeout,
            client_timeout=listener.client_timeout,
            connect_protocol=listener.websocket_over_http2,
        )

    @property
    def max_header_block(self) -> int:
        """Bytes a header block may reach, encoded or decoded, before the connection ends."""
        return 2 * self.http.max_header_size


def _no_content_length(headers) -> None:
    """Stands in for h2's content-length check: the server connection does it per stream."""


def _untracked(length: int, end_stream: bool) -> None:
    """Stands in for h2's body length tracking (see :func:`_no_content_length`)."""


class ServerH2(H2Connection):
    """``h2``'s connection with two checks handed to us, so they end a stream, not all.

    h2 makes a stream beyond ``MAX_CONCURRENT_STREAMS`` and a body that disagrees
    with its ``content-length`` connection errors; RFC 9113 (5.1.2, 8.1.1) lets
    both be stream errors, which
    :class:`~clbproxy.http2.connection.H2ServerConnection` answers.  And h2
    closes its state machine on any GOAWAY it receives (nothing can be sent
    after); a client's ``NO_ERROR`` GOAWAY leaves it open here, so the streams
    under way can be answered.  The hooks are h2 internals, pinned by the tests
    (h2 4.1-4.4).
    """

    def _receive_goaway_frame(self, frame: GoAwayFrame):
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        event = ConnectionTerminated()
        event.error_code = _error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    @property
    def open_inbound_streams(self) -> int:
        H2Connection.open_inbound_streams.fget(self)  # forgets closed streams
        return 0

    def _begin_new_stream(self, stream_id, allowed_ids):
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream._initialize_content_length = _no_content_length
        stream._track_content_length = _untracked
        return stream
