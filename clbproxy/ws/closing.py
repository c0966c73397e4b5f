"""The end of a relayed WebSocket session: close policy, both hops' ends, the access record.

How the end of one hop ends the other is decided by :mod:`clbproxy.ws.closecodes`;
this stage applies it once per hop, ends a session still in its handshake
(499, 503, 502, 504), and writes the session's log line and access record when
both hops are gone.
"""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol

from clbproxy.http.forwarded import real_client_ip
from clbproxy.net.transports import peer_ip
from clbproxy.observability import accesslog
from clbproxy.routing.settings import ListenerSettings
from clbproxy.util.leanlog import LeanLogger
from clbproxy.util.logtext import printable
from clbproxy.ws.closecodes import (
    CloseAction,
    CloseReason,
    HopEnd,
    HopEvent,
    Side,
    close_for_other_hop,
    proxy_closes,
)
from clbproxy.ws.compaction import forget_compaction
from clbproxy.ws.handshake import request_target
from clbproxy.ws.handshake_stage import refuse
from clbproxy.ws.hops import CONNECTING, OPEN, read_again

log = LeanLogger()  # info lines per session: see clbproxy.util.leanlog


class Closing:
    """How a session ends: what one hop's end means for the other, and its access record.

    Mixed into :class:`clbproxy.ws.relay.RelaySession`, whose slots hold the state.
    """

    __slots__ = ()

    def close(self, reason: str) -> None:
        """The backend was taken out of service: end the session with 1001 to the client."""
        if self.front.state == OPEN:
            self.front.sendCloseFrame(code=1001, reasonUtf8=reason.encode("utf-8")[:123])
        if self.backend is not None and self.backend.state == OPEN:
            self.backend.sendCloseFrame(code=1001, reasonUtf8=b"proxy: backend out of service")

    def close_both(self, client_code: int, backend_code: int, reason: bytes) -> None:
        """Close both hops ourselves (idle timeout, shutdown), not by the close-code table."""
        self._close_hops(CloseAction(client_code, reason), CloseAction(backend_code, reason))

    def _close_hops(self, to_client: CloseAction, to_backend: CloseAction) -> None:
        self._told = frozenset((Side.CLIENT, Side.BACKEND))
        self._stop_controls()
        for hop, action in ((self.front, to_client), (self.backend, to_backend)):
            if hop is None:
                continue
            read_again(hop)
            if hop.state == OPEN:
                hop.sendCloseFrame(code=action.code, reasonUtf8=action.reason)
            elif hop.state in (CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING):
                hop.dropConnection(abort=True)

    def relieve(self, reason: str) -> None:
        """End the session so that its client reconnects, for ``reason``.

        ``reason`` is a :class:`~clbproxy.ws.closecodes.CloseReason` value.
        ``lifetime``, ``rebalance`` and ``drain`` close the client's hop with
        1001 (:data:`~clbproxy.ws.closecodes.RECONNECT`) and the reason named,
        the backend's with 1001 saying why; ``rate_limit`` closes the client
        as over its limit (1008; the backend gets 1001).  The reason goes into
        the session's access record (``close_reason``) and the listener's
        counters.  Data either hop sent before this is relayed before the
        Close.  A session still in its handshake is relieved as soon as it
        opens; one already ending is left to end as it does.  A tunnel's TCP
        connections are closed instead (no Close frame fits between its frames).
        """
        self._proxy_close(CloseReason(reason), Side.CLIENT, "")

    def _proxy_close(self, reason: CloseReason, side: Side, limit: str) -> None:
        """The proxy ends the session for ``reason`` (``side``, ``limit``: see ``proxy_closes``)."""
        if self._told or self._ended:
            return
        record = self.record
        if self._opened is None:
            # Applied by ``relieve_pending`` once both hops are open.
            if record.close_reason is None:
                record.close_reason = reason.value
            return
        record.close_reason = reason.value
        self._count(f"websocket_closes_{reason.value}")
        log.info(
            "websocket: {client} {path}: closed by the proxy ({reason}{detail})"
            " request_id={request_id}",
            client=self.client_ip,
            path=printable(self.target),
            reason=reason.value,
            detail=f": {side.name.lower()} over {limit}" if limit else "",
            request_id=self.shown_id(),
        )
        if self.tunnel:
            # No Close frame can be put between a tunnel's frames: end both TCP connections.
            self._told = frozenset((Side.CLIENT, Side.BACKEND))
            self._stop_controls()
            for hop in (self.front, self.backend):
                hop.wasNotCleanReason = f"closed by the proxy ({reason.value})"
                hop.dropConnection(abort=False)
            return
        self._close_hops(*proxy_closes(reason, side, limit))

    def rate_exceeded(self, side: Side, limit: str) -> None:
        """The hop on ``side`` passed ``limit`` (``websocket_rate_action = "close"``)."""
        self._proxy_close(CloseReason.RATE_LIMIT, side, limit)

    def _stop_controls(self) -> None:
        controls, self.controls = self.controls, None
        if controls is not None:
            controls.stop()

    def relieve_pending(self) -> None:
        """Both hops just opened: apply a :meth:`relieve` that came during the handshake."""
        pending = self.record.close_reason
        if pending is not None:
            self.record.close_reason = None
            self._proxy_close(CloseReason(pending), Side.CLIENT, "")

    def shut_down(self) -> None:
        """The proxy is stopping: 1001 to the client, a normal close to the backend.

        A session still in its handshake is refused with 503.
        """
        if self._opened is None:
            if self._connecting is not None:
                self._connecting.cancel()
            if self.backend is not None:
                self.backend.dropConnection(abort=True)
            self._fail(refuse(503, "the proxy is shutting down"))
            return
        if self.timers is not None:
            self.timers.stop()
        self.close_both(1001, 1000, b"proxy shutting down")

    # -- end -------------------------------------------------------------------------

    def hop_ended(self, event: HopEvent) -> None:
        """One hop is closing: tell the other hop once, as the close-code table says."""
        other_side = event.side.other
        if other_side in self._told or event.side in self._told:
            return
        self._told = self._told | {other_side}
        self._stop_controls()
        if self.record.closed_by is None:
            self.record.closed_by = event.side.name.lower()
        other = self.backend if other_side is Side.BACKEND else self.front
        if other is None:
            return
        for hop in (self.front, self.backend):
            if hop is not None:
                read_again(hop)
        if other.state == OPEN:
            action = close_for_other_hop(event)
            other.sendCloseFrame(code=action.code, reasonUtf8=action.reason or None)
        elif other.state in (CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING):
            other.dropConnection(abort=True)

    def hop_lost(self, side: Side, was_clean: bool, code, reason) -> None:
        """One hop's TCP connection is gone."""
        hop = self.front if side is Side.CLIENT else self.backend
        self._ended = {**self._ended, side: describe_end(hop, was_clean, code)}
        self._closes = {**self._closes, side: (code, reason)}
        if self.timers is not None:
            self.timers.stop()
        self._stop_controls()
        if side is Side.CLIENT and self._opened is None:
            self._client_left_during_handshake()
        elif side is Side.BACKEND and self._handshake is not None and not self._handshake.called:
            self._backend_failed_handshake(hop, reason)
        elif hop is not None and hop.failedByMe:
            self.hop_ended(HopEvent(side, HopEnd.FAILED, hop.localCloseCode, reason or ""))
        else:
            if side is Side.BACKEND and self._opened is not None and not was_clean:
                # Only a backend that dropped a session unasked has failed; the end
                # of a closing handshake, whoever started it, is not a reset.
                if Side.BACKEND not in self._told:
                    self.group.report_failure(self.backend_config, "connection reset")
            told = self._told
            if side not in told and side.other not in told:  # else hop_ended has nothing to do
                self.hop_ended(HopEvent(side, HopEnd.LOST))
        if len(self._ended) == 2 or (side is Side.CLIENT and self.backend is None):
            self.release()
            self.factory.sessions.discard(self)
            self._log_end()
            self._unlink()

    def _unlink(self) -> None:
        """Break the ended session's reference cycles, so refcounting frees it at once.

        Its hops point at the session and at each other, and its timers at the
        session: left linked, some 30 objects per session wait for the cyclic
        collector, whose passes over them cost every handshake.
        """
        if self.timers is not None:
            self.timers.detach()
        forget_compaction(self.reactor, self)
        for hop in (self.front, self.backend):
            unlink = getattr(hop, "unlink", None)
            if unlink is not None:
                unlink()

    def _client_left_during_handshake(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.backend is not None:
            self.backend.dropConnection(abort=True)
        self._fail(refuse(499, "client closed the connection during the handshake"))

    def _backend_failed_handshake(self, backend, reason) -> None:
        if getattr(backend, "wasOpenHandshakeTimeout", False):
            self._fail(refuse(504, "the backend did not answer the WebSocket handshake in time"))
        else:
            detail = getattr(backend, "wasNotCleanReason", None) or reason or "connection lost"
            self.group.report_failure(self.backend_config, f"handshake failed: {detail}")
            self._fail(refuse(502, f"the backend's handshake failed: {detail}"))

    def _log_end(self) -> None:
        now = self.reactor.seconds()
        backend = self.backend
        up_dropped, up_dropped_bytes = self.front.dropped_after_close
        down_dropped, down_dropped_bytes = backend.dropped_after_close if backend else (0, 0)
        up = self.front.messages_in
        down = backend.messages_in if backend else 0
        log.info(
            "websocket: {client} {path} -> {backend} closed after {duration:.3f}s; "
            "client: {client_end}, backend: {backend_end}; "
            "messages client->backend {up}, backend->client {down}{dropped} "
            "request_id={request_id}",
            client=self.client_ip,
            path=printable(self.target),
            backend=self.backend_config.address if self.backend_config else "-",
            duration=now - (self._opened or self._started),
            client_end=self._ended.get(Side.CLIENT, "-"),
            backend_end=self._ended.get(Side.BACKEND, "-"),
            up=up,
            down=down,
            dropped=dropped_text(up_dropped, up_dropped_bytes, down_dropped, down_dropped_bytes),
            up_dropped=up_dropped,
            up_dropped_bytes=up_dropped_bytes,
            down_dropped=down_dropped,
            down_dropped_bytes=down_dropped_bytes,
            request_id=self.shown_id(),
        )
        record = self._access_record(now, up, down)
        accesslog.emit(record, self.factory.access, opened_at=self._opened)

    def _access_record(self, now: float, up: int, down: int) -> accesslog.SessionRecord:
        """The session's access record; ``up``, ``down``: the messages each hop received."""
        record, front = self.record, self.front
        if not self._filled:
            fill_request_fields(record, front, self.client_ip)
        record.rule = accesslog.rule_label(self.rule.host, self.rule.path) if self.rule else None
        record.group = self.group.name
        record.backend = self.backend_config.address if self.backend_config else None
        if self._opened is not None:
            record.duration_s = now - self._opened
            record.bytes_in = front.octets_in
            record.bytes_out = front.octets_out
            record.messages_in = up
            record.messages_out = down
            code, reason = self._closes.get(Side.CLIENT, (None, None))
            record.client_close_code, record.client_close_reason = code, reason or None
            code, reason = self._closes.get(Side.BACKEND, (None, None))
            record.backend_close_code, record.backend_close_reason = code, reason or None
        else:
            record.closed_by = None
            record.close_reason = None  # a relief waiting for an open that never came
        return record


def fill_request_fields(
    record: accesslog.SessionRecord, front: WebSocketServerProtocol, client_ip: str = ""
) -> None:
    """The client-side fields of a session's access record, from its upgrade request.

    ``client_ip``: the address of the client's connection, when already known.
    """
    settings: ListenerSettings = front.factory.settings
    headers = getattr(front, "http_headers", None) or {}
    forwarded = [headers["x-forwarded-for"]] if "x-forwarded-for" in headers else []
    record.listener = settings.listener.name
    record.client = real_client_ip(
        client_ip or peer_ip(front.transport), forwarded, settings.trusted
    )
    record.path = printable(request_target(getattr(front, "http_request_uri", None) or "/"))
    record.host = printable(headers.get("host"))
    record.user_agent = printable(headers.get("user-agent"))
    record.request_id = getattr(front, "request_id", None)
    record.protocol = getattr(front, "http_version", "HTTP/1.1")
    trace = getattr(front, "trace", None)
    if trace is not None:
        record.trace_id, record.parent_id = trace.trace_id, trace.parent_id


def refusal_record(front: WebSocketServerProtocol, status: int) -> accesslog.SessionRecord:
    """The access record of a handshake refused before any backend was chosen."""
    record = accesslog.SessionRecord(status=status, handshake_ms=0.0)
    fill_request_fields(record, front)
    return record


def dropped_text(up: int, up_bytes: int, down: int, down_bytes: int) -> str:
    """The end of a session's log line naming the data no hop could take any more, if any.

    ``up``: messages (and bytes) from the client the proxy did not pass on because
    the backend's hop was closing or closed; ``down``: the same from the backend.
    """
    if not (up or up_bytes or down or down_bytes):
        return ""  # nearly every session
    parts = [
        f"{direction} {messages} message{'' if messages == 1 else 's'} ({octets} bytes)"
        for direction, messages, octets in (
            ("client->backend", up, up_bytes),
            ("backend->client", down, down_bytes),
        )
        if messages or octets
    ]
    return f"; dropped after close: {', '.join(parts)}" if parts else ""


def describe_end(hop, was_clean: bool, code) -> str:
    if hop is None:
        return "-"
    if was_clean:
        sent = hop.localCloseCode
        received = hop.remoteCloseCode
        return f"clean (sent {sent}, received {received})"
    return f"unclean ({hop.wasNotCleanReason or 'connection lost'})"
