"""etcd authentication through the gateway: tokens obtained, sent, and renewed when refused.

The fake etcd answers as etcd 3.4 does (recorded with ``--auth-token simple``):
a call with an unknown token is HTTP 401 with ``{"code": 16, "error":
"etcdserver: invalid auth token"}``; a watch with one is HTTP 200 and a line
that is both ``created`` and ``canceled``, the stream left open.
"""

from __future__ import annotations

import json
import os

from treq.testing import StubTreq
from twisted.internet import task
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from clbproxy.config import ConfigError
from clbproxy.config.machine import FleetConfig
from clbproxy.fleet.access import Access, access_of, is_invalid_token
from clbproxy.fleet.gateway import Gateway
from clbproxy.fleet.messages import GatewayError

INVALID = {
    "error": "etcdserver: invalid auth token",
    "message": "etcdserver: invalid auth token",
    "code": 16,
}
HEADER = {"cluster_id": "1", "member_id": "2", "revision": "7", "raft_term": "2"}
CANCELED = {
    "result": {
        "header": HEADER,
        "watch_id": "-1",
        "created": True,
        "canceled": True,
        "cancel_reason": "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
    }
}


class FakeEtcd(Resource):
    """The gateway's authenticate, range and watch, with tokens that expire on demand."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.valid: set[str] = set()
        self.issued = 0
        self.seen_tokens: list[object] = []
        self.open_watches = []

    def expire(self) -> None:
        self.valid.clear()

    def render_POST(self, request):
        body = json.loads(request.content.read())
        token = request.getHeader("authorization")
        path = request.path.decode()
        if path == "/v3/auth/authenticate":
            if body != {"name": "clb", "password": "s3cret"}:
                request.setResponseCode(400)
                return json.dumps(
                    {
                        "error": "etcdserver: authentication failed, invalid user ID or password",
                        "code": 3,
                    }
                ).encode()
            self.issued += 1
            token = f"token.{self.issued}"
            self.valid.add(token)
            return json.dumps({"header": HEADER, "token": token}).encode()
        self.seen_tokens.append(token)
        if path == "/v3/watch":
            if token in self.valid:
                request.write(json.dumps({"result": {"header": HEADER, "created": True}}).encode())
                request.write(b"\n")
            else:
                request.write(json.dumps(CANCELED).encode() + b"\n")
            self.open_watches.append(request)
            return NOT_DONE_YET
        if token not in self.valid:
            request.setResponseCode(401)
            return json.dumps(INVALID).encode()
        return json.dumps({"header": HEADER}).encode()


class TokenTests(unittest.TestCase):
    def setUp(self):
        self.etcd = FakeEtcd()
        self.stub = StubTreq(self.etcd)
        self.gateway = Gateway(
            task.Clock(),
            ["http://etcd:2379"],
            client=self.stub,
            access=Access(username="clb", password="s3cret"),
        )

    def range(self):
        d = self.gateway.range(b"/clbproxy/prod/config")
        self.stub.flush()
        return self.successResultOf(d)

    def test_the_first_call_authenticates_and_sends_the_token(self):
        result = self.range()
        self.assertEqual(result.header.revision, 7)
        self.assertEqual(self.etcd.seen_tokens, ["token.1"])

    def test_a_refused_token_is_renewed_and_the_call_retried_once(self):
        self.range()
        self.etcd.expire()
        result = self.range()
        self.assertEqual(result.header.revision, 7)
        self.assertEqual(self.etcd.seen_tokens, ["token.1", "token.1", "token.2"])
        self.assertEqual(self.gateway.authentications, 2)

    def test_a_wrong_password_fails_the_call_with_etcds_reason(self):
        self.gateway.access = Access(username="clb", password="wrong")
        d = self.gateway.range(b"/clbproxy/prod/config")
        self.stub.flush()
        failure = self.failureResultOf(d, GatewayError)
        self.assertIn("invalid user ID or password", failure.getErrorMessage())

    def test_a_watch_refused_for_its_token_is_made_again_with_a_new_one(self):
        self.range()
        self.etcd.expire()
        seen = []
        watch = self.gateway.watch(b"a", b"b", 8, seen.append)
        self.stub.flush()
        self.assertEqual([(r.created, r.canceled) for r in seen], [(True, False)])
        self.assertEqual(self.etcd.seen_tokens[-2:], ["token.1", "token.2"])
        self.assertFalse(watch.ended.called)
        watch.cancel()
        self.stub.flush()

    def test_a_watch_refused_again_after_renewal_reaches_the_caller(self):
        self.range()
        self.etcd.expire()
        original = self.etcd.render_POST

        def refusing(request):
            result = original(request)
            self.etcd.expire()  # every token dies at once
            return result

        self.etcd.render_POST = refusing
        seen = []
        watch = self.gateway.watch(b"a", b"b", 8, seen.append)
        self.stub.flush()
        self.assertEqual([r.canceled for r in seen], [True])
        self.assertTrue(is_invalid_token(seen[0].cancel_reason))
        watch.cancel()
        self.stub.flush()


class AccessOfTests(unittest.TestCase):
    def test_the_password_is_the_first_line_of_its_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s3cret\nignored\n")
        fleet = FleetConfig(
            cluster="prod",
            endpoints=("http://etcd:2379",),
            cache_dir="c",
            username="clb",
            password_file=path,
        )
        access = access_of(fleet)
        self.assertEqual(access.authenticate_request(), {"name": "clb", "password": "s3cret"})
        self.assertNotIn("s3cret", repr(access))

    def test_an_unreadable_password_file_is_one_line_naming_the_key(self):
        path = os.path.abspath(self.mktemp())
        fleet = FleetConfig(
            cluster="prod",
            endpoints=("http://etcd:2379",),
            cache_dir="c",
            username="clb",
            password_file=path,
        )
        with self.assertRaises(ConfigError) as caught:
            access_of(fleet)
        self.assertEqual(len(caught.exception.problems), 1)
        self.assertIn(f"fleet.password_file: cannot read {path}", caught.exception.problems[0])
