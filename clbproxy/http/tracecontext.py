"""W3C Trace Context (level 1): read a request's ``traceparent``, and replace a broken one.

Sans-IO: :func:`trace_context` takes the request's ``traceparent`` values and
the listener's ``trace`` setting and says what to log and what the backend
gets.  With ``trace = false`` the headers pass byte for byte, whatever they
hold; the trace and parent IDs of a valid ``traceparent`` are logged.  With
``trace = true`` a missing or invalid ``traceparent`` is replaced by a new one
(version ``00``, random trace and parent IDs, sampled flag off: the proxy
records no trace itself) and the ``tracestate`` that came with it is dropped,
since a ``tracestate`` without a valid ``traceparent`` MUST be discarded.  A
valid ``traceparent`` passes unchanged either way: the proxy is a pass-through
participant, and the trace goes on from the client's span.

Parsing follows the specification's rules (its "traceparent Header Field
Values" and "Versioning of traceparent"):

- the value, without surrounding spaces and tabs, is ``version-trace_id-parent_id-flags``
  in lower-case hex (``HEXDIGLC``); upper case is invalid;
- version ``ff`` is invalid; version ``00`` is exactly 55 characters;
- a higher version is read as ``00`` is: at least 55 characters, and the
  flags are followed by the end of the value or by ``-`` (what follows is
  not read);
- an all-zero trace ID or parent ID is invalid;
- more than one ``traceparent`` header is invalid (the specification's test
  suite expects a new trace for it).
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence, Union

import attrs

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_HEX = "[0-9a-f]"
_TRACEPARENT = re.compile(
    rf"({_HEX}{{2}})-({_HEX}{{32}})-({_HEX}{{16}})-({_HEX}{{2}})(-.*)?\Z",
    re.DOTALL,
)
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


@attrs.frozen
class TraceParent:
    """The fields of a valid ``traceparent``."""

    version: str
    trace_id: str
    parent_id: str
    flags: str


def parse_traceparent(value: Union[bytes, str]) -> Optional[TraceParent]:
    """The fields of one ``traceparent`` value, or ``None`` when it is invalid."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    match = _TRACEPARENT.match(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    return TraceParent(version, trace_id, parent_id, flags)


def new_traceparent() -> TraceParent:
    """A new trace: version 00, random trace and parent IDs, not sampled."""
    trace_id, parent_id = _ZERO_TRACE, _ZERO_PARENT
    while trace_id == _ZERO_TRACE:
        trace_id = os.urandom(16).hex()
    while parent_id == _ZERO_PARENT:
        parent_id = os.urandom(8).hex()
    return TraceParent("00", trace_id, parent_id, "00")


def format_traceparent(parent: TraceParent) -> str:
    return f"{parent.version}-{parent.trace_id}-{parent.parent_id}-{parent.flags}"


@attrs.frozen
class TraceContext:
    """What the proxy does with one request's trace headers, and what it logs.

    ``trace_id`` and ``parent_id`` are those the backend receives (``None``:
    no valid ``traceparent``).  ``replaced`` is the ``traceparent`` the proxy
    made: the client's ``traceparent`` and ``tracestate`` are not forwarded, this
    one is.
    """

    trace_id: Optional[str] = None
    parent_id: Optional[str] = None
    replaced: Optional[str] = None


#: No valid traceparent, and none made.
NO_TRACE = TraceContext()


def trace_context(
    traceparents: Optional[Sequence[Union[bytes, str]]], generate: bool
) -> TraceContext:
    """The trace context of a request with these ``traceparent`` values.

    ``generate`` is the listener's ``trace``: a missing or invalid
    ``traceparent`` is then replaced.
    """
    parent = None
    if traceparents and len(traceparents) == 1:
        parent = parse_traceparent(traceparents[0])
    if parent is not None:
        return TraceContext(parent.trace_id, parent.parent_id)
    if not generate:
        return NO_TRACE
    made = new_traceparent()
    return TraceContext(made.trace_id, made.parent_id, format_traceparent(made))
