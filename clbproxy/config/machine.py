"""The records of what belongs to one machine: its admin listener, access log, demo backends, fleet.

A fleet instance (:mod:`clbproxy.config.fleet`) keeps exactly these in its local
file and takes everything else from etcd; :mod:`clbproxy.config.model`
re-exports them beside the rest of the model.
"""

from __future__ import annotations

from typing import Optional

import attrs

from clbproxy.config import keys
from clbproxy.config.keys import setting

#: Access log formats.
ACCESS_LOG_FORMATS = ("plain", "json")


@attrs.frozen
class AccessLogConfig:
    """Where access log lines go (``"-"``: stdout) and in which format."""

    path: str = setting(doc='A file (appended to) or ``"-"`` for stdout.')
    format: str = setting(
        "plain",
        doc="``plain`` (combined-like) or ``json`` (JSON lines).",
        parse=keys.choice(ACCESS_LOG_FORMATS, "format"),
    )


@attrs.frozen
class AdminConfig:
    """The admin listener: status page, JSON API and Prometheus metrics."""

    bind: str = setting(
        "tcp:9090:interface=127.0.0.1",
        doc="A server endpoint, like a listener's ``bind``.",
        parse=keys.bind(),
    )
    metrics_path: str = setting("/metrics", doc="Where Prometheus scrapes.")
    allowed_hosts: tuple[str, ...] = setting(
        (),
        doc="Host names (no port) the admin site answers to, besides IP addresses and "
        "``localhost``: a name not listed could be an attacker's, rebound to this "
        "address (DNS rebinding).",
    )
    token_file: Optional[str] = setting(
        None,
        doc="A file holding a bearer token (read at start and on reload): the API and "
        "the metrics then need ``Authorization: Bearer TOKEN``.",
    )
    #: The token read from ``token_file`` (at load, so at start and on reload).
    token: Optional[str] = attrs.field(default=None, repr=False)


@attrs.frozen
class DemoBackendConfig:
    """An embedded demo application server, so the shipped tap.conf works alone."""

    name: str = setting(doc="Unique name of the demo backend.", parse=keys.name(), required=True)
    bind: str = setting(doc="A server endpoint.", parse=keys.bind(), required=True)


@attrs.frozen
class FleetListenerConfig:
    """``[fleet.listeners.NAME]``: what of the shared listener NAME belongs to this machine."""

    #: The listener's name in the shared document (the table's name).
    name: str
    bind: Optional[str] = setting(
        None,
        shown="(none)",
        doc="Where the listener listens on this machine (as a listener's ``bind``); "
        "the short form is ``[fleet.binds]``, and one of the two is needed for the "
        "listener to be served here.",
        parse=keys.bind(),
    )
    access_log: Optional[AccessLogConfig] = setting(
        None,
        shown="``[access_log]``",
        doc="The listener's own ``{ path = ..., format = ... }`` on this machine "
        "(a listener's ``access_log``).",
    )
    state_directory: Optional[str] = setting(
        None,
        shown="``clbproxy-state``",
        doc="The listener's ``tls.state_directory`` on this machine (where "
        "``self_signed`` keeps its files); used when the document's listener has a "
        "``tls`` table.",
        parse=keys.string(),
    )


@attrs.frozen
class FleetConfig:
    """``[fleet]``: this instance takes its routing configuration from etcd.

    The local file then holds only what belongs to one machine; see
    :mod:`clbproxy.config.fleet` for the split and the merge.
    """

    cluster: str = setting(
        doc="The cluster's name: its document is ``/clbproxy/<cluster>/config`` in etcd.",
        parse=keys.name(),
        required=True,
    )
    endpoints: tuple[str, ...] = setting(
        doc='etcd client URLs, ``["http://etcd-1:2379", ...]``: every member, so any '
        "one may be away.",
        required=True,
    )
    cache_dir: str = setting(
        doc="Where the last good document and the cookie secrets are kept (mode 0600), to "
        "start without etcd.  Relative to this file's directory.",
        parse=keys.file(),
        required=True,
    )
    instance: Optional[str] = setting(
        None,
        shown="the host name",
        doc="This instance's name, unique in the cluster (its presence key).",
        parse=keys.name(),
    )
    startup_timeout: float = setting(
        10.0,
        doc="Seconds a start waits for etcd before it serves from the cache.",
        parse=keys.duration_in(0, 300),
    )
    binds: tuple[tuple[str, str], ...] = setting(
        (),
        shown="(none)",
        doc="``[fleet.binds]``: listener name = bind, for the listeners of the shared "
        "document; a listener without one is not served by this instance.",
    )
    listeners: tuple[FleetListenerConfig, ...] = setting(
        (),
        shown="(none)",
        doc="``[fleet.listeners.NAME]`` tables (below): the bind, access log and TLS "
        "state directory of the shared listener NAME on this machine.",
    )
    username: Optional[str] = setting(
        None,
        doc="etcd user, when etcd has authentication on (``etcdctl auth enable``); "
        "needs ``password_file``.  It needs read and write access to the prefix "
        "``/clbproxy/<cluster>/``.  Expired tokens are renewed by themselves.",
        parse=keys.string(),
    )
    password_file: Optional[str] = setting(
        None,
        doc="A file whose first line is ``username``'s password (keep it mode 0600; "
        "the password never goes in tap.conf).  Read at start: a new password needs a restart.",
        parse=keys.file(),
    )
    ca_file: Optional[str] = setting(
        None,
        shown="the system's CAs",
        doc="PEM bundle of the CAs that sign the etcd members' certificates, for "
        "``https://`` endpoints.",
        parse=keys.file(),
    )
    cert_file: Optional[str] = setting(
        None,
        doc="PEM client certificate presented to etcd (``--client-cert-auth``), with "
        "``key_file``; for ``https://`` endpoints.",
        parse=keys.file(),
    )
    key_file: Optional[str] = setting(
        None,
        doc="The PEM private key of ``cert_file`` (unencrypted).",
        parse=keys.file(),
    )
