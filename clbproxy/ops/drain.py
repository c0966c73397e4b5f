"""Stopping gracefully: what SIGTERM does to the listeners of one process (or of a worker)."""

from __future__ import annotations

from typing import Iterable

from twisted.internet import defer, task
from twisted.logger import Logger

from clbproxy.http2.connection import H2ServerConnection
from clbproxy.listener.connection import ListenerConnection
from clbproxy.net.transports import innermost_protocol

log = Logger()

#: How often a drain looks whether everything has ended.
DRAIN_POLL = 0.05


def drain(listeners: Iterable, reactor, timeout: float) -> defer.Deferred:
    """Stop ``listeners`` gracefully; fires True if everything ended within ``timeout``.

    Each listener stops accepting; WebSocket clients get 1001 and backends a
    normal close; HTTP requests under way finish (with ``Connection: close``);
    idle connections close now; HTTP/2 connections get ``GOAWAY`` and close once
    their open streams have finished.  At ``timeout``, what is left is cut.
    """
    listeners = list(listeners)
    stopping = []
    for service in listeners:
        service.admission.draining = True
        if service.running:
            stopping.append(defer.maybeDeferred(service.stopService))
        for session in list(service.relay.sessions):
            session.shut_down()
        for connection in list(service.limiter.protocols):
            if not connection.started:
                # Still waiting for its PROXY header: nothing under way to finish.
                connection.transport.abortConnection()
                continue
            # Under TLS too: the HTTP/1.1 connection or the HTTP/2 connection (GOAWAY).
            channel = innermost_protocol(connection)
            if isinstance(channel, (ListenerConnection, H2ServerConnection)):
                channel.drain()

    def remaining() -> int:
        return sum(len(s.limiter.protocols) + len(s.relay.sessions) for s in listeners)

    log.info(
        "draining: {count} connection(s) and session(s), at most {timeout:g} s",
        count=remaining(),
        timeout=timeout,
    )
    done = defer.Deferred()
    started = reactor.seconds()

    def poll() -> None:
        left = remaining()
        if left == 0:
            loop.stop()
            log.info("drained in {seconds:.3f} s", seconds=reactor.seconds() - started)
            done.callback(True)
        elif reactor.seconds() - started >= timeout:
            loop.stop()
            log.warn("drain timeout: cutting {count} connection(s) left", count=left)
            _cut(listeners)
            done.callback(False)

    loop = task.LoopingCall(poll)
    loop.clock = reactor
    loop.start(DRAIN_POLL, now=True)

    def close_pools(drained: bool) -> defer.Deferred:
        # Responses that ended during the drain returned their backend connection
        # to the keep-alive pool after the listener first emptied it.
        closing = [defer.maybeDeferred(s.forwarder.close) for s in listeners]
        d = defer.gatherResults(closing, consumeErrors=True)
        d.addBoth(lambda _: drained)
        return d

    done.addCallback(close_pools)
    result = defer.gatherResults([done, *stopping], consumeErrors=True)
    result.addCallback(lambda results: results[0])
    return result


def _cut(listeners: list) -> None:
    for service in listeners:
        for session in list(service.relay.sessions):
            for hop in (session.front, session.backend):
                if hop is not None and hop.transport is not None:
                    hop.transport.abortConnection()
        for connection in list(service.limiter.protocols):
            if connection.transport is not None:
                connection.transport.abortConnection()
