"""etcd's v3 JSON gateway, as data: the requests clbproxy sends and the answers it reads.

The gateway is gRPC's JSON mapping: keys and values are base64, int64 fields
come as JSON strings, and fields at their default are left out (a PUT event has
no ``type``, a missing key has no ``kvs``, a header may lack ``revision``).
Everything here is sans-IO: the HTTP is :mod:`clbproxy.fleet.gateway` (treq)
and :mod:`clbproxy.fleet.blocking` (no reactor); the decoders never raise on a
missing field, and raise :class:`GatewayError` on an answer of the wrong shape.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

import attrs


class GatewayError(Exception):
    """etcd answered something unusable, or an error; the message is one line."""


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise GatewayError(f"etcd: not base64: {text[:40]!r}") from error


def _int(value: Any) -> int:
    """An int64 field (a string in JSON, absent when 0)."""
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise GatewayError(f"etcd: not an integer: {value!r}") from error


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


@attrs.frozen
class FleetKeys:
    """Where one cluster's data lives in etcd (all under ``/clbproxy/<cluster>/``)."""

    cluster: str

    @property
    def prefix(self) -> bytes:
        return f"/clbproxy/{self.cluster}/".encode()

    @property
    def config(self) -> bytes:
        return self.prefix + b"config"

    @property
    def cookie_secret(self) -> bytes:
        return self.prefix + b"cookie_secret"

    @property
    def cookie_secret_previous(self) -> bytes:
        return self.prefix + b"cookie_secret_previous"

    @property
    def instances(self) -> bytes:
        return self.prefix + b"instances/"

    def instance(self, name: str) -> bytes:
        return self.instances + name.encode("utf-8")

    @property
    def watched(self) -> tuple[bytes, bytes]:
        """The range an instance reads and watches: the document and the cookie secrets.

        ``config`` < ``cookie_secret`` < ``cookie_secret_previous`` < ``instances/``,
        so the presence keys of the other instances are outside it.
        """
        return self.config, self.cookie_secret_previous + b"\0"


@attrs.frozen
class Header:
    """A response header: the store's revision when the member answered (0: left out)."""

    revision: int = 0
    cluster_id: str = ""
    member_id: str = ""


@attrs.frozen
class KeyValue:
    """One key as etcd holds it, decoded; ``mod_revision`` is the put that wrote it."""

    key: bytes
    value: bytes = b""
    mod_revision: int = 0
    create_revision: int = 0
    version: int = 0
    lease: int = 0


@attrs.frozen
class Event:
    """One watch event: ``PUT`` (the gateway leaves the type out) or ``DELETE``."""

    type: str
    kv: KeyValue


@attrs.frozen
class RangeResult:
    header: Header
    kvs: tuple[KeyValue, ...] = ()


@attrs.frozen
class WatchResponse:
    """One line of the watch stream.

    ``error`` is set for the gateway's final ``{"error": ...}`` (e.g. the member
    lost its leader); otherwise ``created``, ``canceled`` (with
    ``compact_revision`` after a compaction) or ``events``; a response with none
    of them is a progress notification (its header says how far the member is).
    """

    header: Header = Header()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: tuple[Event, ...] = ()
    error: Optional[str] = None

    @property
    def progress(self) -> bool:
        return self.error is None and not (self.created or self.canceled or self.events)


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise GatewayError(f"etcd: {what} is not a JSON object")
    return value


def header(data: Any) -> Header:
    data = data if isinstance(data, dict) else {}
    return Header(
        revision=_int(data.get("revision")),
        cluster_id=str(data.get("cluster_id", "")),
        member_id=str(data.get("member_id", "")),
    )


def key_value(data: Any) -> KeyValue:
    data = _object(data, "a key-value")
    return KeyValue(
        key=unb64(data.get("key")),
        value=unb64(data.get("value")),
        mod_revision=_int(data.get("mod_revision")),
        create_revision=_int(data.get("create_revision")),
        version=_int(data.get("version")),
        lease=_int(data.get("lease")),
    )


def error_text(data: Any) -> Optional[str]:
    """The message of an answer that is an error (``{"error": ..}`` or ``{"code": ..}``)."""
    if not isinstance(data, dict):
        return None
    if "error" in data:
        error = data["error"]
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    if "code" in data and "message" in data and "header" not in data:
        return str(data["message"])
    return None


def range_result(data: Any) -> RangeResult:
    data = _object(data, "a range answer")
    problem = error_text(data)
    if problem is not None:
        raise GatewayError(f"etcd: {problem}")
    kvs = data.get("kvs") or []
    return RangeResult(header(data.get("header")), tuple(key_value(kv) for kv in kvs))


def watch_response(data: Any) -> WatchResponse:
    """One decoded line of the watch stream."""
    data = _object(data, "a watch line")
    problem = error_text(data)
    if problem is not None:
        return WatchResponse(error=problem)
    result = _object(data.get("result"), "a watch result")
    events = []
    for event in result.get("events") or []:
        event = _object(event, "a watch event")
        kind = event.get("type", "PUT")
        events.append(Event("DELETE" if kind == "DELETE" else "PUT", key_value(event.get("kv"))))
    return WatchResponse(
        header=header(result.get("header")),
        created=bool(result.get("created")),
        canceled=bool(result.get("canceled")),
        compact_revision=_int(result.get("compact_revision")),
        cancel_reason=str(result.get("cancel_reason", "")),
        events=tuple(events),
    )


# -- requests ----------------------------------------------------------------------------


def range_request(key: bytes, range_end: Optional[bytes] = None) -> dict:
    """A linearizable range (the default: the member confirms it is current)."""
    request = {"key": b64(key)}
    if range_end is not None:
        request["range_end"] = b64(range_end)
    return request


def put_request(key: bytes, value: bytes, lease: int = 0) -> dict:
    request = {"key": b64(key), "value": b64(value)}
    if lease:
        request["lease"] = str(lease)
    return request


def put_if_missing(key: bytes, value: bytes) -> dict:
    """A transaction that writes ``key`` only if it does not exist (create_revision 0)."""
    return {
        "compare": [
            {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        ],
        "success": [{"request_put": put_request(key, value)}],
        "failure": [{"request_range": range_request(key)}],
    }


def put_if_unchanged(key: bytes, value: bytes, mod_revision: int) -> dict:
    """A compare-and-swap: write ``key`` only if it was last modified at ``mod_revision``
    (0: only if it does not exist)."""
    return {
        "compare": [
            {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}
        ],
        "success": [{"request_put": put_request(key, value)}],
    }


def txn_succeeded(data: Any) -> tuple[bool, int]:
    """Whether a transaction's comparison held, and the revision it ran at."""
    data = _object(data, "a transaction answer")
    problem = error_text(data)
    if problem is not None:
        raise GatewayError(f"etcd: {problem}")
    return bool(data.get("succeeded")), header(data.get("header")).revision


def watch_request(key: bytes, range_end: bytes, start_revision: int) -> dict:
    return {
        "create_request": {
            "key": b64(key),
            "range_end": b64(range_end),
            "start_revision": str(start_revision),
            "progress_notify": True,
        }
    }


def lease_id(data: Any) -> int:
    """The ID of a granted lease."""
    data = _object(data, "a lease answer")
    problem = error_text(data) or (data.get("error") if "error" in data else None)
    if problem is not None:
        raise GatewayError(f"etcd: {problem}")
    lease = _int(data.get("ID"))
    if not lease:
        raise GatewayError("etcd: the lease answer has no ID")
    return lease


def keepalive_ttl(data: Any) -> int:
    """The TTL a lease keep-alive answered (0: the lease is gone)."""
    data = _object(data, "a keep-alive answer")
    problem = error_text(data)
    if problem is not None:
        raise GatewayError(f"etcd: {problem}")
    result = data.get("result", data)
    return _int(result.get("TTL") if isinstance(result, dict) else None)
