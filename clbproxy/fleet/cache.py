"""What an instance keeps of etcd on disk, to start and serve while etcd is away.

A :class:`Snapshot` is the fleet's shared state at one revision: the document
and the cookie secrets.  After every document it applies, an instance writes
its snapshot to ``<cache_dir>/<cluster>.json``: mode 0600 (it holds the cookie
secrets), written to a temporary file in the same directory and renamed over
the old one, so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Optional

import attrs

from clbproxy.fleet.messages import FleetKeys, KeyValue


@attrs.frozen
class Snapshot:
    """The document (None: the key does not exist), the cookie secrets, and the revision
    of the newest of them (the put that made this state)."""

    document: Optional[str]
    revision: int
    cookie_secret: Optional[str] = None
    cookie_secret_previous: Optional[str] = None

    @property
    def digest(self) -> str:
        """A hash of the content (not the revision): equal content, equal digest."""
        parts = [self.document, self.cookie_secret, self.cookie_secret_previous]
        text = json.dumps(parts)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def source(self, keys: FleetKeys) -> str:
        """How problems of the document name it: ``etcd:/clbproxy/prod/config@42``."""
        return f"etcd:{keys.config.decode()}@{self.revision}"

    def updated(self, keys: FleetKeys, kv: KeyValue, deleted: bool = False) -> Snapshot:
        """This snapshot after one event on one of the watched keys.

        A deleted key empties nothing: the deletion is ignored (the document and
        the secrets in use stay), as an accidental ``del`` must not take a fleet down.
        """
        if deleted:
            return self
        value = kv.value.decode("utf-8", errors="replace")
        revision = max(self.revision, kv.mod_revision)
        if kv.key == keys.config:
            return attrs.evolve(self, document=value, revision=revision)
        if kv.key == keys.cookie_secret:
            return attrs.evolve(self, cookie_secret=value, revision=revision)
        if kv.key == keys.cookie_secret_previous:
            return attrs.evolve(self, cookie_secret_previous=value, revision=revision)
        return self


def snapshot_of(keys: FleetKeys, kvs) -> Snapshot:
    """The snapshot a range of the watched keys describes."""
    snapshot = Snapshot(document=None, revision=0)
    for kv in kvs:
        snapshot = snapshot.updated(keys, kv)
    return snapshot


def cache_path(cache_dir: str, cluster: str, suffix: str = "") -> str:
    return os.path.join(cache_dir, f"{cluster}{suffix}.json")


def write_snapshot(path: str, snapshot: Snapshot) -> None:
    """Write ``snapshot`` to ``path`` atomically, mode 0600; raises ``OSError``."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    data = json.dumps(attrs.asdict(snapshot), indent=1).encode("utf-8")
    fd, temporary = tempfile.mkstemp(prefix=".clbproxy-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read_snapshot(path: str) -> Optional[Snapshot]:
    """The snapshot at ``path``, or None if there is none; raises ``ValueError`` if unreadable."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror}") from None
    if not isinstance(data, dict) or not isinstance(data.get("revision"), int):
        raise ValueError(f"{path}: not a clbproxy fleet cache")
    try:
        return Snapshot(**data)
    except TypeError:
        raise ValueError(f"{path}: not a clbproxy fleet cache") from None
