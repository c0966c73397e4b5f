"""``clbproxy fleet push`` and ``clbproxy fleet status``: a fleet's document and instances.

``push`` validates a shared document as ``clbproxy check`` validates a tap.conf
(without the certificate files, which live on the instances' machines), then
writes it with a compare-and-swap on the revision it read: a concurrent edit
refuses the push (exit 1).  ``status`` lists the live instances (their
presence keys) with the revision each applied or rejected, and exits 1 when a
live one has not applied the newest document within ``--wait`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Optional

from clbproxy.config import ConfigError, FleetConfig
from clbproxy.config.fleet import LocalFile, merge
from clbproxy.config.reader import Reader, parse_toml, read_file
from clbproxy.fleet import messages
from clbproxy.fleet.access import Access, read_password
from clbproxy.fleet.blocking import BlockingGateway
from clbproxy.fleet.messages import FleetKeys, GatewayError, prefix_end


def fleet_commands(commands) -> None:
    """Add ``fleet push`` and ``fleet status`` to the ``clbproxy`` command's subparsers."""
    fleet = commands.add_parser(
        "fleet",
        help="push a fleet's document to etcd, show its instances",
        description="Tools for clbproxy instances that take their configuration from etcd.",
    )
    tools = fleet.add_subparsers(dest="fleet_command", metavar="TOOL")
    fleet.set_defaults(run=lambda options: (fleet.print_help(sys.stderr), 2)[1])

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--etcd",
            metavar="URL",
            action="append",
            required=True,
            help="an etcd client URL (repeat it for each member)",
        )
        parser.add_argument("--cluster", metavar="NAME", required=True, help="the fleet's name")
        parser.add_argument("--user", metavar="NAME", help="etcd user (etcd with auth on)")
        parser.add_argument(
            "--password-file", metavar="FILE", help="a file whose first line is the password"
        )
        parser.add_argument("--ca-file", metavar="FILE", help="CA bundle for https:// etcd")
        parser.add_argument("--cert-file", metavar="FILE", help="client certificate for etcd")
        parser.add_argument("--key-file", metavar="FILE", help="its private key")

    push = tools.add_parser(
        "push",
        help="validate a document and write it to etcd",
        description="Validate FILE as the fleet's shared document and write it to etcd "
        "with a compare-and-swap on the revision read.",
    )
    common(push)
    push.add_argument("file", metavar="FILE")
    push.add_argument(
        "--if-revision",
        type=int,
        metavar="N",
        help="write only if the document was last changed at revision N (0: if it does not exist)",
    )
    push.set_defaults(run=_push)
    status = tools.add_parser(
        "status",
        help="list the instances and what they applied",
        description="List the fleet's live instances; exit 1 when one has not applied the "
        "newest document within --wait seconds.",
    )
    common(status)
    status.add_argument("--wait", type=float, default=0.0, metavar="SECONDS")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=_status)


def check_document(path: str, cluster: str) -> str:
    """The document at ``path`` once it passed validation; raises ``ConfigError``."""
    reader = Reader(path, os.path.dirname(os.path.abspath(path)))
    data = read_file(reader, path)
    document = parse_toml(reader, data) if data is not None else None
    if document is None:
        raise ConfigError(reader.problems)
    names = (
        [
            item.get("name")
            for item in document.get("listener", [])
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        ]
        if isinstance(document.get("listener"), list)
        else []
    )
    local = LocalFile(
        path=path,
        fleet=FleetConfig(
            cluster=cluster,
            endpoints=(),
            cache_dir=".",
            binds=tuple((name, "tcp:0") for name in names),
        ),
        table={},
        listeners={name: {"bind": "tcp:0"} for name in names},
    )
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    merge(local, text, path)
    return text


def _push(options: argparse.Namespace) -> int:
    keys = FleetKeys(options.cluster)
    try:
        text = check_document(options.file, options.cluster)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 1
    client = _client(options)
    if client is None:
        return 1
    key = keys.config.decode()
    try:
        if options.if_revision is not None:
            expected = options.if_revision
        else:
            current = client.range(keys.config)
            expected = current.kvs[0].mod_revision if current.kvs else 0
        written, revision = client.txn(
            messages.put_if_unchanged(keys.config, text.encode("utf-8"), expected)
        )
    except GatewayError as error:
        print(f"clbproxy: fleet push: etcd: {error}", file=sys.stderr)
        return 1
    if not written:
        print(
            f"clbproxy: fleet push: etcd:{key} changed since revision {expected} "
            "(a concurrent edit); nothing written: read it again and push again",
            file=sys.stderr,
        )
        return 1
    print(f"{options.file}: pushed to etcd:{key}@{revision}")
    return 0


def _client(options: argparse.Namespace) -> Optional[BlockingGateway]:
    """The etcd client the options describe, or None after printing why not."""
    try:
        if (options.user is None) != (options.password_file is None):
            raise ConfigError(["--user and --password-file go together"])
        if (options.cert_file is None) != (options.key_file is None):
            raise ConfigError(["--cert-file and --key-file go together"])
        password = None
        if options.password_file is not None:
            password = read_password(options.password_file, "--password-file")
        access = Access(
            username=options.user,
            password=password,
            ca_file=options.ca_file,
            cert_file=options.cert_file,
            key_file=options.key_file,
        )
        return BlockingGateway(options.etcd, access=access)
    except ConfigError as error:
        print(f"clbproxy: fleet: {error.problems[0]}", file=sys.stderr)
        return None


def read_status(client: BlockingGateway, keys: FleetKeys) -> tuple[int, list[dict]]:
    """The newest document revision and each live instance's presence value."""
    newest = client.range(keys.config)
    revision = newest.kvs[0].mod_revision if newest.kvs else 0
    found = client.range(keys.instances, prefix_end(keys.instances))
    instances = []
    for kv in found.kvs:
        try:
            value = json.loads(kv.value)
        except ValueError:
            value = {}
        if not isinstance(value, dict):
            value = {}
        value.setdefault("instance", kv.key[len(keys.instances) :].decode("utf-8", "replace"))
        instances.append(value)
    return revision, instances


def instance_state(item: dict, revision: int) -> str:
    """``current`` (applied the newest document), ``rejected`` (refused it) or ``behind``."""
    if item.get("applied_revision") == revision:
        return "current"
    if revision and item.get("rejected_revision") == revision:
        return "rejected"
    return "behind"


def _status(
    options: argparse.Namespace,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    keys = FleetKeys(options.cluster)
    client = _client(options)
    if client is None:
        return 1
    deadline = clock() + options.wait
    while True:
        try:
            revision, instances = read_status(client, keys)
        except GatewayError as error:
            print(f"clbproxy: fleet status: etcd: {error}", file=sys.stderr)
            return 1
        states = [instance_state(item, revision) for item in instances]
        # A rejection is final for that revision: only "behind" is worth waiting for.
        if "behind" not in states or clock() >= deadline:
            break
        sleep(0.2)
    if options.json:
        print(json.dumps({"revision": revision, "instances": instances}, indent=1))
    else:
        print(f"etcd:{keys.config.decode()}@{revision}: {len(instances)} instance(s)")
        for item in instances:
            print(status_line(item, revision))
    failed = False
    for state in ("rejected", "behind"):
        names = [str(i.get("instance")) for i, s in zip(instances, states) if s == state]
        if names:
            failed = True
            print(f"{state} at revision {revision}: {', '.join(names)}", file=sys.stderr)
    return 1 if failed else 0


def status_line(item: dict, revision: int) -> str:
    """One instance in ``fleet status``: its state first, then what it applied and how."""
    applied = item.get("applied_revision")
    state = instance_state(item, revision)
    how = (
        f"source {item.get('source')}, {'connected' if item.get('connected') else 'not connected'}"
    )
    name = item.get("instance")
    if state == "rejected":
        return (
            f"  {name}: rejected at {revision}: {item.get('rejected_reason')} "
            f"(applied {applied} serves), {how}"
        )
    line = f"  {name}: applied {applied} ({state}), {how}"
    rejected: Optional[int] = item.get("rejected_revision")
    if rejected:
        line += f"; rejected {rejected} before: {item.get('rejected_reason')}"
    return line
