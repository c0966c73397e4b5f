"""Smaller idle sessions: the attribute dicts of their TCP connections rebuilt to share keys.

A session that stays open (most of a fleet's sessions sit idle) holds two TCP
connections whose dicts went through HTTP parsing and the handshake; rebuilt,
they share one table of attribute names with every other idle connection.
A session that ends within :data:`COMPACT_AFTER` seconds (a short one) is
never compacted: the work would be thrown away with it.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Sequence

from autobahn.websocket.protocol import WebSocketProtocol

from clbproxy.net.transports import tcp_connection_under
from clbproxy.util.delays import delay_queue

CLOSED = WebSocketProtocol.STATE_CLOSED


#: PyPy shares attribute layouts between instances ("maps"); a dict assigned to
#: ``__dict__`` would be a real dict per instance, larger, so it is left alone there.
_REBUILDING_DICTS_SAVES_MEMORY = sys.implementation.name == "cpython"


def compact_tcp_transport(transport) -> None:
    """Rebuild the attribute dict of the TCP connection under ``transport``, smaller.

    CPython keeps the attribute names of a class's instances in one table shared
    by their dicts, as long as they all set the same names; each dict then holds
    only its values.  A server connection goes through HTTP parsing and the
    handshake, which set other names on it, so its dict got a table of its own
    (about 460 bytes on CPython 3.11, with the dict).  A session moving to the
    fast path is about to sit idle for a long time, so each of its connections
    moves to a subclass of its class that adds nothing (:func:`_idle_class`) and
    gets a dict holding the same names as every other such connection, with the
    attributes that later writes set already in it: the name table is shared
    again, about 230 bytes less per connection.  The values are the same objects.

    The connection's log prefix and ``repr`` text (``ListenerConnection,7,10.0.0.9``,
    ``<ListenerConnection #7 on 8080>``) become strings shared by every connection
    of the listener (``ListenerConnection``, ``<ListenerConnection on 8080>``): about
    250 bytes less per session.  They only label Twisted's own messages about an
    error inside the connection; the session's log lines name its client.
    """
    if not _REBUILDING_DICTS_SAVES_MEMORY:
        return
    transport = tcp_connection_under(transport)
    if transport is None:
        return
    attributes = dict(vars(transport))
    # What writes set later: present from the start, so setting them adds no key.
    for name in _SET_BY_WRITES:
        attributes.setdefault(name, getattr(transport, name))
    logstr = attributes.get("logstr")
    if type(logstr) is str:
        attributes["logstr"] = sys.intern(logstr.split(",", 1)[0])
    repstr = attributes.get("repstr")
    if type(repstr) is str:
        attributes["repstr"] = sys.intern(_SESSION_NUMBER.sub("", repstr))
    idle = _idle_class(type(transport))
    transport.__class__ = idle
    # Attributes set on a new instance of ``idle`` go into a dict that shares its
    # key table with every other idle connection of that class: only the values
    # are per connection.
    template = idle.__new__(idle)
    for name in sorted(attributes):
        setattr(template, name, attributes[name])
    transport.__dict__ = vars(template)


#: Seconds a session stays open before its connections are compacted: most short
#: sessions have ended by then and never pay for it.
COMPACT_AFTER = 1.0


def compact_when_settled(clock, key, hops: Sequence) -> None:
    """Compact the connections of ``hops`` (the session's fast-path hops) in ``COMPACT_AFTER`` s.

    The saving is for sessions that stay open; ``key`` (the session) cancels it
    with :func:`forget_compaction` when the session ends before.
    """
    delay_queue(clock, COMPACT_AFTER).add(key, functools.partial(_compact_open, hops))


def forget_compaction(clock, key) -> None:
    """The session ``key`` ended: its connections are not compacted."""
    delay_queue(clock, COMPACT_AFTER).discard(key)


def _compact_open(hops: Sequence) -> None:
    for hop in hops:
        if hop.state != CLOSED and hop.transport is not None:
            compact_tcp_transport(hop.transport)


#: Attributes of a TCP connection that its writes and producers set (class defaults until then).
_SET_BY_WRITES = ("dataBuffer", "offset", "_tempDataLen", "producer", "streamingProducer")


@functools.cache
def _idle_class(cls: type) -> type:
    """The subclass of ``cls`` for compacted connections (``cls`` itself if it is one).

    It adds nothing but a table of attribute names of its own, shared by the
    dicts :func:`compact_tcp_transport` gives its instances, and keeps the name
    (and so the ``repr``) of ``cls``.
    """
    if cls.__dict__.get("_compacted_on_the_fast_path"):
        return cls
    namespace = {"__module__": cls.__module__, "_compacted_on_the_fast_path": True}
    return type(cls.__name__, (cls,), namespace)


#: `` #7`` in a connection's ``repr`` text.
_SESSION_NUMBER = re.compile(r" #[0-9]+")
