"""How the end of one hop of a WebSocket session ends the other hop.

A relayed session has two hops, client <-> proxy and proxy <-> backend, each with
its own closing handshake.  When one hop ends, this table decides what the other
hop is told.  It is one pure function so the whole policy can be read, and
tested, as a table:

=============================  ===========================  ============================
what happened on one hop       told to the backend          told to the client
=============================  ===========================  ============================
peer sent Close(code, reason)  the same code and reason     the same code and reason
peer sent Close without code   Close without code           Close without code
peer broke the protocol        1001 "client error: ..."     1011 "backend error: ..."
(the proxy failed the hop)
TCP lost without a Close       1001 "client went away"      1011 "backend went away"
=============================  ===========================  ============================

Codes that must never be on the wire (1005, 1006, 1015) and codes the other
hop's peer would reject as reserved are replaced like a protocol error.  1014
("bad gateway") is not used towards clients: Autobahn-based peers treat a
received 1014 as a protocol violation, so a lost backend is 1011.

When the proxy itself ends an open session (:class:`CloseReason`), what each hop
is told is :func:`proxy_closes`:

- lifetime, rebalance, drain: the client gets 1001 with the reason named
  (``lifetime``, ``rebalance``, ``drain``), the backend 1001 ``proxy: ...`` saying why;
- the client passed a rate limit: the client gets 1008 ``rate limit: KEY``, the
  backend 1001 ``proxy: client over KEY``;
- the backend passed a rate limit: the backend gets 1008 ``rate limit: KEY``, the
  client 1011 ``backend over KEY``.

1001 is the one code for "reconnect, you will be served elsewhere"
(:data:`RECONNECT`): every client in use takes it as a normal end (browsers,
Autobahn, python ``websockets``, whose ``ConnectionClosedOK`` it is, node's
``ws``, socket.io), it is what clients already get from Cloudflare's proxy
when it restarts, and it asks for no delay; 1012 would (5 to
30 s, in its IANA registration) and is an error to ``websockets``, and 1013
asks the client not to come back to the same address.  The reasoning is in
the operations guide (``docs/operations.rst``, "Operating long-lived sessions").
"""

from __future__ import annotations

import enum
from typing import Optional

import attrs

#: Codes a proxy may put in a Close frame: RFC 6455 7.4.1 and the IANA registry,
#: less 1004/1005/1006/1015 (reserved / never sent) and 1014.
SENDABLE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013}
) | frozenset(range(3000, 5000))

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011

#: The close code of a session the proxy ends so that its client reconnects
#: (lifetime, rebalancing, a drain that ends sessions).
RECONNECT = GOING_AWAY

#: Close reasons are at most 123 bytes of UTF-8 (125-byte control frame payload).
MAX_REASON_BYTES = 123


class Side(enum.Enum):
    """Which hop of a session an event happened on."""

    CLIENT = "client"
    BACKEND = "backend"

    # Members are singletons: hashed by identity, in C (Enum's own hashes the name in
    # Python, and sides key the per-session dicts and sets of the closing stage).
    __hash__ = object.__hash__

    @property
    def other(self) -> Side:
        return Side.BACKEND if self is Side.CLIENT else Side.CLIENT


class HopEnd(enum.Enum):
    """How a hop ended."""

    #: The peer sent a Close frame (code may be None: a Close without a code).
    CLOSED = "closed"
    #: The proxy failed the hop because the peer broke the protocol or a limit.
    FAILED = "failed"
    #: The TCP connection was lost without a closing handshake.
    LOST = "lost"


@attrs.frozen
class HopEvent:
    """What happened on one hop."""

    side: Side
    how: HopEnd
    code: Optional[int] = None
    reason: str = ""


@attrs.frozen
class CloseAction:
    """The Close frame to send on the other hop (``code`` None: a Close with no code)."""

    code: Optional[int]
    reason: bytes = b""


class CloseReason(str, enum.Enum):
    """Why the proxy ended an open session itself (the access log's ``close_reason``)."""

    #: A hop passed its message or byte rate (``websocket_rate_action = "close"``).
    RATE_LIMIT = "rate_limit"
    #: The session reached its ``websocket_max_lifetime``.
    LIFETIME = "lifetime"
    #: Moved off a backend that carries more than its share.
    REBALANCE = "rebalance"
    #: Its backend is drained and its sessions are being ended.
    DRAIN = "drain"


#: What the backend is told when the proxy ends a session so its client reconnects.
_WHY_FOR_BACKEND = {
    CloseReason.LIFETIME: "proxy: session lifetime reached",
    CloseReason.REBALANCE: "proxy: session moved to another backend",
    CloseReason.DRAIN: "proxy: backend drained",
}


def proxy_closes(
    reason: CloseReason, side: Side = Side.CLIENT, limit: str = ""
) -> tuple[CloseAction, CloseAction]:
    """``(to the client, to the backend)`` when the proxy ends an open session for ``reason``.

    For :attr:`CloseReason.RATE_LIMIT`, ``side`` is the hop that passed its
    limit and ``limit`` names the limit (a tap.conf key); it gets 1008, the
    other hop what a protocol error on ``side`` would give it.
    """
    if reason is not CloseReason.RATE_LIMIT:
        return (
            CloseAction(RECONNECT, truncate_reason(reason.value)),
            CloseAction(RECONNECT, truncate_reason(_WHY_FOR_BACKEND[reason])),
        )
    named = limit or "rate limit"
    over = CloseAction(POLICY_VIOLATION, truncate_reason(f"rate limit: {named}"))
    if side is Side.CLIENT:
        return over, CloseAction(GOING_AWAY, truncate_reason(f"proxy: client over {named}"))
    return CloseAction(INTERNAL_ERROR, truncate_reason(f"backend over {named}")), over


def truncate_reason(reason: str, limit: int = MAX_REASON_BYTES) -> bytes:
    """``reason`` as UTF-8 of at most ``limit`` bytes, never splitting a character."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= limit:
        return encoded
    return encoded[:limit].decode("utf-8", "ignore").encode("utf-8")


def received_close_problem(
    code: Optional[int], reason: Optional[bytes]
) -> Optional[tuple[int, str]]:
    """Why a received Close frame is invalid, as ``(close code, reason)``; None when valid.

    A code outside :data:`SENDABLE_CODES` (reserved, never-on-the-wire or
    unregistered) is a protocol error (1002); a reason that is not UTF-8 is 1007.
    """
    if code is not None and code not in SENDABLE_CODES:
        return 1002, f"invalid close code {code}"
    if reason:
        try:
            reason.decode("utf-8")
        except UnicodeDecodeError:
            return 1007, "close reason is not valid UTF-8"
    return None


def close_for_other_hop(event: HopEvent) -> CloseAction:
    """The Close frame the hop opposite ``event.side`` receives."""
    if event.how is HopEnd.CLOSED:
        if event.code is None:
            return CloseAction(None)
        if event.code in SENDABLE_CODES:
            return CloseAction(event.code, truncate_reason(event.reason))
    if event.side is Side.CLIENT:
        code, who = GOING_AWAY, "client"
    else:
        code, who = INTERNAL_ERROR, "backend"
    if event.how is HopEnd.LOST:
        return CloseAction(code, truncate_reason(f"{who} went away"))
    detail = f": {event.reason}" if event.reason else ""
    return CloseAction(code, truncate_reason(f"{who} error{detail}"))
