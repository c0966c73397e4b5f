"""The descriptor budget: how many client connections a process's ``RLIMIT_NOFILE`` can hold.

Every relayed client connection may hold two descriptors at once (the client's
socket and the backend's), so a process whose soft limit is ``L`` descriptors
can hold about ``L / 2`` connections, less what the process needs besides:
stdin/stdout/stderr, the reactor's poller and waker, the listening sockets
(one per listener, and the admin listener), log and access log files, a
worker's log and control channels, Twisted's reserved EMFILE descriptor,
connections to the admin API, health checks in flight and idle keep-alive
connections in the backend HTTP pools (``http_pool_max_idle`` per backend).

The reserve for those is ``max(32, L // 8)``: 32 covers a small configuration
on a low limit (a handful of listeners, files and backends: about 20
descriptors, with room for checks in flight), and an eighth grows with the
limit, as the number of listeners, backends and pooled connections a
deployment uses does (1024 keeps 128, 65536 keeps 8192).  The budget is then
``(L - reserve) // 2`` connections (1024 -> 448, 4096 -> 1792, 65536 ->
28672), and never less than one.

This is HAProxy's reasoning (it derives ``maxconn`` from the descriptor limit
and pauses its listeners at "process FD limit"): accepting pauses at the budget
and new clients wait in the kernel's listen backlog, instead of being accepted
and cut when ``accept()`` fails with EMFILE.  Twisted's EMFILE recovery (close
the excess connection) stays as the last resort for descriptors the reserve
did not foresee.
"""

from __future__ import annotations

from typing import Optional

MIN_RESERVE = 32
DESCRIPTORS_PER_CONNECTION = 2


def process_descriptor_limit() -> int:
    """This process's soft ``RLIMIT_NOFILE``; 0 when it is unlimited or unknown."""
    try:
        import resource
    except ImportError:  # not a POSIX system: no limit we can read
        return 0
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 0
    return soft


def descriptor_reserve(limit: int) -> int:
    """Descriptors kept out of the budget for what is not a client connection."""
    return max(MIN_RESERVE, limit // 8)


def connection_budget(limit: int) -> int:
    """Client connections ``limit`` descriptors can hold (0: no limit is known)."""
    if limit <= 0:
        return 0
    return max(1, (limit - descriptor_reserve(limit)) // DESCRIPTORS_PER_CONNECTION)


def effective_limit(max_connections: int, budget: int) -> int:
    """The connection limit in force: the smaller of the two that are set (0: neither).

    Read twice per connection (the gate's count against it): no list made.
    """
    if max_connections <= 0:
        return budget if budget > 0 else 0
    if budget <= 0:
        return max_connections
    return max_connections if max_connections < budget else budget


def budget_warning(path: str, max_connections: int, limit: int) -> Optional[str]:
    """The warning for a ``max_connections`` the descriptor limit cannot hold, or None."""
    budget = connection_budget(limit)
    if not max_connections or not budget or max_connections <= budget:
        return None
    return (
        f"{path}: max_connections = {max_connections} is more than the descriptor budget "
        f"of {budget} connections per process (RLIMIT_NOFILE {limit}, "
        f"{descriptor_reserve(limit)} reserved, {DESCRIPTORS_PER_CONNECTION} per connection): "
        f"accepting pauses at {budget}; raise the limit (ulimit -n) to allow more"
    )
