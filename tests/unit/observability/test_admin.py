"""Tests for :mod:`clbproxy.observability.admin`, in memory: who the admin site answers.

DNS rebinding lets an attacker's page reach the admin listener as if it were
same-origin, but the browser still sends the attacker's name as ``Host``; so only
IP literals, localhost names and ``[admin] allowed_hosts`` are answered.  No answer
may be framed, and with ``token_file`` the API and metrics need the bearer token.
"""

from __future__ import annotations

import io
import json
from typing import Optional

from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from clbproxy.config import (
    AdminConfig,
    BackendConfig,
    Config,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
)
from clbproxy.observability.admin import AdminResource, host_allowed
from clbproxy.observability.service import Observability
from clbproxy.upstream.balancer import TargetGroup

BACKEND = "127.0.0.1:8181"

#: Every kind of admin path: the page, the API (read and write), the metrics, a 404.
PATHS = (
    (b"GET", b"/"),
    (b"GET", b"/api/status"),
    (b"POST", b"/api/backends/pool/127.0.0.1:8181/drain"),
    (b"GET", b"/metrics"),
    (b"GET", b"/nowhere"),
)

#: Host values a rebinding page (or a confused client) may send; none is answered.
REFUSED_HOSTS = (
    b"evil.example",
    b"evil.example:9090",
    b"EVIL.example.",
    b"127.0.0.1.evil.example",
    b"localhost.evil.example",
    b"evillocalhost",
    b"localhost.example",
    b"127.1",
    b"2130706433",
    b"0x7f.0.0.1",
    b"::1",
    b"[::1",
    b"[evil.example]",
    b"127.0.0.1:abc",
    b"127.0.0.1:",
    b"127.0.0.1:123456",
    b"127.0.0.1 evil.example",
    b"evil.example@127.0.0.1",
    b"127.0.0.1/evil",
    b"a..localhost",
    b"-.localhost",
    b"",
    b"\xff.localhost",
)

ANSWERED_HOSTS = (
    b"127.0.0.1",
    b"127.0.0.1:9090",
    b"10.1.2.3:80",
    b"[::1]",
    b"[::1]:9090",
    b"[2001:db8::1]:443",
    b"[::ffff:127.0.0.1]",
    b"localhost",
    b"localhost:9090",
    b"LocalHost.",
    b"status.localhost",
    b"a.b.localhost:8080",
)


def request(
    method: bytes = b"GET",
    path: bytes = b"/api/status",
    host: Optional[bytes] = b"127.0.0.1:9090",
    headers: tuple = (),
    body: bytes = b"",
) -> DummyRequest:
    """A request as twisted.web hands it to the admin resource."""
    req = DummyRequest([])
    req.method = method
    req.uri = path
    if host is not None:
        req.requestHeaders.setRawHeaders(b"host", [host])
    if method == b"POST":
        req.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    for name, value in headers:
        req.requestHeaders.addRawHeader(name, value)
    req.content = io.BytesIO(body)
    return req


class AdminSiteMixin:
    def site(self, **admin) -> AdminResource:
        group = TargetGroupConfig(name="pool", backends=(BackendConfig("127.0.0.1", 8181),))
        config = Config(
            path="test.conf",
            listeners=(
                ListenerConfig(name="web", bind="tcp:0", rules=(RuleConfig(target_group="pool"),)),
            ),
            target_groups=(group,),
            admin=AdminConfig(**admin),
        )
        clock = Clock()
        self.groups = {"pool": TargetGroup(group, clock)}
        observability = Observability(config, self.groups, clock)
        return AdminResource(observability.live, observability.registry, config.admin)

    def answer(self, resource: AdminResource, req: DummyRequest) -> tuple[int, bytes]:
        body = resource.render(req)
        return req.responseCode or 200, body

    def control(self):
        """The backend's runtime state and weight, as the API last left them."""
        return self.groups["pool"].control(BACKEND)


class HostAllowedTests(unittest.TestCase):
    def test_ip_literals_and_localhost_names_are_allowed_with_or_without_a_port(self) -> None:
        for host in ANSWERED_HOSTS:
            self.assertTrue(host_allowed(host.decode("latin-1")), host)

    def test_other_names_and_malformed_hosts_are_refused(self) -> None:
        for host in REFUSED_HOSTS:
            self.assertFalse(host_allowed(host.decode("latin-1")), host)

    def test_a_missing_host_is_refused(self) -> None:
        self.assertFalse(host_allowed(None))

    def test_allowed_hosts_match_whole_names_in_any_case_with_any_port(self) -> None:
        allowed = ("admin.example.net",)
        self.assertEqual(
            [
                host_allowed(host, allowed)
                for host in (
                    "admin.example.net",
                    "ADMIN.Example.NET:8443",
                    "admin.example.net.",
                    "x.admin.example.net",
                    "admin.example.net.evil.example",
                    "evil-admin.example.net",
                )
            ],
            [True, True, True, False, False, False],
        )


class HostCheckTests(AdminSiteMixin, unittest.TestCase):
    def test_every_path_refuses_a_foreign_host_with_403(self) -> None:
        resource = self.site()
        for method, path in PATHS:
            for host in (b"evil.example", b"evil.example:9090", b"localhost.evil.example"):
                status, body = self.answer(resource, request(method, path, host))
                self.assertEqual(status, 403, (method, path, host))
                self.assertIn("Host is not allowed", json.loads(body)["error"])

    def test_a_refused_post_changes_nothing(self) -> None:
        resource = self.site()
        status, _ = self.answer(
            resource,
            request(b"POST", b"/api/backends/pool/127.0.0.1:8181/weight", b"evil.example",
                    body=b'{"weight": 0}'),
        )  # fmt: skip
        self.assertEqual(status, 403)
        self.assertEqual(self.control().weight, 10)

    def test_a_rebinding_post_with_a_matching_origin_is_refused(self) -> None:
        """The old Origin check alone let it through: Origin and Host name the attacker."""
        resource = self.site()
        req = request(
            b"POST",
            b"/api/backends/pool/127.0.0.1:8181/disable",
            b"evil.example:9090",
            headers=((b"origin", b"http://evil.example:9090"),),
        )
        status, _ = self.answer(resource, req)
        self.assertEqual(status, 403)
        self.assertEqual(self.control().state, "ready")

    def test_a_missing_host_or_two_hosts_are_refused(self) -> None:
        resource = self.site()
        two = request()
        two.requestHeaders.setRawHeaders(b"host", [b"127.0.0.1", b"evil.example"])
        for req in (request(host=None), two):
            self.assertEqual(self.answer(resource, req)[0], 403)

    def test_ip_literal_and_localhost_hosts_are_answered_on_every_path(self) -> None:
        resource = self.site()
        for method, path in PATHS[:2] + PATHS[3:4]:
            for host in ANSWERED_HOSTS:
                status, _ = self.answer(resource, request(method, path, host))
                self.assertEqual(status, 200, (method, path, host))

    def test_a_post_with_an_ip_host_still_works(self) -> None:
        resource = self.site()
        req = request(
            b"POST",
            b"/api/backends/pool/127.0.0.1:8181/drain",
            headers=((b"origin", b"http://127.0.0.1:9090"),),
        )
        status, body = self.answer(resource, req)
        self.assertEqual((status, json.loads(body)["state"]), (200, "drain"))

    def test_names_in_allowed_hosts_are_answered(self) -> None:
        resource = self.site(allowed_hosts=("admin.example.net",))
        for host in (b"admin.example.net", b"Admin.Example.Net:9090"):
            self.assertEqual(self.answer(resource, request(host=host))[0], 200, host)
        self.assertEqual(self.answer(resource, request(host=b"other.example.net"))[0], 403)

    def test_a_refusal_is_logged_with_the_host_and_the_key_to_change(self) -> None:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.answer(self.site(), request(host=b"evil.example\x1b[31m"))
        (line,) = [
            formatEvent(e)
            for e in events
            if e.get("log_namespace") == "clbproxy.observability.admin"
        ]
        self.assertIn(r"'evil.example\x1b[31m'", line)
        self.assertIn("[admin] allowed_hosts", line)

    def test_configure_takes_new_allowed_hosts(self) -> None:
        resource = self.site()
        self.assertEqual(self.answer(resource, request(host=b"admin.example.net"))[0], 403)
        resource.configure(AdminConfig(allowed_hosts=("admin.example.net",)))
        self.assertEqual(self.answer(resource, request(host=b"admin.example.net"))[0], 200)


class FramingTests(AdminSiteMixin, unittest.TestCase):
    def assertNotFramable(self, req: DummyRequest) -> None:
        headers = req.responseHeaders
        self.assertEqual(headers.getRawHeaders(b"x-frame-options"), [b"DENY"])
        (policy,) = headers.getRawHeaders(b"content-security-policy")
        self.assertIn(b"frame-ancestors 'none'", policy)

    def test_every_answer_forbids_framing(self) -> None:
        resource = self.site(token="s3cret")
        token = ((b"authorization", b"Bearer s3cret"),)
        cases = [request(method, path, headers=token) for method, path in PATHS]
        cases += [
            request(b"DELETE", b"/api/status", headers=token),  # 405
            request(host=b"evil.example"),  # 403
            request(),  # 401
        ]
        for req in cases:
            self.answer(resource, req)
            self.assertNotFramable(req)

    def test_the_page_keeps_its_inline_script_and_same_origin_requests(self) -> None:
        req = request(path=b"/")
        status, body = self.answer(self.site(), req)
        self.assertEqual(status, 200)
        self.assertIn(b"<script>", body)
        (policy,) = req.responseHeaders.getRawHeaders(b"content-security-policy")
        for directive in (b"script-src 'unsafe-inline'", b"connect-src 'self'"):
            self.assertIn(directive, policy)


class TokenTests(AdminSiteMixin, unittest.TestCase):
    def setUp(self) -> None:
        self.resource = self.site(token="s3cret-token")

    def test_the_api_and_metrics_need_the_bearer_token(self) -> None:
        for method, path in PATHS[1:4]:
            req = request(method, path)
            status, body = self.answer(self.resource, req)
            self.assertEqual(status, 401, path)
            self.assertEqual(
                req.responseHeaders.getRawHeaders(b"www-authenticate"),
                [b'Bearer realm="clbproxy admin"'],
            )
            self.assertIn("Authorization: Bearer", json.loads(body)["error"])
        self.assertEqual(self.control().state, "ready")

    def test_a_wrong_token_or_scheme_is_refused(self) -> None:
        for value in (
            b"Bearer s3cret-toke",
            b"Bearer s3cret-token2",
            b"Bearer S3CRET-TOKEN",
            b"Basic s3cret-token",
            b"s3cret-token",
            b"Bearer",
            b"",
        ):
            req = request(headers=((b"authorization", value),))
            self.assertEqual(self.answer(self.resource, req)[0], 401, value)

    def test_the_right_token_opens_the_api_and_metrics(self) -> None:
        for value in (b"Bearer s3cret-token", b"bearer s3cret-token"):
            for method, path in PATHS[1:4]:
                req = request(method, path, headers=((b"authorization", value),))
                self.assertEqual(self.answer(self.resource, req)[0], 200, (path, value))
        self.assertEqual(self.control().state, "drain")

    def test_the_page_itself_needs_no_token(self) -> None:
        status, body = self.answer(self.resource, request(path=b"/"))
        self.assertEqual(status, 200)
        self.assertIn(b'id="token-value"', body)

    def test_the_host_is_checked_before_the_token(self) -> None:
        req = request(host=b"evil.example", headers=((b"authorization", b"Bearer s3cret-token"),))
        self.assertEqual(self.answer(self.resource, req)[0], 403)

    def test_configure_changes_or_removes_the_token(self) -> None:
        self.resource.configure(AdminConfig(token="other"))
        old = request(headers=((b"authorization", b"Bearer s3cret-token"),))
        new = request(headers=((b"authorization", b"Bearer other"),))
        self.assertEqual([self.answer(self.resource, r)[0] for r in (old, new)], [401, 200])
        self.resource.configure(AdminConfig())
        self.assertEqual(self.answer(self.resource, request())[0], 200)
