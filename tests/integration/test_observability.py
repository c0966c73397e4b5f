"""Access log, metrics and admin API over real sockets, read with real clients."""

from __future__ import annotations

import json

import treq
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from tests.support.handshakes import upgrade_request
from tests.support.network import raw_request
from tests.support.observed import (
    Observed,
    ProductionProxy,
    get_json,
    parse_plain,
    sample,
    samples,  # noqa: F401 (other test modules import it from here)
    scrape,
    wait_for_lines,
)

HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


class _Fixture:
    log_format = "plain"
    listener_options: dict = {}

    @defer.inlineCallbacks
    def setUp(self):
        self.net = Observed(self)
        self.backend, backend_port = self.net.backend()
        self.backend_port = yield backend_port
        self.http_port = yield self.net.raw_backend(HTTP_RESPONSE)
        self.log_path = self.mktemp()
        self.port = yield self.net.start(
            [self.backend_port, self.http_port],
            log_path=self.log_path,
            log_format=self.log_format,
            trusted_proxies=("127.0.0.1/32",),
            **self.listener_options,
        )

    def only(self, port):
        """Send new traffic only to the backend on ``port``."""
        group = self.net.groups["pool"]
        for other in (self.backend_port, self.http_port):
            group.set_state(f"127.0.0.1:{other}", "ready" if other == port else "maint")

    @defer.inlineCallbacks
    def http_request(self):
        """One GET through the proxy to the HTTP backend."""
        self.only(self.http_port)
        response = yield raw_request(
            self.port,
            b"GET /hello?x=1 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: probe/1.0\r\n"
            b"Referer: http://ref.example/\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"Connection: close\r\n\r\n",
        )
        return response

    @defer.inlineCallbacks
    def websocket_session(self):
        """Two messages each way, then the client closes with 4000 "bye"."""
        self.only(self.backend_port)
        client = self.net.client(self.port, "/echo?room=1")
        protocol = yield client.opened
        protocol.sendMessage(b"one")
        protocol.sendMessage(b"two two")
        yield client.wait_messages(2)
        protocol.sendClose(4000, "bye")
        yield client.closed
        return client


class AccessLogPlainTests(_Fixture, unittest.TestCase):
    def _assert_http(self, fields, bytes_out):
        self.assertEqual(fields["type"], "http")
        self.assertEqual(fields["client"], "203.0.113.7")
        self.assertEqual(fields["request"], "GET /hello?x=1 HTTP/1.1")
        self.assertEqual(fields["status"], "200")
        self.assertEqual(fields["bytes_out"], bytes_out)
        self.assertEqual(fields["referer"], "http://ref.example/")
        self.assertEqual(fields["user_agent"], "probe/1.0")
        self.assertEqual(fields["listener"], "web")
        self.assertEqual(fields["host"], "app.example")
        self.assertEqual(fields["rule"], "/")
        self.assertEqual(fields["group"], "pool")
        self.assertEqual(fields["backend"], f"127.0.0.1:{self.http_port}")
        self.assertGreaterEqual(float(fields["response_ms"]), 0.0)
        self.assertGreaterEqual(float(fields["duration_ms"]), float(fields["response_ms"]))
        self.assertEqual(fields["bytes_in"], "0")

    @defer.inlineCallbacks
    def test_http_request_is_one_line_with_every_field(self):
        response = yield self.http_request()
        self.assertIn(b"hello", response)
        (line,) = yield wait_for_lines(self.log_path, 1)
        self._assert_http(parse_plain(line), "5")

    @defer.inlineCallbacks
    def test_websocket_session_is_one_line_at_its_end(self):
        yield self.websocket_session()
        (line,) = yield wait_for_lines(self.log_path, 1)
        fields = parse_plain(line)
        self.assertEqual(fields["type"], "websocket")
        self.assertEqual(fields["client"], "127.0.0.1")
        self.assertEqual(fields["request"], "GET /echo?room=1 WebSocket")
        self.assertEqual(fields["status"], "101")
        self.assertEqual(fields["listener"], "web")
        self.assertEqual(fields["host"], f"127.0.0.1:{self.port}")
        self.assertEqual(fields["rule"], "/")
        self.assertEqual(fields["group"], "pool")
        self.assertEqual(fields["backend"], f"127.0.0.1:{self.backend_port}")
        self.assertGreaterEqual(float(fields["handshake_ms"]), 0.0)
        self.assertGreater(float(fields["duration_s"]), 0.0)
        self.assertEqual(fields["messages_in"], "2")
        self.assertEqual(fields["messages_out"], "2")
        # Client frames are masked (2 + 4 header bytes); the Close is counted too:
        # 4000 "bye" from the client, 4000 without reason in the proxy's reply.
        self.assertEqual(fields["bytes_in"], str((6 + 3) + (6 + 7) + (6 + 2 + 3)))
        self.assertEqual(fields["bytes_out"], str((2 + 3) + (2 + 7) + (2 + 2)))
        self.assertEqual(fields["client_close_code"], "4000")
        self.assertEqual(fields["client_close_reason"], "bye")
        # The backend answered the relayed Close with its own (Autobahn's default 1000).
        self.assertEqual(fields["backend_close_code"], "1000")
        self.assertEqual(fields["backend_close_reason"], "-")
        self.assertEqual(fields["closed_by"], "client")

    @defer.inlineCallbacks
    def test_refused_handshake_is_logged_with_its_status(self):
        self.only(self.backend_port)
        response = yield raw_request(self.port, upgrade_request("/deny?status=403", host="h"))
        self.assertTrue(response.startswith(b"HTTP/1.1 403"), response)
        (line,) = yield wait_for_lines(self.log_path, 1)
        fields = parse_plain(line)
        self.assertEqual((fields["type"], fields["status"]), ("websocket", "403"))
        self.assertEqual(fields["backend"], f"127.0.0.1:{self.backend_port}")
        self.assertEqual(fields["closed_by"], "-")


class RefusalAccessLogTests(_Fixture, unittest.TestCase):
    """Requests the listener itself refuses get their access-log line like any other."""

    listener_options = {"deny": ("203.0.113.0/24",)}

    @defer.inlineCallbacks
    def test_path_above_the_root_is_logged_with_400(self):
        response = yield raw_request(
            self.port, b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 400"), response)
        (line,) = yield wait_for_lines(self.log_path, 1)
        fields = parse_plain(line)
        self.assertEqual(fields["type"], "http")
        self.assertEqual(fields["request"], "GET /a/../../etc/passwd HTTP/1.1")
        self.assertEqual(fields["status"], "400")
        self.assertEqual((fields["rule"], fields["backend"]), ("-", "-"))

    @defer.inlineCallbacks
    def test_denied_client_is_logged_with_403_and_its_rule(self):
        response = yield raw_request(
            self.port,
            b"GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.9\r\n"
            b"Connection: close\r\n\r\n",
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 403"), response)
        (line,) = yield wait_for_lines(self.log_path, 1)
        fields = parse_plain(line)
        self.assertEqual((fields["type"], fields["status"]), ("http", "403"))
        self.assertEqual(fields["client"], "203.0.113.9")
        self.assertEqual(fields["rule"], "/")
        self.assertEqual(fields["backend"], "-")

    @defer.inlineCallbacks
    def test_denied_websocket_handshake_is_logged_with_403(self):
        response = yield raw_request(
            self.port, upgrade_request("/ws", host="h", extra=b"X-Forwarded-For: 203.0.113.9\r\n")
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 403"), response)
        (line,) = yield wait_for_lines(self.log_path, 1)
        fields = parse_plain(line)
        self.assertEqual(fields["status"], "403")
        self.assertEqual(fields["request"], "GET /ws HTTP/1.1")

    @defer.inlineCallbacks
    def test_denied_request_and_handshake_are_counted_in_metrics(self):
        for request in (
            b"GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.9\r\n"
            b"Connection: close\r\n\r\n",
            upgrade_request("/ws", host="h", extra=b"X-Forwarded-For: 203.0.113.9\r\n"),
        ):
            response = yield raw_request(self.port, request)
            self.assertTrue(response.startswith(b"HTTP/1.1 403"), response)
        yield wait_for_lines(self.log_path, 2)
        found = yield scrape(self.net)
        self.assertEqual(
            sample(
                found,
                "clbproxy_limit_refusals_total",
                listener="web",
                reason="listener_deny",
                status="403",
            ),
            2,
        )
        self.assertEqual(
            sample(found, "clbproxy_websocket_handshakes_total", listener="web", status="403"), 1
        )
        self.assertEqual(
            sample(
                found, "clbproxy_http_requests_total", listener="web", backend="-", status="403"
            ),
            2,
        )


class ProxyProtocolAccessLogTests(_Fixture, unittest.TestCase):
    """Behind an L4 balancer the access log names the client the PROXY header names."""

    listener_options = {"bind": "haproxy:tcp:0:interface=127.0.0.1"}

    @defer.inlineCallbacks
    def test_http_request_is_logged_with_the_proxy_source(self):
        self.only(self.http_port)
        response = yield raw_request(
            self.port,
            b"PROXY TCP4 198.51.100.20 127.0.0.1 5555 80\r\n"
            b"GET /hello HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
        )
        self.assertIn(b"hello", response)
        (line,) = yield wait_for_lines(self.log_path, 1)
        self.assertEqual(parse_plain(line)["client"], "198.51.100.20")

    @defer.inlineCallbacks
    def test_websocket_handshake_is_logged_with_the_proxy_source(self):
        self.only(self.backend_port)
        response = yield raw_request(
            self.port,
            b"PROXY TCP4 198.51.100.21 127.0.0.1 5555 80\r\n"
            + upgrade_request("/deny?status=403", host="h"),
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 403"), response)
        (line,) = yield wait_for_lines(self.log_path, 1)
        fields = parse_plain(line)
        self.assertEqual((fields["type"], fields["client"]), ("websocket", "198.51.100.21"))


class AccessLogJSONTests(_Fixture, unittest.TestCase):
    log_format = "json"

    @defer.inlineCallbacks
    def test_http_request_is_one_json_object(self):
        yield self.http_request()
        (line,) = yield wait_for_lines(self.log_path, 1)
        record = json.loads(line)
        self.assertEqual(
            {
                k: v
                for k, v in record.items()
                if k not in ("time", "response_ms", "duration_ms", "request_id")
            },
            {
                "type": "http",
                "listener": "web",
                "client": "203.0.113.7",
                "method": "GET",
                "path": "/hello?x=1",
                "protocol": "HTTP/1.1",
                "host": "app.example",
                "referer": "http://ref.example/",
                "user_agent": "probe/1.0",
                "rule": "/",
                "group": "pool",
                "backend": f"127.0.0.1:{self.http_port}",
                "status": 200,
                "bytes_in": 0,
                "bytes_out": 5,
                "trace_id": None,
                "parent_id": None,
            },
        )
        self.assertRegex(record["request_id"], r"^[0-9a-f]{32}$")
        self.assertGreaterEqual(record["duration_ms"], record["response_ms"])
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")

    @defer.inlineCallbacks
    def test_websocket_session_is_one_json_object(self):
        yield self.websocket_session()
        (line,) = yield wait_for_lines(self.log_path, 1)
        record = json.loads(line)
        self.assertEqual(record["type"], "websocket")
        self.assertEqual(record["status"], 101)
        self.assertEqual(record["path"], "/echo?room=1")
        self.assertEqual(record["backend"], f"127.0.0.1:{self.backend_port}")
        self.assertEqual((record["messages_in"], record["messages_out"]), (2, 2))
        self.assertEqual((record["bytes_in"], record["bytes_out"]), (33, 18))
        self.assertEqual(
            (record["client_close_code"], record["client_close_reason"]), (4000, "bye")
        )
        self.assertEqual(
            (record["backend_close_code"], record["backend_close_reason"]), (1000, None)
        )
        self.assertEqual(record["closed_by"], "client")
        self.assertIsInstance(record["handshake_ms"], float)
        self.assertIsInstance(record["duration_s"], float)


class MetricsTests(_Fixture, unittest.TestCase):
    def scrape(self):
        return scrape(self.net)

    @defer.inlineCallbacks
    def test_finished_traffic_is_counted(self):
        yield self.http_request()
        yield self.websocket_session()
        yield wait_for_lines(self.log_path, 2)
        found = yield self.scrape()
        backend = f"127.0.0.1:{self.backend_port}"
        self.assertEqual(
            sample(
                found,
                "clbproxy_http_requests_total",
                listener="web",
                backend=f"127.0.0.1:{self.http_port}",
                status="200",
            ),
            1,
        )
        self.assertEqual(sample(found, "clbproxy_http_response_seconds_count", listener="web"), 1)
        self.assertEqual(
            sample(found, "clbproxy_websocket_handshakes_total", listener="web", status="101"), 1
        )
        self.assertEqual(
            sample(found, "clbproxy_websocket_handshake_seconds_count", listener="web"), 1
        )
        self.assertEqual(
            sample(
                found,
                "clbproxy_websocket_sessions_total",
                listener="web",
                group="pool",
                backend=backend,
            ),
            1,
        )
        for direction, messages, octets in (("in", 2, 33), ("out", 2, 18)):
            self.assertEqual(
                sample(
                    found, "clbproxy_websocket_messages_total", listener="web", direction=direction
                ),
                messages,
            )
            self.assertEqual(
                sample(
                    found, "clbproxy_websocket_bytes_total", listener="web", direction=direction
                ),
                octets,
            )
        for side, code in (("client", "4000"), ("backend", "1000")):
            self.assertEqual(
                sample(
                    found, "clbproxy_websocket_closes_total", listener="web", side=side, code=code
                ),
                1,
            )
        self.assertEqual(
            sample(found, "clbproxy_websocket_closed_first_total", listener="web", side="client"),
            1,
        )
        self.assertEqual(sample(found, "clbproxy_connections_total", listener="web"), 2)
        self.assertEqual(sample(found, "clbproxy_connections_active", listener="web"), 0)
        for port in (self.backend_port, self.http_port):
            labels = {"group": "pool", "backend": f"127.0.0.1:{port}"}
            self.assertEqual(sample(found, "clbproxy_backend_sent_total", **labels), 1)
            self.assertEqual(sample(found, "clbproxy_backend_in_flight", **labels), 0)

    @defer.inlineCallbacks
    def test_open_session_is_active_and_its_messages_count_already(self):
        self.only(self.backend_port)
        client = self.net.client(self.port, "/echo")
        protocol = yield client.opened
        protocol.sendMessage(b"abc")
        yield client.wait_messages(1)
        found = yield self.scrape()
        backend = f"127.0.0.1:{self.backend_port}"
        self.assertEqual(
            sample(
                found,
                "clbproxy_websocket_sessions_active",
                listener="web",
                group="pool",
                backend=backend,
            ),
            1,
        )
        self.assertEqual(sample(found, "clbproxy_connections_active", listener="web"), 1)
        self.assertEqual(
            sample(found, "clbproxy_backend_in_flight", group="pool", backend=backend), 1
        )
        self.assertEqual(
            sample(found, "clbproxy_backend_sent_total", group="pool", backend=backend), 1
        )
        self.assertEqual(
            sample(found, "clbproxy_websocket_messages_total", listener="web", direction="in"), 1
        )
        self.assertEqual(
            sample(found, "clbproxy_websocket_messages_total", listener="web", direction="out"), 1
        )

    @defer.inlineCallbacks
    def test_backend_health_weight_and_reloads_are_exported(self):
        self.net.observability.metrics.config_reloaded(True, when=1000.0)
        self.net.observability.metrics.config_reloaded(False, when=2000.0)
        found = yield self.scrape()
        backend = f"127.0.0.1:{self.backend_port}"
        self.assertEqual(
            sample(
                found, "clbproxy_backend_health", group="pool", backend=backend, state="unknown"
            ),
            1,
        )
        self.assertEqual(
            sample(
                found, "clbproxy_backend_health", group="pool", backend=backend, state="healthy"
            ),
            0,
        )
        self.assertEqual(
            sample(found, "clbproxy_backend_weight", group="pool", backend=backend), 10
        )
        self.assertEqual(
            sample(
                found, "clbproxy_backend_admin_state", group="pool", backend=backend, state="ready"
            ),
            1,
        )
        self.assertEqual(sample(found, "clbproxy_config_reloads_total", result="success"), 1)
        self.assertEqual(sample(found, "clbproxy_config_reloads_total", result="failure"), 1)
        self.assertEqual(sample(found, "clbproxy_config_last_reload_successful"), 0)
        self.assertEqual(sample(found, "clbproxy_config_last_reload_timestamp_seconds"), 2000.0)


class AdminAPITests(_Fixture, unittest.TestCase):
    @defer.inlineCallbacks
    def post(self, path, body=b"{}", content_type=b"application/json", origin=None):
        headers = {b"Content-Type": [content_type]}
        if origin is not None:
            headers[b"Origin"] = [origin]
        response = yield treq.post(
            self.net.admin_url(path), data=body, headers=headers, pool=self.net.pool
        )
        data = yield response.json()
        return response.code, data

    @defer.inlineCallbacks
    def get_json(self, path):
        response = yield treq.get(self.net.admin_url(path), pool=self.net.pool)
        data = yield response.json()
        return response.code, data

    def backend_path(self, action, port=None):
        return f"/api/backends/pool/127.0.0.1:{port or self.backend_port}/{action}"

    @defer.inlineCallbacks
    def test_status_lists_listeners_rules_and_backends(self):
        self.only(self.backend_port)
        client = self.net.client(self.port, "/echo")
        yield client.opened
        code, status = yield self.get_json("/api/status")
        self.assertEqual(code, 200)
        (listener,) = status["listeners"]
        self.assertEqual(listener["name"], "web")
        self.assertEqual(listener["sessions"], 1)
        self.assertEqual(
            listener["rules"], [{"host": None, "path": "/", "label": "/", "target_group": "pool"}]
        )
        (group,) = status["target_groups"]
        self.assertEqual(group["name"], "pool")
        self.assertEqual(
            group["backends"],
            [
                {
                    "address": f"127.0.0.1:{self.backend_port}",
                    "weight": 10,
                    "configured_weight": 10,
                    "state": "ready",
                    "health": "unknown",
                    "health_detail": "",
                    "sessions": 1,
                    "relieved": 0,
                    "recent_errors": [],
                },
                {
                    "address": f"127.0.0.1:{self.http_port}",
                    "weight": 10,
                    "configured_weight": 10,
                    "state": "maint",
                    "health": "unknown",
                    "health_detail": "",
                    "sessions": 0,
                    "relieved": 0,
                    "recent_errors": [],
                },
            ],
        )

    @defer.inlineCallbacks
    def test_drain_stops_new_picks_and_enable_restores_them(self):
        self.only(self.backend_port)
        group = self.net.groups["pool"]
        code, data = yield self.post(self.backend_path("drain"))
        self.assertEqual((code, data["state"]), (200, "drain"))
        self.assertIsNone(group.pick())
        code, status = yield self.get_json("/api/status")
        self.assertEqual(status["target_groups"][0]["backends"][0]["state"], "drained")
        code, data = yield self.post(self.backend_path("enable"))
        self.assertEqual((code, data["state"]), (200, "ready"))
        self.assertEqual(group.pick().port, self.backend_port)

    @defer.inlineCallbacks
    def test_drained_backend_keeps_its_open_session(self):
        self.only(self.backend_port)
        client = self.net.client(self.port, "/echo")
        protocol = yield client.opened
        yield self.post(self.backend_path("drain"))
        protocol.sendMessage(b"still here")
        messages = yield client.wait_messages(1)
        self.assertEqual(messages, [(b"still here", False)])
        code, status = yield self.get_json("/api/status")
        self.assertEqual(status["target_groups"][0]["backends"][0]["state"], "drain")
        refused = self.net.client(self.port, "/echo")
        yield self.assertFailure(refused.opened, ConnectionError)
        self.assertEqual(refused.close_info[0], False)

    @defer.inlineCallbacks
    def test_disable_answers_new_sessions_with_503(self):
        self.only(self.backend_port)
        code, data = yield self.post(self.backend_path("disable"))
        self.assertEqual((code, data["state"]), (200, "maint"))
        response = yield treq.get(f"http://127.0.0.1:{self.port}/", pool=self.net.pool)
        yield response.content()
        self.assertEqual(response.code, 503)

    @defer.inlineCallbacks
    def test_reweight_changes_the_share_of_picks(self):
        group = self.net.groups["pool"]
        code, data = yield self.post(self.backend_path("weight"), b'{"weight": 30}')
        self.assertEqual(code, 200)
        self.assertEqual((data["weight"], data["configured_weight"]), (30, 10))
        picks = [group.pick().port for _ in range(40)]
        self.assertEqual(picks.count(self.backend_port), 30)
        self.assertEqual(picks.count(self.http_port), 10)
        code, data = yield self.post(self.backend_path("weight", self.http_port), b'{"weight": 0}')
        self.assertEqual(code, 200)
        self.assertEqual({group.pick().port for _ in range(10)}, {self.backend_port})

    @defer.inlineCallbacks
    def test_bad_requests_get_400_with_a_json_error(self):
        cases = {
            "not json": (self.backend_path("weight"), b"{weight", b"application/json"),
            "no weight": (self.backend_path("weight"), b'{"w": 1}', b"application/json"),
            "weight too big": (
                self.backend_path("weight"),
                b'{"weight": 101}',
                b"application/json",
            ),
            "weight text": (self.backend_path("weight"), b'{"weight": "5"}', b"application/json"),
            "form post": (self.backend_path("drain"), b"a=1", b"application/x-www-form-urlencoded"),
        }
        found = {}
        for name, (path, body, content_type) in cases.items():
            code, data = yield self.post(path, body, content_type)
            found[name] = (code, sorted(data))
        self.assertEqual(found, {name: (400, ["error"]) for name in cases})
        self.assertEqual(self.net.groups["pool"].controls()[0].state, "ready")

    @defer.inlineCallbacks
    def test_unknown_backend_group_or_action_is_404(self):
        for path in (
            "/api/backends/pool/127.0.0.1:1/drain",
            f"/api/backends/nogroup/127.0.0.1:{self.backend_port}/drain",
            self.backend_path("explode"),
            "/api/nothing",
        ):
            code, data = yield self.post(path)
            self.assertEqual(code, 404, path)
            self.assertIn("error", data)

    @defer.inlineCallbacks
    def test_wrong_method_is_405(self):
        code, data = yield self.get_json(self.backend_path("drain"))
        self.assertEqual(code, 405)
        self.assertIn("POST", data["error"])

    @defer.inlineCallbacks
    def test_cross_origin_post_is_refused(self):
        code, data = yield self.post(self.backend_path("drain"), origin=b"http://evil.example")
        self.assertEqual(code, 403)


PRODUCTION = """
drain_timeout = 1
max_connections = 1
[[listener]]
name = "web"
bind = "tcp:0:interface=127.0.0.1"
  [[listener.rule]]
  target_group = "pool"
{listeners}
[admin]
bind = "tcp:0:interface=127.0.0.1:backlog=10"

[target_group.pool]
backends = [{backends}]
  [target_group.pool.health_check]
  type = "tcp"
  interval = 2
  timeout = 2
  unhealthy_threshold = 2
  jitter = 0
"""

DENY_ALL = """
[[listener]]
name = "closed"
bind = "tcp:0:interface=127.0.0.1:backlog=20"
deny = ["0.0.0.0/0"]
  [[listener.rule]]
  target_group = "pool"
"""


def production_config(*ports, listeners=""):
    backends = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
    return PRODUCTION.format(backends=backends, listeners=listeners)


class ProductionServiceTests(unittest.TestCase):
    """The proxy as twistd builds it (build_service): health checks feed the status page and
    metrics, and reloads, limits and the global gate are counted."""

    @defer.inlineCallbacks
    def wait_for_health(self, proxy, address, state, timeout=15.0):
        """The metrics once ``clbproxy_backend_health`` says ``state`` for ``address``."""
        waited = 0.0
        while True:
            found = yield scrape(proxy)
            labels = {"group": "pool", "backend": address}
            if sample(found, "clbproxy_backend_health", state=state, **labels) == 1:
                return found
            if waited > timeout:
                raise AssertionError(f"{address} not {state} after {timeout} s")
            yield task.deferLater(reactor, 0.2, lambda: None)
            waited += 0.2

    @defer.inlineCallbacks
    def test_checked_health_shows_a_stopped_backend_unhealthy_and_a_502_as_a_recent_error(self):
        proxy = ProductionProxy(self)
        # Accepts TCP (the health check passes) but closes every request unanswered: 502.
        broken_port = yield proxy.raw_backend(b"")
        doomed = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(lambda: doomed.stopListening() if doomed.connected else None)
        doomed_port = doomed.getHost().port
        broken, gone = f"127.0.0.1:{broken_port}", f"127.0.0.1:{doomed_port}"
        yield proxy.start(production_config(broken_port, doomed_port))

        found = yield scrape(proxy)
        for address in (broken, gone):
            health = {
                state: sample(
                    found, "clbproxy_backend_health", group="pool", backend=address, state=state
                )
                for state in ("healthy", "unhealthy", "unknown")
            }
            self.assertEqual(health, {"healthy": 1, "unhealthy": 0, "unknown": 0})

        yield doomed.stopListening()
        found = yield self.wait_for_health(proxy, gone, "unhealthy")
        self.assertEqual(
            sample(found, "clbproxy_backend_health", group="pool", backend=gone, state="healthy"),
            0,
        )
        self.assertEqual(
            sample(found, "clbproxy_backend_health", group="pool", backend=broken, state="healthy"),
            1,
        )

        response = yield raw_request(
            proxy.port(), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 502 "), response)

        code, status = yield get_json(proxy, "/api/status")
        self.assertEqual(code, 200)
        backends = {b["address"]: b for b in status["target_groups"][0]["backends"]}
        self.assertEqual(backends[gone]["health"], "unhealthy")
        detail = backends[gone]["health_detail"]
        self.assertTrue(detail.startswith("health check: "), detail)
        self.assertIn("refused", detail)
        self.assertEqual(backends[broken]["health"], "healthy")
        (error,) = backends[broken]["recent_errors"]
        self.assertTrue(error["message"].endswith("(answered 502)"), error)
        self.assertIsInstance(error["time"], float)
        found = yield scrape(proxy)
        self.assertEqual(
            sample(
                found, "clbproxy_http_requests_total", listener="web", backend=broken, status="502"
            ),
            1,
        )
        self.assertEqual(
            sample(found, "clbproxy_backend_sent_total", group="pool", backend=broken), 1
        )
        self.assertEqual(
            sample(found, "clbproxy_backend_sent_total", group="pool", backend=gone), 0
        )

    @defer.inlineCallbacks
    def test_real_reloads_are_counted_by_result_and_new_listeners_limits_are_exported(self):
        proxy = ProductionProxy(self)
        backend_port = yield proxy.raw_backend(b"")
        yield proxy.start(production_config(backend_port))
        found = yield scrape(proxy)
        self.assertEqual(sample(found, "clbproxy_config_reloads_total", result="success"), 0)

        proxy.write(production_config(backend_port, listeners=DENY_ALL))
        self.assertTrue((yield proxy.reloader.reload()))
        found = yield scrape(proxy)
        self.assertEqual(sample(found, "clbproxy_config_reloads_total", result="success"), 1)
        self.assertEqual(sample(found, "clbproxy_config_reloads_total", result="failure"), 0)
        self.assertEqual(sample(found, "clbproxy_config_last_reload_successful"), 1)

        with open(proxy.path, "a", encoding="utf-8") as f:
            f.write("bogus = 1\n")
        self.assertFalse((yield proxy.reloader.reload()))
        found = yield scrape(proxy)
        self.assertEqual(sample(found, "clbproxy_config_reloads_total", result="success"), 1)
        self.assertEqual(sample(found, "clbproxy_config_reloads_total", result="failure"), 1)
        self.assertEqual(sample(found, "clbproxy_config_last_reload_successful"), 0)

        response = yield raw_request(
            proxy.port("closed"), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 403 "), response)
        found = yield scrape(proxy)
        self.assertEqual(
            sample(
                found,
                "clbproxy_limit_refusals_total",
                listener="closed",
                reason="listener_deny",
                status="403",
            ),
            1,
        )
        # The global max_connections = 1 was reached by that one connection.
        self.assertEqual(sample(found, "clbproxy_global_accept_paused_total"), 1)
