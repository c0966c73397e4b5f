"""``[[listener]]`` tables: their keys, limits and timeouts."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import (
    FixedResponseConfig,
    RedirectConfig,
    RewriteConfig,
    RuleConfig,
    load_config,
)
from tests.unit.config.loading import LoaderMixin, document


class ListenerProblemTests(LoaderMixin, unittest.TestCase):
    def test_listener_problems(self) -> None:
        cases = {
            "unknown key": (
                document(listener={"bnd": '"tcp:1"'}),
                "listener[0]: unknown key 'bnd' (did you mean 'bind'?)",
            ),
            "missing name": (
                document(listener={"name": None}),
                "listener[0]: missing required key 'name'",
            ),
            "name type": (
                document(listener={"name": "1"}),
                "listener[0].name: expected a string, got an integer",
            ),
            "name syntax": (
                document(listener={"name": '"my web"'}),
                "listener[0].name: invalid name 'my web': use letters, digits, '_', '.' and '-'",
            ),
            "missing bind": (
                document(listener={"bind": None}),
                "listener[0]: missing required key 'bind'",
            ),
            "https without tls": (
                document(listener={"protocol": '"https"'}),
                "listener[0]: an HTTPS listener needs a [listener.tls] table with certificates "
                "(or self_signed = true)",
            ),
            "protocol": (
                document(listener={"protocol": '"ftp"'}),
                "listener[0].protocol: unknown protocol 'ftp'; must be one of: 'http', 'https'",
            ),
            "wildcard origin": (
                document(listener={"allowed_origins": '["*"]'}),
                "listener[0].allowed_origins[0]: '*' is not allowed: list exact origins like "
                "'https://example.com' (an empty list allows every origin)",
            ),
            "origin without scheme": (
                document(listener={"allowed_origins": '["example.com"]'}),
                "listener[0].allowed_origins[0]: 'example.com' is not an origin; expected "
                "scheme://host[:port], like 'https://example.com'",
            ),
            "origin scheme": (
                document(listener={"allowed_origins": '["ftp://example.com"]'}),
                "listener[0].allowed_origins[0]: 'ftp://example.com' is not an origin: "
                "the scheme must be http or https",
            ),
            "origin path": (
                document(listener={"allowed_origins": '["https://example.com/app"]'}),
                "listener[0].allowed_origins[0]: 'https://example.com/app' is not an origin: "
                "it is only scheme://host[:port], without path or user",
            ),
            "origin host": (
                document(listener={"allowed_origins": '["https://exa mple.com"]'}),
                "listener[0].allowed_origins[0]: 'exa mple.com' is not a valid host name",
            ),
            "origin port": (
                document(listener={"allowed_origins": '["https://example.com:0"]'}),
                "listener[0].allowed_origins[0]: port 0 out of range 1-65535",
            ),
            "origins type": (
                document(listener={"allowed_origins": '"https://example.com"'}),
                "listener[0].allowed_origins: expected an array of strings, got a string",
            ),
            "session buffer": (
                document(listener={"session_buffer": "1024"}),
                "listener[0].session_buffer: must be at least 4KiB (4096 bytes), got 1024",
            ),
            "inflate rate too low": (
                document(listener={"websocket_inflate_rate": '"1KiB"'}),
                "listener[0].websocket_inflate_rate: must be 0 (no limit) or at least "
                "64KiB (65536 bytes) per second, got '1KiB'",
            ),
            "inflate rate not a size": (
                document(listener={"websocket_inflate_rate": '"fast"'}),
                "listener[0].websocket_inflate_rate: 'fast' is not a size; use bytes as an "
                'integer, or a string like "64KiB", "16MiB", "512KB" or "10MB"',
            ),
            "message size": (
                document(listener={"max_message_size": '"lots"'}),
                "listener[0].max_message_size: 'lots' is not a size; use bytes as an integer, "
                'or a string like "64KiB", "16MiB", "512KB" or "10MB"',
            ),
            "refusal body": (
                document(listener={"max_refusal_body": "-1"}),
                "listener[0].max_refusal_body: a size must not be negative, got -1",
            ),
            "trusted proxy": (
                document(listener={"trusted_proxies": '["10.0.0.0/33"]'}),
                "listener[0].trusted_proxies[0]: '10.0.0.0/33' is not a network in CIDR "
                "notation, like '10.0.0.0/8' or 'fd00::/8'",
            ),
            "client timeout": (
                document(listener={"client_timeout": "0"}),
                "listener[0].client_timeout: a duration must be greater than 0, got 0",
            ),
            "no rule key": (
                document().replace('[[listener.rule]]\ntarget_group = "demo"\n', ""),
                "listener[0]: missing required key 'rule' (at least one [[listener.rule]])",
            ),
            "empty rules": (
                document(listener={"rule": "[]"}).replace(
                    '[[listener.rule]]\ntarget_group = "demo"\n', ""
                ),
                "listener[0].rule: needs at least one [[listener.rule]]",
            ),
        }
        self.assertEqual(
            self.problem_table({name: text for name, (text, _) in cases.items()}),
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )

    def test_duplicate_listener_names(self) -> None:
        problems = self.problems(
            document(
                extra=(
                    '[[listener]]\nname = "web"\nbind = "tcp:8081"\n'
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                )
            )
        )
        self.assertEqual(
            problems, ["tap.conf: listener[1].name: duplicate name 'web' (also listener[0])"]
        )


class ListenerHTTPKeyTests(LoaderMixin, unittest.TestCase):
    def test_http_keys_load_into_the_model(self) -> None:
        listener = self.load(
            document(
                listener={
                    "max_body_size": '"1MiB"',
                    "max_header_size": '"8KiB"',
                    "max_request_line": "2048",
                    "via": "true",
                    "default_domain": '"WWW.example.com"',
                },
                rule={"host": '"www.example.com"'},
            )
        ).listeners[0]
        self.assertEqual(
            (
                listener.max_body_size,
                listener.max_header_size,
                listener.max_request_line,
                listener.via,
                listener.default_domain,
            ),
            (1024 * 1024, 8192, 2048, True, "www.example.com"),
        )

    def test_underscores_in_headers_defaults_to_false_and_loads(self) -> None:
        default = self.load(document()).listeners[0]
        allowed = self.load(document(listener={"underscores_in_headers": "true"})).listeners[0]
        self.assertEqual(
            (default.underscores_in_headers, allowed.underscores_in_headers), (False, True)
        )

    def test_rule_actions_load_into_the_model(self) -> None:
        rule = (
            self.load(
                document(
                    rule={
                        "target_group": None,
                        "host": '"~ ^API[0-9]+\\\\.example$"',
                        "path": '"^~/static/"',
                        "fixed_response": '{ status = 503, body = "later" }',
                        "set_headers": '{ "X-Env" = "prod" }',
                        "remove_headers": '["X-Debug"]',
                        "rewrite": '{ strip_prefix = "/static" }',
                    }
                )
            )
            .listeners[0]
            .rules[0]
        )
        self.assertEqual(
            rule,
            RuleConfig(
                host="~ ^API[0-9]+\\.example$",
                path="^~ /static/",
                fixed_response=FixedResponseConfig(status=503, body="later"),
                set_headers=(("X-Env", "prod"),),
                remove_headers=("x-debug",),
                rewrite=RewriteConfig(strip_prefix="/static"),
            ),
        )

    def test_redirect_as_a_string(self) -> None:
        rule = (
            self.load(
                document(rule={"target_group": None, "redirect": '"https://$host$request_uri"'})
            )
            .listeners[0]
            .rules[0]
        )
        self.assertEqual(rule.redirect, RedirectConfig(location="https://$host$request_uri"))

    def test_listener_problems(self) -> None:
        cases = {
            "default domain unknown": (
                document(listener={"default_domain": '"b.test"'}, rule={"host": '"a.test"'}),
                "listener[0].default_domain: 'b.test' is not the host of any rule "
                "(hosts: 'a.test')",
            ),
            "default domain with host-less rules": (
                document(
                    listener={"default_domain": '"a.test"'},
                    rule={"host": '"a.test"'},
                    extra='[[listener.rule]]\ntarget_group = "demo"\n',
                ),
                "listener[0].default_domain: rules without 'host' already take requests for any "
                "other host; give them a host or leave default_domain out",
            ),
            "via type": (
                document(listener={"via": '"yes"'}),
                "listener[0].via: expected true or false, got a string",
            ),
            "underscores_in_headers type": (
                document(listener={"underscores_in_headers": "1"}),
                "listener[0].underscores_in_headers: expected true or false, got an integer",
            ),
            "header size too small": (
                document(listener={"max_header_size": "100"}),
                "listener[0].max_header_size: must be at least 1KiB (1024 bytes), got 100",
            ),
        }
        self.assertEqual(
            self.problem_table({name: text for name, (text, _) in cases.items()}),
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )


class LifecycleKeyTests(LoaderMixin, unittest.TestCase):
    """Timeouts, limits, access lists and the top-level drain and connection keys."""

    def test_lifecycle_keys_load_into_the_model(self) -> None:
        config = self.load(
            'drain_timeout = "10s"\nmax_connections = 5000\n'
            + document(
                listener={
                    "header_timeout": '"20s"',
                    "keepalive_timeout": "30",
                    "websocket_idle_timeout": '"5m"',
                    "websocket_ping_interval": "20",
                    "websocket_ping_timeout": '"5s"',
                    "max_connections": "100",
                    "max_connections_per_ip": "10",
                    "websocket_handshake_rate": "2.5",
                    "websocket_handshake_burst": "5",
                    "allow": '["10.0.0.1/8"]',
                    "deny": '["10.9.0.0/16"]',
                },
                rule={"allow": '["192.168.0.0/16"]', "deny": '["::1/128"]'},
            )
        )
        self.assertEqual((config.drain_timeout, config.max_connections), (10.0, 5000))
        listener = config.listeners[0]
        self.assertEqual(
            (
                listener.header_timeout,
                listener.keepalive_timeout,
                listener.websocket_idle_timeout,
                listener.websocket_ping_interval,
                listener.websocket_ping_timeout,
                listener.max_connections,
                listener.max_connections_per_ip,
                listener.websocket_handshake_rate,
                listener.websocket_handshake_burst,
                listener.allow,
                listener.deny,
            ),
            (20.0, 30.0, 300.0, 20.0, 5.0, 100, 10, 2.5, 5, ("10.0.0.0/8",), ("10.9.0.0/16",)),
        )
        rule = listener.rules[0]
        self.assertEqual((rule.allow, rule.deny), (("192.168.0.0/16",), ("::1/128",)))

    def test_defaults_follow_the_big_balancers(self) -> None:
        config = self.load(document())
        listener = config.listeners[0]
        self.assertEqual((config.drain_timeout, config.max_connections), (30.0, 0))
        self.assertEqual(
            (
                listener.header_timeout,
                listener.keepalive_timeout,
                listener.websocket_idle_timeout,
                listener.websocket_ping_interval,
            ),
            (60.0, 75.0, 60.0, 0.0),
        )

    def test_workers_default_to_one_process(self) -> None:
        self.assertEqual(self.load(document()).workers, 1)
        self.assertEqual(self.load("workers = 4\n" + document()).workers, 4)

    def test_source_ip_persistence_with_workers_is_warned_about(self) -> None:
        text = document(extra='[target_group.demo.persistence]\ntype = "source_ip"\n')
        self.assertEqual(self.load(text).warnings, ())
        path = self.write("workers = 2\n" + text)
        self.assertEqual(
            load_config(path).warnings,
            (
                f"{path}: target_group.demo.persistence: source_ip persistence is remembered "
                'per worker (workers = 2); use policy = "consistent_hash" for stickiness '
                "across workers",
            ),
        )

    def test_ping_interval_zero_turns_pings_off(self) -> None:
        config = self.load(document(listener={"websocket_ping_interval": "0"}))
        self.assertEqual(config.listeners[0].websocket_ping_interval, 0.0)

    def test_lifecycle_key_problems(self) -> None:
        cases = {
            "idle too short": (
                document(listener={"websocket_idle_timeout": "10"}),
                "listener[0].websocket_idle_timeout: 10 s out of range 30-3600 s",
            ),
            "idle too long": (
                document(listener={"websocket_idle_timeout": '"2h"'}),
                "listener[0].websocket_idle_timeout: 7200 s out of range 30-3600 s",
            ),
            "header timeout": (
                document(listener={"header_timeout": "0"}),
                "listener[0].header_timeout: a duration must be greater than 0, got 0",
            ),
            "negative limit": (
                document(listener={"max_connections": "-1"}),
                "listener[0].max_connections: -1 out of range 0-10000000",
            ),
            "per ip type": (
                document(listener={"max_connections_per_ip": '"ten"'}),
                "listener[0].max_connections_per_ip: expected an integer, got a string",
            ),
            "rate type": (
                document(listener={"websocket_handshake_rate": '"5/s"'}),
                "listener[0].websocket_handshake_rate: expected a number of handshakes "
                "per second, got a string",
            ),
            "negative rate": (
                document(listener={"websocket_handshake_rate": "-1"}),
                "listener[0].websocket_handshake_rate: -1 out of range 0-10000000 (0: no limit)",
            ),
            "burst zero": (
                document(listener={"websocket_handshake_burst": "0"}),
                "listener[0].websocket_handshake_burst: 0 out of range 1-10000000",
            ),
            "listener allow": (
                document(listener={"allow": '["10.0.0.300/8"]'}),
                "listener[0].allow[0]: '10.0.0.300/8' is not a network in CIDR notation, "
                "like '10.0.0.0/8' or 'fd00::/8'",
            ),
            "rule deny": (
                document(rule={"deny": '"10.0.0.0/8"'}),
                "listener[0].rule[0].deny: expected an array of strings, got a string",
            ),
            "drain timeout": (
                "drain_timeout = -5\n" + document(),
                "drain_timeout: a duration must be greater than 0, got -5",
            ),
            "global limit": (
                "max_connections = true\n" + document(),
                "max_connections: expected an integer, got a boolean",
            ),
            "workers zero": ("workers = 0\n" + document(), "workers: 0 out of range 1-64"),
            "workers type": (
                'workers = "auto"\n' + document(),
                "workers: expected an integer, got a string",
            ),
            "ping interval": (
                document(listener={"websocket_ping_interval": '"often"'}),
                "listener[0].websocket_ping_interval: 'often' is not a duration; use seconds "
                'as a number, or a string like "5s", "250ms", "2m" or "1h"',
            ),
        }
        self.assertEqual(
            self.problem_table({name: text for name, (text, _) in cases.items()}),
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )


class RequestIdKeysTests(LoaderMixin, unittest.TestCase):
    def test_ids_are_on_and_trace_off_by_default(self):
        listener = self.load(document()).listeners[0]
        self.assertEqual(
            (listener.request_id_header, listener.request_id_from, listener.trace),
            ("X-Request-Id", "trusted", False),
        )

    def test_the_keys_are_read(self):
        listener = self.load(
            document(
                listener={
                    "request_id_header": '"X-Correlation-Id"',
                    "request_id_from": '"any"',
                    "trace": "true",
                }
            )
        ).listeners[0]
        self.assertEqual(
            (listener.request_id_header, listener.request_id_from, listener.trace),
            ("X-Correlation-Id", "any", True),
        )

    def test_an_empty_header_turns_ids_off(self):
        listener = self.load(document(listener={"request_id_header": '""'})).listeners[0]
        self.assertEqual(listener.request_id_header, "")

    def test_problems(self):
        cases = {
            "not a header name": (
                document(listener={"request_id_header": '"X Request"'}),
                "listener[0].request_id_header: 'X Request' is not a header name (letters, "
                "digits and '-'; \"\" turns IDs off)",
            ),
            "an underscore": (
                document(listener={"request_id_header": '"X_Request_Id"'}),
                "listener[0].request_id_header: 'X_Request_Id' is not a header name (letters, "
                "digits and '-'; \"\" turns IDs off)",
            ),
            "a header of the proxy": (
                document(listener={"request_id_header": '"X-Forwarded-For"'}),
                "listener[0].request_id_header: 'X-Forwarded-For' is a header the proxy reads "
                "or writes for itself",
            ),
            "source": (
                document(listener={"request_id_from": '"everyone"'}),
                "listener[0].request_id_from: unknown request ID source 'everyone'; must be "
                "one of: 'trusted', 'any'",
            ),
            "trace": (
                document(listener={"trace": '"yes"'}),
                "listener[0].trace: expected true or false, got a string",
            ),
        }
        for name, (text, expected) in cases.items():
            self.assertEqual(self.problems(text), [f"tap.conf: {expected}"], name)
