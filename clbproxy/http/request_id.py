"""Request IDs: one per HTTP request and WebSocket session, to follow it through the proxy.

Sans-IO: the caller gives the values of the request's ID header and who sent
them, and gets the ID back; it then sends that ID to the backend, echoes it to
the client (every response, the ``101``, the proxy's own error answers) and puts
it in the access log and in every log line about the request or session.

An ID the client sent is kept only when it can be believed and is well formed:
believed when it comes from a peer in ``trusted_proxies`` (or from any peer with
``request_id_from = "any"``), as an ``X-Forwarded-For`` chain is; well formed
when it is one header value of 1 to 200 characters among letters, digits and
``-_.:+/=`` (:data:`WELL_FORMED`: hex, UUIDs, base64, AWS and Heroku IDs
pass; spaces, commas, quotes and control characters do not, so an ID is one
token in every log format and cannot be split by a header list).  Any other
request gets a new ID: 128 random bits from the operating system's generator,
as 32 lower-case hex characters (:func:`new_request_id`).
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Iterator, List, Optional, Sequence

import attrs

from clbproxy.http.field_headers import field_key
from clbproxy.http.forwarded import TrustedProxies

#: The longest ID kept from a request.
MAX_LENGTH = 200

#: What an ID received from a believed peer must be to be kept.
WELL_FORMED = re.compile(rb"[A-Za-z0-9._:+/=-]{1,%d}\Z" % MAX_LENGTH)

#: ``request_id_from`` values: IDs believed from ``trusted_proxies`` only, or from anyone.
SOURCES = ("trusted", "any")


#: IDs made from one ``os.urandom`` read (4 KiB of random bytes).
IDS_PER_READ = 256


def _read_ids() -> List[str]:
    """The next :data:`IDS_PER_READ` IDs: one ``os.urandom`` read, cut in 32-digit hex groups."""
    return os.urandom(16 * IDS_PER_READ).hex(" ", 16).split(" ")


def _id_stream() -> Iterator[str]:
    """IDs without end, read :data:`IDS_PER_READ` at a time (see :func:`new_request_id`).

    ``chain`` and ``iter(callable, sentinel)`` are C: taking an ID runs no
    Python code; :func:`_read_ids` runs once per read, when the last one is used up.
    """
    return itertools.chain.from_iterable(iter(_read_ids, None))


_ids = _id_stream()


def _forget() -> None:
    """In a forked child: drop the IDs read (the parent hands them out), read afresh."""
    global _ids
    _ids = _id_stream()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget)


def new_request_id() -> str:
    """A new ID: 128 bits from ``os.urandom``, as 32 lower-case hex characters.

    The next of a few kilobytes of IDs read at once: one ``os.urandom`` call
    (a system call) per :data:`IDS_PER_READ` IDs, not one per ID.  Every ID
    is still 128 bits from the operating system's CSPRNG, used once, so IDs
    are exactly as unpredictable and as unlikely to collide as
    ``os.urandom(16).hex()``'s (an ID seen in a response says nothing of the
    next, unlike a generator seeded once and stepped, such as ``random``'s
    Mersenne Twister, whose state 624 outputs reveal).  What changes is where
    the bits wait: in this process's memory, which holds secrets as sensitive
    (TLS keys) anyway.  Workers are new processes (``spawnProcess``), each
    reading its own; a process forked some other way drops the IDs it
    inherited (``os.register_at_fork``), so no two processes hand out the same
    bits.  Not for threads: IDs are made on the reactor's thread only.

    About 0.14 µs a call, five bytecodes (the slicing of one hex buffer per
    call it replaced: 0.18 µs, 27 bytecodes; ``os.urandom(16).hex()`` 0.4 µs,
    ``secrets.token_hex`` 0.45 µs, ``uuid4().hex`` 1.7 µs).
    """
    return next(_ids)


def well_formed(value: bytes) -> bool:
    """Whether a received ID may be kept (see :data:`WELL_FORMED`)."""
    return WELL_FORMED.match(value) is not None


@attrs.frozen
class RequestIds:
    """A listener's request-ID policy: the header's name and whose IDs are believed.

    ``name`` is the header as configured (``request_id_header``), ``""`` when
    IDs are off; ``source`` is ``request_id_from``.
    """

    name: str = "X-Request-Id"
    source: str = "trusted"
    trusted: TrustedProxies = TrustedProxies()
    #: The header's name, lower-case, as bytes (how requests are looked up).
    key: bytes = attrs.field(init=False)
    #: The header's name as bytes, as it is written.
    raw_name: bytes = attrs.field(init=False)
    #: The header's key in :class:`~clbproxy.http.field_headers.FieldHeaders`
    #: (``get_field``/``set_field``), worked out once.
    field: bytes = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", self.name.lower().encode("latin-1"))
        object.__setattr__(self, "raw_name", self.name.encode("latin-1"))
        object.__setattr__(self, "field", field_key(self.raw_name) if self.name else b"")

    @property
    def enabled(self) -> bool:
        return bool(self.name)

    def choose(self, received: Optional[Sequence[bytes]], peer: str) -> Optional[str]:
        """The ID of a request whose ID header values are ``received``, from ``peer``.

        The received ID when there is exactly one, well formed, from a believed
        peer; else a new one.  ``None`` when IDs are off.
        """
        if not self.name:
            return None
        if received and len(received) == 1 and self.believes(peer):
            value = received[0]
            if WELL_FORMED.match(value) is not None:
                return value.decode("ascii")
        return new_request_id()

    def believes(self, peer: str) -> bool:
        """Whether an ID sent by ``peer`` (the direct peer's address) may be kept."""
        return self.source == "any" or peer in self.trusted


#: IDs off: no header, nothing logged.
OFF = RequestIds(name="")
