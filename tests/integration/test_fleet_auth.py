"""Fleet mode against an etcd with authentication on: tokens that expire and a restarted member.

One etcd member started with ``--auth-token simple --auth-token-ttl 2``: its
tokens die 2 s after their last use (a restarted member may replay old tokens
from its log, so a restart alone does not reliably kill them); the instance
must renew its token without dropping its configuration.  The watch's own
renewal (a ``created`` + ``canceled`` line) is tested on the fake gateway in
``tests.unit.fleet.test_access``.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess

import trustme
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from clbproxy.fleet.access import Access
from clbproxy.fleet.gateway import Gateway
from tests.integration.test_fleet import clbproxy_command
from tests.support.fleet import CLUSTER, Fleet

PASSWORD = "fleet-pass"


def etcdctl(fleet: Fleet, *args: str) -> None:
    subprocess.run(
        ["etcdctl", "--endpoints", fleet.etcd.endpoints[0], *args],
        check=True,
        capture_output=True,
        timeout=10,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


def enable_auth(fleet: Fleet) -> None:
    """A root user, and a user ``clb`` that may read and write ``/clbproxy/`` only."""
    with open(os.path.join(fleet.directory, "etcd.pass"), "w") as f:
        f.write(PASSWORD + "\n")
    etcdctl(fleet, "user", "add", "root:root-pass")
    etcdctl(fleet, "user", "add", f"clb:{PASSWORD}")
    etcdctl(fleet, "role", "add", "fleet")
    etcdctl(fleet, "role", "grant-permission", "fleet", "--prefix=true", "readwrite", "/clbproxy/")
    etcdctl(fleet, "user", "grant-role", "clb", "fleet")
    etcdctl(fleet, "auth", "enable")
    fleet.gateway.access = Access(username="clb", password=PASSWORD)


class FleetAuthTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
            raise unittest.SkipTest("etcd is not installed (scripts/test installs etcd-server)")

    @defer.inlineCallbacks
    def test_expired_tokens_and_a_restarted_member_are_renewed_without_dropping_the_config(self):
        fleet = Fleet(
            self,
            instances=1,
            members=1,
            etcd_flags={"auth_token": "simple", "auth_token_ttl": "2"},
            fleet_extra='username = "clb"\npassword_file = "etcd.pass"',
            prepare=enable_auth,
        )
        yield fleet.start()
        [instance] = fleet.instances
        # The watch reconnects to a restarted member (which may or may not have
        # replayed the old token from its log).
        member = fleet.etcd.members[0]
        fleet.etcd.stop(member)
        fleet.etcd.start(member)
        fleet.etcd.wait_healthy()
        _, body = yield fleet.get(instance)
        self.assertEqual(body, "v0")
        yield task.deferLater(reactor, 2.5, lambda: None)  # and the pusher's token expired
        fleet.gateway.token = "stale.1"
        revision = yield fleet.push("v1")
        yield fleet.wait_answer(instance, "v1", timeout=10)
        status = yield fleet.wait_status(instance, lambda f: f["connected"])
        self.assertEqual(status["applied_revision"], revision)
        # Presence keeps its lease alive every 5 s: by then its token has expired.
        for _ in range(80):
            if "etcd refused the auth token; authenticating again" in instance.log():
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertIn("etcd refused the auth token; authenticating again", instance.log())
        status = yield fleet.wait_status(instance, lambda f: f["connected"])
        self.assertEqual(status["applied_revision"], revision)
        self.assertNotIn("rejected", instance.log())

        etcd = ["--etcd", fleet.etcd.endpoints[0], "--cluster", CLUSTER]
        credentials = [
            "--user",
            "clb",
            "--password-file",
            os.path.join(fleet.directory, "etcd.pass"),
        ]
        shown = clbproxy_command("fleet", "status", *etcd, *credentials, "--wait", "5")
        self.assertEqual(shown.returncode, 0, shown.stdout + shown.stderr)
        self.assertIn("node-1: applied", shown.stdout)
        refused = clbproxy_command("fleet", "status", *etcd)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("user name is empty", refused.stderr)


class FleetTLSTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        if shutil.which("etcd") is None:
            raise unittest.SkipTest("etcd is not installed (scripts/test installs etcd-server)")

    @defer.inlineCallbacks
    def test_an_instance_follows_an_https_etcd_that_wants_a_client_certificate(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        authority = trustme.CA()
        server = authority.issue_cert("127.0.0.1")
        client = authority.issue_cert("clbproxy-node")
        files = {
            "ca.pem": authority.cert_pem,
            "etcd.pem": server.cert_chain_pems[0],
            "etcd.key": server.private_key_pem,
            "client.pem": client.cert_chain_pems[0],
            "client.key": client.private_key_pem,
        }
        for name, blob in files.items():
            blob.write_to_path(os.path.join(directory, name))
        context = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
        context.load_cert_chain(
            os.path.join(directory, "client.pem"), os.path.join(directory, "client.key")
        )
        access = Access(
            ca_file=os.path.join(directory, "ca.pem"),
            cert_file=os.path.join(directory, "client.pem"),
            key_file=os.path.join(directory, "client.key"),
        )

        def tls_gateway(fleet: Fleet) -> None:
            fleet.gateway = Gateway(reactor, fleet.etcd.endpoints, access=access)
            self.addCleanup(fleet.gateway.close)

        fleet = Fleet(
            self,
            instances=1,
            members=1,
            etcd_flags={
                "context": context,
                "cert_file": os.path.join(directory, "etcd.pem"),
                "key_file": os.path.join(directory, "etcd.key"),
                "trusted_ca_file": os.path.join(directory, "ca.pem"),
                "client_cert_auth": "true",
            },
            fleet_extra=(
                f'ca_file = "{directory}/ca.pem"\ncert_file = "{directory}/client.pem"\n'
                f'key_file = "{directory}/client.key"'
            ),
            prepare=tls_gateway,
        )
        yield fleet.start()
        [instance] = fleet.instances
        self.assertTrue(fleet.etcd.endpoints[0].startswith("https://"))
        revision = yield fleet.push("over tls")
        yield fleet.wait_answer(instance, "over tls", timeout=5)
        yield fleet.wait_status(instance, lambda f: f["applied_revision"] == revision)

        etcd = ["--etcd", fleet.etcd.endpoints[0], "--cluster", CLUSTER]
        tls = ["--ca-file", access.ca_file]
        refused = clbproxy_command("fleet", "status", *etcd, *tls)
        self.assertEqual(refused.returncode, 1)
        self.assertTrue(refused.stderr.startswith("clbproxy: fleet status: etcd: "), refused.stderr)
        self.assertEqual(len(refused.stderr.splitlines()), 1, refused.stderr)
        shown = clbproxy_command(
            "fleet",
            "status",
            *etcd,
            *tls,
            "--cert-file",
            access.cert_file,
            "--key-file",
            access.key_file,
        )
        self.assertEqual(shown.returncode, 0, shown.stdout + shown.stderr)
