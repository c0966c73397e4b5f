"""The watch stream of etcd's JSON gateway, bytes in and responses out (sans-IO).

The gateway answers ``POST /v3/watch`` with one JSON object per line for as
long as the watch lives: ``created``, then events, progress notifications
(a header only), ``canceled`` (with ``compact_revision`` after a compaction;
the HTTP stream then stays open), and when its member loses quorum under the
``Grpc-Metadata-hasleader`` header, a final ``{"error": ...}`` *without* a
trailing newline.  :class:`WatchStream` splits and decodes; the caller feeds it
what the connection delivers and calls :meth:`~WatchStream.end` when the body ends.
"""

from __future__ import annotations

import json

from clbproxy.fleet.messages import GatewayError, WatchResponse, watch_response

#: The longest line accepted (etcd's own request limit is 1.5 MiB by default).
MAX_LINE = 8 * 1024 * 1024


class WatchStream:
    """Splits the watch body into lines and decodes each line into a
    :class:`~clbproxy.fleet.messages.WatchResponse`.

    A line that is not a watch response (bad JSON, wrong shape, too long) becomes
    a response whose ``error`` says so: the caller treats it as the end of the
    stream, as it treats the gateway's own errors.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.failed = False

    def feed(self, data: bytes) -> list[WatchResponse]:
        if self.failed:
            return []
        self._buffer += data
        responses = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.strip():
                responses.append(self._decode(line))
                if responses[-1].error is not None:
                    self._buffer.clear()
                    break
        if len(self._buffer) > MAX_LINE:
            self._buffer.clear()
            responses.append(self._fail(f"etcd: a watch line over {MAX_LINE} bytes"))
        return responses

    def end(self) -> list[WatchResponse]:
        """The body ended: what is left is a last line without its newline (an error)."""
        if self.failed:
            return []
        line, self._buffer = bytes(self._buffer), bytearray()
        return [self._decode(line)] if line.strip() else []

    def _decode(self, line: bytes) -> WatchResponse:
        try:
            response = watch_response(json.loads(line))
        except (ValueError, GatewayError) as error:
            return self._fail(f"etcd: unreadable watch line: {error}")
        if response.error is not None:
            self.failed = True
        return response

    def _fail(self, reason: str) -> WatchResponse:
        self.failed = True
        return WatchResponse(error=reason)
