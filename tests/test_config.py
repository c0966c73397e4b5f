"""Tests for :mod:`clbproxy.config`: tap.conf in, frozen model or every problem out."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

import clbproxy
from clbproxy.config import (
    AccessLogConfig,
    AdminConfig,
    BackendConfig,
    Config,
    ConfigError,
    DemoBackendConfig,
    FixedResponseConfig,
    HealthCheckConfig,
    ListenerConfig,
    PassiveConfig,
    PersistenceConfig,
    RedirectConfig,
    RewriteConfig,
    RuleConfig,
    TargetGroupConfig,
    default_config_path,
    load_config,
    parse_duration,
    parse_size,
)

REPOSITORY = Path(__file__).resolve().parent.parent

TLS_REFUSED = (
    'is not allowed: TLS comes from the listener\'s own settings (protocol = "https"); '
    "use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint"
)

FULL = """
[[demo_backend]]
name = "demo-a"
bind = "tcp:8181:interface=127.0.0.1"

[[listener]]
name = "web"
protocol = "http"
bind = "tcp:8080"
allowed_origins = ["https://Example.com", "http://localhost:8080", "https://example.com:443/"]
max_message_size = "16MiB"
session_buffer = "64KiB"
websocket_inflate_rate = "32MiB"
max_refusal_body = 1000
trusted_proxies = ["10.0.0.1/8", "fd00::/8"]
client_timeout = "2m"

  [[listener.rule]]
  target_group = "api"
  host = "API.example.com"
  path = "/v1"
  allowed_origins = []
  max_message_size = "1MB"

  [[listener.rule]]
  target_group = "web"

[[listener]]
name = "internal"
bind = "unix:/run/clbproxy.sock"

  [[listener.rule]]
  target_group = "web"
  host = "*.internal.example"

[target_group.api]
policy = "round_robin"
connect_timeout = "250ms"
response_timeout = 30
retries = 0
backends = [
  "10.0.0.5:9000",
  { address = "[2001:db8::1]:9000", weight = 0 },
  { address = "Backend.Example.com.:9001" },
]

[target_group.web]
backends = ["127.0.0.1:8181"]
"""

EXPECTED_FULL = Config(
    path="FILE",
    listeners=(
        ListenerConfig(
            name="web",
            bind="tcp:8080",
            protocol="http",
            rules=(
                RuleConfig(
                    target_group="api",
                    host="api.example.com",
                    path="/v1",
                    allowed_origins=(),
                    max_message_size=1_000_000,
                ),
                RuleConfig(target_group="web"),
            ),
            allowed_origins=("https://example.com", "http://localhost:8080"),
            max_message_size=16 * 1024 * 1024,
            session_buffer=64 * 1024,
            websocket_inflate_rate=32 * 1024 * 1024,
            max_refusal_body=1000,
            trusted_proxies=("10.0.0.0/8", "fd00::/8"),
            client_timeout=120.0,
        ),
        ListenerConfig(
            name="internal",
            bind="unix:/run/clbproxy.sock",
            rules=(RuleConfig(target_group="web", host="*.internal.example"),),
        ),
    ),
    target_groups=(
        TargetGroupConfig(
            name="api",
            backends=(
                BackendConfig("10.0.0.5", 9000),
                BackendConfig("2001:db8::1", 9000, weight=0),
                BackendConfig("backend.example.com", 9001),
            ),
            connect_timeout=0.25,
            response_timeout=30.0,
            retries=0,
        ),
        TargetGroupConfig(name="web", backends=(BackendConfig("127.0.0.1", 8181),)),
    ),
    demo_backends=(DemoBackendConfig(name="demo-a", bind="tcp:8181:interface=127.0.0.1"),),
)


def document(
    listener: Optional[dict[str, Optional[str]]] = None,
    rule: Optional[dict[str, Optional[str]]] = None,
    group: Optional[dict[str, Optional[str]]] = None,
    extra: str = "",
) -> str:
    """A small valid tap.conf with keys of its one listener, rule and group replaced.

    Values are TOML text; ``None`` removes the key.  ``extra`` is appended verbatim.
    """

    def lines(defaults: dict[str, str], changes: Optional[dict[str, Optional[str]]]) -> str:
        merged: dict[str, Optional[str]] = {**defaults, **(changes or {})}
        return "".join(f"{key} = {value}\n" for key, value in merged.items() if value is not None)

    return (
        "[[listener]]\n"
        + lines({"name": '"web"', "bind": '"tcp:8080"'}, listener)
        + "[[listener.rule]]\n"
        + lines({"target_group": '"demo"'}, rule)
        + "[target_group.demo]\n"
        + lines({"backends": '["127.0.0.1:8181"]'}, group)
        + extra
    )


class LoaderMixin:
    """Writes tap.conf text to a temporary file and loads it."""

    maxDiff = None

    def write(self, text: str | bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as stream:
            stream.write(text.encode("utf-8") if isinstance(text, str) else text)
        return path

    def load(self, text: str) -> Config:
        return load_config(self.write(text))

    def problems(self, text: str | bytes) -> list[str]:
        """The problem lines of a broken file, its temporary name shown as ``tap.conf``."""
        path = self.write(text)
        error = self.assertRaises(ConfigError, load_config, path)
        prefix = f"{path}: "
        for line in error.problems:
            self.assertTrue(line.startswith(prefix), line)
        return ["tap.conf: " + line[len(prefix) :] for line in error.problems]

    def problem_table(self, cases: dict[str, str]) -> dict[str, list[str]]:
        """Each case's problems, to compare whole tables at once."""
        return {name: self.problems(text) for name, text in cases.items()}


class ValidConfigTests(LoaderMixin, unittest.TestCase):
    def test_full_config_loads_into_the_model(self) -> None:
        path = self.write(FULL)
        self.assertEqual(load_config(path), attrs.evolve(EXPECTED_FULL, path=path))

    def test_absent_keys_take_the_model_defaults(self) -> None:
        config = self.load(document())
        self.assertEqual(
            config.listeners,
            (
                ListenerConfig(
                    name="web",
                    bind="tcp:8080",
                    rules=(RuleConfig(target_group="demo", host=None, path="/"),),
                    protocol="http",
                    allowed_origins=(),
                    max_message_size=0,
                    session_buffer=256 * 1024,
                    max_refusal_body=64 * 1024,
                    trusted_proxies=(),
                    client_timeout=60.0,
                ),
            ),
        )
        self.assertEqual(
            config.target_groups,
            (
                TargetGroupConfig(
                    name="demo",
                    backends=(BackendConfig("127.0.0.1", 8181, weight=10),),
                    policy="round_robin",
                    connect_timeout=5.0,
                    response_timeout=60.0,
                    retries=1,
                ),
            ),
        )
        self.assertEqual(config.demo_backends, ())
        self.assertIsNone(config.listeners[0].rules[0].allowed_origins)
        self.assertIsNone(config.listeners[0].rules[0].max_message_size)
        self.assertEqual(config.listeners[0].rules[0].relay, "frames")

    def test_rule_may_ask_for_tunnel_relay(self) -> None:
        config = load_config(self.write(document(rule={"relay": '"tunnel"'})))
        self.assertEqual(config.listeners[0].rules[0].relay, "tunnel")

    def test_deflate_is_end_to_end_unless_a_listener_asks_for_per_hop(self) -> None:
        config = load_config(self.write(document()))
        self.assertEqual(config.listeners[0].websocket_deflate, "end_to_end")
        config = load_config(self.write(document(listener={"websocket_deflate": '"per_hop"'})))
        self.assertEqual(config.listeners[0].websocket_deflate, "per_hop")

    def test_path_is_kept_as_given(self) -> None:
        path = self.write(document())
        relative = os.path.relpath(path)
        self.assertEqual(load_config(relative).path, relative)

    def test_shipped_configs_are_identical_and_load(self) -> None:
        top = REPOSITORY / "tap.conf"
        packaged = Path(clbproxy.__file__).parent / "tap.conf"
        self.assertEqual(top.read_bytes(), packaged.read_bytes())
        for path in (str(top), str(packaged)):
            config = load_config(path)
            self.assertEqual([listener.name for listener in config.listeners], ["web", "web-tls"])
            self.assertEqual([group.name for group in config.target_groups], ["demo"])
            self.assertEqual(
                [backend.address for backend in config.target_group("demo").backends],
                ["127.0.0.1:8181", "127.0.0.1:8182"],
            )
            self.assertEqual([demo.name for demo in config.demo_backends], ["demo-a", "demo-b"])

    def test_accepted_binds(self) -> None:
        binds = [
            "tcp:8080",
            "tcp:0",
            "tcp:port=8080:interface=127.0.0.1:backlog=10",
            "tcp6:8080:interface=\\\\:\\\\:1",
            "unix:/run/clbproxy.sock:mode=660:lockfile=0",
            "systemd:domain=INET:index=0",
            "systemd:domain=INET6:name=web",
            "haproxy:tcp:8080",
            "haproxy:systemd:domain=INET:index=3",
        ]
        loaded = {
            bind: self.load(document(listener={"bind": f'"{bind}"'})).listeners[0].bind
            for bind in binds
        }
        self.assertEqual(loaded, {bind: bind.replace("\\\\", "\\") for bind in binds})

    def test_rule_hosts_are_normalized(self) -> None:
        hosts = {
            '"Example.COM"': "example.com",
            '"example.com."': "example.com",
            '"*.Example.com"': "*.example.com",
            '"192.0.2.1"': "192.0.2.1",
            '"[2001:DB8::1]"': "2001:db8::1",
            '"2001:db8::1"': "2001:db8::1",
        }
        loaded = {
            text: self.load(document(rule={"host": text})).listeners[0].rules[0].host
            for text in hosts
        }
        self.assertEqual(loaded, hosts)

    def test_origins_are_normalized_as_browsers_send_them(self) -> None:
        config = self.load(
            document(
                listener={
                    "allowed_origins": '["HTTPS://Example.COM:443", "http://[::1]:8080", '
                    '"http://a.example:80/", "https://example.com"]'
                }
            )
        )
        self.assertEqual(
            config.listeners[0].allowed_origins,
            ("https://example.com", "http://[::1]:8080", "http://a.example"),
        )

    def test_same_path_on_different_hosts_is_fine(self) -> None:
        config = self.load(
            document(
                rule={"host": '"a.example"'},
                extra='[[listener.rule]]\ntarget_group = "demo"\nhost = "b.example"\n',
            )
        )
        self.assertEqual(
            [rule.host for rule in config.listeners[0].rules], ["a.example", "b.example"]
        )

    def test_unused_target_group_is_fine(self) -> None:
        config = self.load(document(extra='[target_group.spare]\nbackends = ["h:1"]\n'))
        self.assertEqual([group.name for group in config.target_groups], ["demo", "spare"])

    def test_the_model_is_frozen(self) -> None:
        config = self.load(document())
        with self.assertRaises(AttributeError):
            config.listeners[0].name = "other"  # type: ignore[misc]


class BindProblemTests(LoaderMixin, unittest.TestCase):
    def test_bind_problems(self) -> None:
        cases = {
            "ssl:443": f"'ssl:443' {TLS_REFUSED}",
            "haproxy:ssl:443:privateKey=k.pem": f"'haproxy:ssl:443:privateKey=k.pem' {TLS_REFUSED}",
            "tcp:abc": "'tcp:abc': port must be a number, got 'abc'",
            "tcp:70000": "'tcp:70000': port 70000 out of range 0-65535",
            "tcp:": "'tcp:': needs a port, like 'tcp:8080'",
            "tcp:8080:bogus=1": (
                "'tcp:8080:bogus=1': unknown option 'bogus' for tcp:; "
                "options: port, interface, backlog"
            ),
            "tcp:8080:intreface=127.0.0.1": (
                "'tcp:8080:intreface=127.0.0.1': unknown option 'intreface' for tcp: "
                "(did you mean 'interface'?)"
            ),
            "tcp:8080:backlog=x": (
                "'tcp:8080:backlog=x': backlog must be a positive number, got 'x'"
            ),
            "tcp:8080:interface=\\\\:\\\\:1": (
                "'tcp:8080:interface=\\\\:\\\\:1': interface '::1' is an IPv6 address; use tcp6:"
            ),
            "tcp:80:port=81": "'tcp:80:port=81': option 'port' given twice",
            "tcp:1:2:3:4": "'tcp:1:2:3:4': too many arguments; tcp: takes port, interface, backlog",
            "unix:": "'unix:': needs a socket path, like 'unix:/run/clbproxy.sock'",
            "unix:/s:mode=abc": (
                "'unix:/s:mode=abc': mode must be an octal number like 660, got 'abc'"
            ),
            "systemd:domain=INET": (
                "'systemd:domain=INET': give exactly one of index (a number) or name"
            ),
            "systemd:domain=IPX:index=0": (
                "'systemd:domain=IPX:index=0': domain must be INET, INET6 or UNIX, got 'IPX'"
            ),
            "haproxy:tcp:99999": "'haproxy:tcp:99999': port 99999 out of range 0-65535",
            "foo:1": (
                "'foo:1': unknown endpoint type 'foo'; "
                "use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint"
            ),
            "": "'': must not be empty; use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint",
        }
        found = self.problem_table(
            {bind: document(listener={"bind": f'"{bind}"'}) for bind in cases}
        )
        expected = {
            bind: [f"tap.conf: listener[0].bind: {message}"] for bind, message in cases.items()
        }
        self.assertEqual(found, expected)

    def test_unescaped_ipv6_interface_gets_a_hint(self) -> None:
        (problem,) = self.problems(document(listener={"bind": '"tcp6:8080:interface=::1"'}))
        self.assertTrue(
            problem.startswith("tap.conf: listener[0].bind: 'tcp6:8080:interface=::1':")
        )
        self.assertIn("escape the colons of an IPv6 address", problem)

    def test_demo_backend_bind_is_checked_like_a_listener_bind(self) -> None:
        problems = self.problems(
            document(extra='[[demo_backend]]\nname = "d"\nbind = "ssl:8443"\n')
        )
        self.assertEqual(problems, [f"tap.conf: demo_backend[0].bind: 'ssl:8443' {TLS_REFUSED}"])

    def test_identical_bind_strings_are_refused(self) -> None:
        problems = self.problems(
            document(
                extra=(
                    '[[listener]]\nname = "two"\nbind = "tcp:8080"\n'
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    '[[demo_backend]]\nname = "d"\nbind = "tcp:8080"\n'
                )
            )
        )
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[1].bind: duplicate bind string 'tcp:8080' (also listener[0])",
                "tap.conf: demo_backend[0].bind: duplicate bind string 'tcp:8080' "
                "(also listener[0])",
            ],
        )


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


class RuleProblemTests(LoaderMixin, unittest.TestCase):
    def test_rule_problems(self) -> None:
        cases = {
            "unknown group": (
                document(rule={"target_group": '"api"'}),
                "listener[0].rule[0].target_group: unknown target group 'api' (defined: demo)",
            ),
            "missing group": (
                document(rule={"target_group": None, "path": '"/"'}),
                "listener[0].rule[0]: missing required key 'target_group' "
                "(or 'fixed_response' or 'redirect')",
            ),
            "two actions": (
                document(rule={"redirect": '"https://x.test/"'}),
                "listener[0].rule[0]: give only one of 'target_group', 'redirect'",
            ),
            "bad host regex": (
                document(rule={"host": '"~ ^api[0-9+$"'}),
                "listener[0].rule[0].host: invalid regular expression '^api[0-9+$': "
                "unterminated character set at position 4",
            ),
            "bad path regex": (
                document(rule={"path": '"~*(unclosed"'}),
                "listener[0].rule[0].path: invalid regular expression '(unclosed': "
                "missing ), unterminated subpattern at position 0",
            ),
            "path regex repeating past the regex engine's limit": (
                document(rule={"path": '"~ a{4294967296}"'}),
                "listener[0].rule[0].path: invalid regular expression 'a{4294967296}': "
                "the repetition number is too large",
            ),
            "empty path regex": (
                document(rule={"path": '"~ "'}),
                "listener[0].rule[0].path: the regular expression after '~' is empty",
            ),
            "exact path without slash": (
                document(rule={"path": '"= login"'}),
                "listener[0].rule[0].path: 'login' must start with '/' "
                "(or a marker: '= ', '^~ ', '~ ', '~* ')",
            ),
            "rewrite with both": (
                document(rule={"rewrite": '{ strip_prefix = "/a", pattern = "b" }'}),
                "listener[0].rule[0].rewrite: give exactly one of 'strip_prefix' or 'pattern' "
                "(with 'replacement')",
            ),
            "rewrite bad group": (
                document(rule={"rewrite": '{ pattern = "^/a/(.*)", replacement = "/\\\\2" }'}),
                "listener[0].rule[0].rewrite.replacement: replacement '/\\\\2' refers to "
                "group 2, but the pattern has 1",
            ),
            "fixed status": (
                document(
                    rule={"target_group": None, "fixed_response": "{ status = 99 }"},
                ),
                "listener[0].rule[0].fixed_response.status: 99 out of range 200-599",
            ),
            "redirect status": (
                document(
                    rule={
                        "target_group": None,
                        "redirect": '{ location = "/x", status = 200 }',
                    },
                ),
                "listener[0].rule[0].redirect.status: unknown redirect status '200'; must be "
                "one of: '301', '302', '303', '307', '308'",
            ),
            "set framing header": (
                document(rule={"set_headers": '{ "Content-Length" = "5" }'}),
                "listener[0].rule[0].set_headers.Content-Length: 'Content-Length' describes one "
                "hop or the body; it cannot be set",
            ),
            "set header control char": (
                document(rule={"set_headers": '{ "X-A" = "a\\nb" }'}),
                "listener[0].rule[0].set_headers.X-A: 'a\\nb' is not a header value "
                "(no control characters)",
            ),
            "remove bad name": (
                document(rule={"remove_headers": '["X A"]'}),
                "listener[0].rule[0].remove_headers[0]: 'X A' is not a header name",
            ),
            "unknown key": (
                document(rule={"pth": '"/"'}),
                "listener[0].rule[0]: unknown key 'pth' (did you mean 'path'?)",
            ),
            "relative path": (
                document(rule={"path": '"api"'}),
                "listener[0].rule[0].path: 'api' must start with '/' "
                "(or a marker: '= ', '^~ ', '~ ', '~* ')",
            ),
            "query in path": (
                document(rule={"path": '"/api?x=1"'}),
                "listener[0].rule[0].path: '/api?x=1': a path has no query, fragment, "
                "spaces or control characters",
            ),
            "host with port": (
                document(rule={"host": '"example.com:8080"'}),
                "listener[0].rule[0].host: 'example.com:8080': a host must not include a port",
            ),
            "inner wildcard": (
                document(rule={"host": '"api.*.example.com"'}),
                "listener[0].rule[0].host: 'api.*.example.com': '*' is only allowed as the whole "
                "first or last label, like '*.example.com' or 'www.example.*'",
            ),
            "bad host": (
                document(rule={"host": '"exa_mple-.com"'}),
                "listener[0].rule[0].host: 'exa_mple-.com' is not a valid host name",
            ),
            "empty host": (
                document(rule={"host": '""'}),
                "listener[0].rule[0].host: must not be empty; leave host out to match any host",
            ),
            "wildcard IP": (
                document(rule={"host": '"*.10.0.0.1"'}),
                "listener[0].rule[0].host: '*.10.0.0.1': a wildcard needs a DNS name, "
                "like '*.example.com'",
            ),
            "bad IPv4": (
                document(rule={"host": '"10.0.0.300"'}),
                "listener[0].rule[0].host: '10.0.0.300' is not an IPv4 address",
            ),
            "size type": (
                document(rule={"max_message_size": "true"}),
                "listener[0].rule[0].max_message_size: expected a size (bytes as an integer, "
                'or a string like "64KiB", "16MiB", "512KB" or "10MB"), got a boolean',
            ),
            "relay mode": (
                document(rule={"relay": '"splice"'}),
                "listener[0].rule[0].relay: unknown relay mode 'splice'; must be one of: "
                "'frames', 'tunnel'",
            ),
            "deflate mode": (
                document(listener={"websocket_deflate": '"both"'}),
                "listener[0].websocket_deflate: unknown permessage-deflate mode 'both'; "
                "must be one of: 'end_to_end', 'per_hop'",
            ),
        }
        self.assertEqual(
            self.problem_table({name: text for name, (text, _) in cases.items()}),
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )

    def test_unknown_group_lists_defined_groups_or_none(self) -> None:
        problems = self.problems(
            "[[listener]]\nname = 'web'\nbind = 'tcp:1'\n[[listener.rule]]\ntarget_group = 'x'\n"
        )
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[0].rule[0].target_group: "
                "unknown target group 'x' (defined: none)"
            ],
        )

    def test_rules_with_the_same_host_and_path_are_refused(self) -> None:
        problems = self.problems(
            document(
                rule={"host": '"Example.com"', "path": '"/api"'},
                extra=(
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    'host = "example.com"\npath = "/api"\n'
                ),
            )
        )
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[0].rule[2]: rule[1] already matches any host and path '/'",
                "tap.conf: listener[0].rule[3]: rule[0] already matches host 'example.com' "
                "and path '/api'",
            ],
        )


class TargetGroupProblemTests(LoaderMixin, unittest.TestCase):
    def test_target_group_problems(self) -> None:
        cases = {
            "port range": (
                document(group={"backends": '["10.0.0.1:80", "10.0.0.2:70000"]'}),
                "target_group.demo.backends[1]: port 70000 out of range 1-65535",
            ),
            "port zero": (
                document(group={"backends": '["h:0"]'}),
                "target_group.demo.backends[0]: port 0 out of range 1-65535",
            ),
            "no port": (
                document(group={"backends": '["backend1"]'}),
                "target_group.demo.backends[0]: 'backend1' has no port; expected host:port",
            ),
            "port not a number": (
                document(group={"backends": '["h:http"]'}),
                "target_group.demo.backends[0]: port 'http' is not a number",
            ),
            "bare IPv6": (
                document(group={"backends": '["::1:80"]'}),
                "target_group.demo.backends[0]: '::1:80': put an IPv6 address in brackets, "
                "like '[::1]:8080'",
            ),
            "bad IPv6": (
                document(group={"backends": '["[::g]:80"]'}),
                "target_group.demo.backends[0]: '[::g]:80': '::g' is not an IPv6 address",
            ),
            "bad host": (
                document(group={"backends": '["-bad-.example:80"]'}),
                "target_group.demo.backends[0]: '-bad-.example' is not a valid host name",
            ),
            "table address": (
                document(group={"backends": '[{ address = "h:99999" }]'}),
                "target_group.demo.backends[0].address: port 99999 out of range 1-65535",
            ),
            "weight range": (
                document(group={"backends": '[{ address = "h:1", weight = 101 }]'}),
                "target_group.demo.backends[0].weight: 101 out of range 0-100",
            ),
            "weight type": (
                document(group={"backends": '[{ address = "h:1", weight = true }]'}),
                "target_group.demo.backends[0].weight: expected an integer, got a boolean",
            ),
            "backend key": (
                document(group={"backends": '[{ address = "h:1", wieght = 1 }]'}),
                "target_group.demo.backends[0]: unknown key 'wieght' (did you mean 'weight'?)",
            ),
            "backend type": (
                document(group={"backends": "[8080]"}),
                'target_group.demo.backends[0]: expected a "host:port" string or a table '
                '{ address = "host:port", weight = 10 }, got an integer',
            ),
            "duplicate": (
                document(group={"backends": '["H:1", { address = "h:1" }]'}),
                "target_group.demo.backends[1]: duplicate address 'h:1' (also backends[0])",
            ),
            "empty": (
                document(group={"backends": "[]"}),
                "target_group.demo.backends: needs at least one backend",
            ),
            "missing": (
                document(group={"backends": None, "retries": "1"}),
                "target_group.demo: missing required key 'backends'",
            ),
            "policy": (
                document(group={"policy": '"leastconn"'}),
                "target_group.demo.policy: unknown policy 'leastconn'; "
                "must be one of: 'round_robin', 'least_conn', 'consistent_hash', 'random_two'",
            ),
            "retries": (
                document(group={"retries": "11"}),
                "target_group.demo.retries: 11 out of range 0-10",
            ),
            "retries float": (
                document(group={"retries": "1.0"}),
                "target_group.demo.retries: expected an integer, got a float",
            ),
            "connect timeout": (
                document(group={"connect_timeout": '"5 days"'}),
                "target_group.demo.connect_timeout: '5 days' is not a duration; use seconds as "
                'a number, or a string like "5s", "250ms", "2m" or "1h"',
            ),
            "response timeout": (
                document(group={"response_timeout": "-1.5"}),
                "target_group.demo.response_timeout: a duration must be greater than 0, got -1.5",
            ),
            "unknown key": (
                document(group={"retry": "2"}),
                "target_group.demo: unknown key 'retry' (did you mean 'retries'?)",
            ),
            "pool max idle": (
                document(group={"http_pool_max_idle": "1001"}),
                "target_group.demo.http_pool_max_idle: 1001 out of range 0-1000",
            ),
            "pool max idle type": (
                document(group={"http_pool_max_idle": '"8"'}),
                "target_group.demo.http_pool_max_idle: expected an integer, got a string",
            ),
            "pool idle timeout": (
                document(group={"http_pool_idle_timeout": '"2h"'}),
                "target_group.demo.http_pool_idle_timeout: 7200 s out of range 0.001-3600 s",
            ),
            "pool key misspelt": (
                document(group={"http_pool_idle": "4"}),
                "target_group.demo: unknown key 'http_pool_idle' "
                "(did you mean 'http_pool_max_idle'?)",
            ),
        }
        self.assertEqual(
            self.problem_table({name: text for name, (text, _) in cases.items()}),
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )

    def test_invalid_group_name(self) -> None:
        problems = self.problems(document(extra='[target_group."my group"]\nbackends = ["h:1"]\n'))
        self.assertEqual(
            problems,
            [
                "tap.conf: target_group.\"my group\": invalid name 'my group': "
                "use letters, digits, '_', '.' and '-'"
            ],
        )

    def test_group_that_is_not_a_table(self) -> None:
        problems = self.problems(document(extra='[target_group]\nspare = "x"\n'))
        self.assertEqual(problems, ["tap.conf: target_group.spare: expected a table, got a string"])


class DocumentProblemTests(LoaderMixin, unittest.TestCase):
    def test_document_problems(self) -> None:
        cases = {
            "unknown top key": (
                document(extra="[[listeners]]\nname = 'x'\n"),
                "unknown key 'listeners' (did you mean 'listener'?)",
            ),
            "no listener": (
                "[target_group.demo]\nbackends = ['h:1']\n",
                "missing required key 'listener' (at least one [[listener]])",
            ),
            "listener table": (
                "[listener]\nname = 'web'\n",
                "listener: expected an array of tables ([[listener]]), got a table",
            ),
            "listener item": (
                "listener = [1]\n",
                "listener[0]: expected a table, got an integer",
            ),
            "empty listener array": (
                "listener = []\n",
                "listener: needs at least one [[listener]]",
            ),
            "demo backend": (
                document(extra="[[demo_backend]]\nbind = 'tcp:9'\n"),
                "demo_backend[0]: missing required key 'name'",
            ),
            "empty file": (
                "",
                "missing required key 'listener' (at least one [[listener]])",
            ),
        }
        found = self.problem_table({name: text for name, (text, _) in cases.items()})
        self.assertEqual(
            {name: lines[0] for name, lines in found.items()},
            {name: f"tap.conf: {line}" for name, (_, line) in cases.items()},
        )

    def test_target_group_array_is_refused(self) -> None:
        problems = self.problems("[[target_group]]\nname = 'x'\n")
        self.assertIn(
            "tap.conf: target_group: expected a table of target groups ([target_group.NAME]), "
            "got an array",
            problems,
        )

    def test_duplicate_demo_backend_names(self) -> None:
        problems = self.problems(
            document(
                extra=(
                    "[[demo_backend]]\nname = 'd'\nbind = 'tcp:9001'\n"
                    "[[demo_backend]]\nname = 'd'\nbind = 'tcp:9002'\n"
                )
            )
        )
        self.assertEqual(
            problems, ["tap.conf: demo_backend[1].name: duplicate name 'd' (also demo_backend[0])"]
        )

    def test_all_problems_are_reported_together(self) -> None:
        problems = self.problems(
            """
[[listener]]
name = "web"
bind = "ssl:443"
bnd = "x"
  [[listener.rule]]
  target_group = "api"

[[listener]]
name = "web"
protocol = "https"
bind = "tcp:8080"
  [[listener.rule]]
  target_group = "demo"
  path = "nope"

[target_group.demo]
retries = true
backends = ["h:1", "h:70000"]
"""
        )
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[0]: unknown key 'bnd' (did you mean 'bind'?)",
                f"tap.conf: listener[0].bind: 'ssl:443' {TLS_REFUSED}",
                "tap.conf: listener[0].rule[0].target_group: unknown target group 'api' "
                "(defined: demo)",
                "tap.conf: listener[1]: an HTTPS listener needs a [listener.tls] table with "
                "certificates (or self_signed = true)",
                "tap.conf: listener[1].rule[0].path: 'nope' must start with '/' "
                "(or a marker: '= ', '^~ ', '~ ', '~* ')",
                "tap.conf: target_group.demo.backends[1]: port 70000 out of range 1-65535",
                "tap.conf: target_group.demo.retries: expected an integer, got a boolean",
                "tap.conf: listener[1].name: duplicate name 'web' (also listener[0])",
            ],
        )


class FileProblemTests(LoaderMixin, unittest.TestCase):
    def test_toml_syntax_error_names_line_and_column(self) -> None:
        problems = self.problems('[[listener]]\nname = "web"\nbind = tcp:8080\n')
        self.assertEqual(problems, ["tap.conf: line 3, column 8: Invalid value"])

    def test_toml_error_at_end_of_file_names_the_last_position(self) -> None:
        problems = self.problems("[[listener]]\nname = [")
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("tap.conf: line 2, column 9: "), problems[0])

    def test_redeclared_table_is_named_readably(self) -> None:
        problems = self.problems("[target_group.demo]\n[target_group.demo]\n")
        self.assertEqual(
            problems, ["tap.conf: line 2, column 19: Cannot declare target_group.demo twice"]
        )

    def test_missing_file(self) -> None:
        path = self.mktemp()
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.problems, [f"{path}: cannot read: No such file or directory"])

    def test_directory_instead_of_file(self) -> None:
        path = self.mktemp()
        os.mkdir(path)
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.problems, [f"{path}: cannot read: Is a directory"])

    def test_not_utf8(self) -> None:
        problems = self.problems(b'[[listener]]\nname = "w\xe9b"\n')
        self.assertEqual(problems, ["tap.conf: line 2, column 10: not valid UTF-8 (byte 0xe9)"])

    def test_utf8_byte_order_mark_is_accepted(self) -> None:
        config = load_config(self.write(b"\xef\xbb\xbf" + document().encode()))
        self.assertEqual(config.listeners[0].name, "web")

    def test_too_deep_nesting(self) -> None:
        problems = self.problems("a = " + "[" * 5000 + "]" * 5000 + "\n")
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("tap.conf: "))

    def test_integer_too_long_for_python(self) -> None:
        """One line naming the file, whichever interpreter reads it.

        CPython refuses a 5,000-digit integer while parsing (its int-to-string
        limit), so the TOML is invalid there; PyPy has no such limit, parses it and
        then finds the value out of range for its key.
        """
        problems = self.problems(document(listener={"max_connections": "9" * 5000}))
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("tap.conf: "), problems[0])
        self.assertNotIn("\n", problems[0])

    def test_absurdly_long_integers_are_named_by_length(self) -> None:
        huge = "9" * 200
        problems = self.problems(
            document(
                listener={
                    "max_connections": huge,
                    "max_body_size": huge,
                    "client_timeout": huge,
                    "websocket_handshake_rate": huge,
                },
                group={"health_check": f"{{ interval = {huge} }}"},
            )
        )
        self.assertEqual(
            sorted(problems),
            [
                "tap.conf: listener[0].client_timeout: an integer of 200 digits is "
                "too large for a duration (at most 365 days)",
                "tap.conf: listener[0].max_body_size: an integer of 200 digits is "
                "too large for a size (at most 9223372036854775807)",
                "tap.conf: listener[0].max_connections: an integer of 200 digits out "
                "of range 0-10000000",
                "tap.conf: listener[0].websocket_handshake_rate: an integer of 200 "
                "digits out of range 0-10000000 (0: no limit)",
                "tap.conf: target_group.demo.health_check.interval: an integer of 200 "
                "digits is too large for a duration (at most 365 days)",
            ],
        )

    def test_size_beyond_a_file_offset_is_refused(self) -> None:
        problems = self.problems(document(listener={"max_body_size": '"9999999999GiB"'}))
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[0].max_body_size: '9999999999GiB' is too large for a "
                "size (at most 9223372036854775807 bytes)"
            ],
        )

    def test_error_message_is_every_problem_one_per_line(self) -> None:
        error = ConfigError(["a: x", "a: y"])
        self.assertEqual(str(error), "a: x\na: y")


class SizeAndDurationTests(unittest.TestCase):
    def test_sizes(self) -> None:
        cases = {
            0: 0,
            4096: 4096,
            "4096": 4096,
            "512B": 512,
            "64KiB": 64 * 1024,
            "64kib": 64 * 1024,
            "64 KiB": 64 * 1024,
            "16MiB": 16 * 1024**2,
            "1GiB": 1024**3,
            "512KB": 512_000,
            "10MB": 10_000_000,
            "2gb": 2_000_000_000,
        }
        self.assertEqual({value: parse_size(value) for value in cases}, cases)

    def test_invalid_sizes(self) -> None:
        cases: dict[Any, str] = {
            True: "expected a size",
            1.5: "expected a size",
            -1: "must not be negative",
            "1.5MiB": "is not a size",
            "10 parsecs": "is not a size",
            "16M": "is not a size",
            "": "is not a size",
            "9" * 40: "is too large",
        }
        self.assertEqual(
            {
                value: _error_fragment(parse_size, value, fragment)
                for value, fragment in cases.items()
            },
            {value: fragment for value, fragment in cases.items()},
        )

    def test_durations(self) -> None:
        cases = {
            5: 5.0,
            0.25: 0.25,
            "5s": 5.0,
            "5": 5.0,
            "1.5s": 1.5,
            "250ms": 0.25,
            "2m": 120.0,
            "1h": 3600.0,
            "2 M": 120.0,
        }
        self.assertEqual({value: parse_duration(value) for value in cases}, cases)

    def test_invalid_durations(self) -> None:
        cases: dict[Any, str] = {
            True: "expected a duration",
            0: "must be greater than 0",
            -1: "must be greater than 0",
            "0s": "must be greater than 0",
            "5d": "is not a duration",
            "s": "is not a duration",
            math.inf: "is too large",
            math.nan: "must be a number",
            10**400: "is too large",
        }
        self.assertEqual(
            {
                repr(value): _error_fragment(parse_duration, value, fragment)
                for value, fragment in cases.items()
            },
            {repr(value): fragment for value, fragment in cases.items()},
        )

    def test_toml_booleans_are_not_numbers(self) -> None:
        self.assertRaises(ValueError, parse_size, True)
        self.assertRaises(ValueError, parse_duration, True)


class DefaultConfigPathTests(unittest.TestCase):
    def test_shipped_copy_when_no_local_file(self) -> None:
        self.useDirectory(self.mktemp())
        shipped = os.path.join(os.path.dirname(os.path.abspath(clbproxy.__file__)), "tap.conf")
        self.assertEqual(default_config_path(), shipped)

    def test_local_tap_conf_wins(self) -> None:
        self.useDirectory(self.mktemp())
        Path("tap.conf").write_text(document())
        self.assertEqual(default_config_path(), "tap.conf")

    def useDirectory(self, path: str) -> None:
        os.makedirs(path)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(path)


def _error_fragment(function: Any, value: object, fragment: str) -> str:
    """``fragment`` if ``function(value)`` raises a ValueError containing it, else what happened."""
    try:
        result = function(value)
    except ValueError as e:
        return fragment if fragment in str(e) else str(e)
    return f"returned {result!r}"


def toml_text(document: dict[str, Any]) -> str:
    """A TOML document for ``document``: top-level keys, everything else inline."""
    return "".join(f"{_toml_key(key)} = {_toml_value(value)}\n" for key, value in document.items())


def _toml_key(key: str) -> str:
    return _toml_string(key)


def _toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


_KEYS = st.sampled_from(
    [
        "listener",
        "target_group",
        "demo_backend",
        "name",
        "protocol",
        "bind",
        "rule",
        "allowed_origins",
        "max_message_size",
        "session_buffer",
        "max_refusal_body",
        "trusted_proxies",
        "client_timeout",
        "host",
        "path",
        "backends",
        "address",
        "weight",
        "policy",
        "connect_timeout",
        "response_timeout",
        "retries",
        "demo",
    ]
) | st.text(max_size=5)

_SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from(
        [
            "tcp:8080",
            "ssl:443",
            "haproxy:tcp:1",
            "systemd:INET:0",
            "unix:/s",
            "h:1",
            "[::1]:80",
            "https://example.com",
            "*.example.com",
            "/",
            "64KiB",
            "5s",
            "http",
            "https",
            "round_robin",
            "demo",
            "10.0.0.0/8",
        ]
    )
    | st.text(max_size=12)
)

_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=12,
)


@st.composite
def _mutated_full_config(draw: st.DrawFn) -> dict[str, Any]:
    """The FULL example with a few values, anywhere in it, replaced or removed."""
    data = tomllib.loads(FULL)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        parent: Any = data
        while True:
            keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = parent[key]
            if isinstance(child, (dict, list)) and child and draw(st.booleans()):
                parent = child
                continue
            if isinstance(parent, dict) and draw(st.booleans()):
                del parent[key]
            else:
                parent[key] = draw(_VALUES)
            break
    return data


class PropertyTests(LoaderMixin, unittest.TestCase):
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(_KEYS, _VALUES, max_size=4))
    def test_any_toml_document_loads_or_raises_config_error(self, data: dict[str, Any]) -> None:
        text = toml_text(data)
        self.assertEqual(tomllib.loads(text), data)
        try:
            config = self.load(text)
        except ConfigError as e:
            self.assertTrue(e.problems)
            self.assertTrue(all("\n" not in line for line in e.problems), e.problems)
        else:
            self.assertIsInstance(config, Config)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_mutated_full_config())
    def test_damaged_config_loads_or_raises_config_error(self, data: dict[str, Any]) -> None:
        try:
            config = self.load(toml_text(data))
        except ConfigError as e:
            self.assertTrue(e.problems)
        else:
            self.assertIsInstance(config, Config)


BALANCING = """
[target_group.demo]
backends = [{ address = "10.0.0.1:80", weight = 0, max_conns = 100 }, "10.0.0.2:80"]
policy = "consistent_hash"
hash_key = "header:X-User"
fail_open = false
on_unhealthy = "close"
on_unhealthy_grace = "5s"

[target_group.demo.health_check]
type = "websocket"
path = "/health"
host = "app.example"
expect_status = ["2xx", "301-302", "404"]
expect_body = "ok"
interval = 10
timeout = "3s"
healthy_threshold = 2
unhealthy_threshold = 4
jitter = 0.2

[target_group.demo.persistence]
type = "cookie"
cookie_name = "sticky"
ttl = "10m"
cookie_path = "/app"
secure = true
http_only = false
same_site = "None"
secret = "0123456789abcdef"

[target_group.demo.passive]
failures = 5
ejection = "30s"
max_ejection = "10m"
count_5xx = true
"""


def balancing_document(group_tables: str) -> str:
    return document().split("[target_group.demo]")[0] + group_tables


class TargetGroupBalancingTests(LoaderMixin, unittest.TestCase):
    def test_balancing_persistence_and_health_keys_load_into_the_model(self) -> None:
        group = self.load(balancing_document(BALANCING)).target_group("demo")
        self.assertEqual(
            group,
            TargetGroupConfig(
                name="demo",
                backends=(
                    BackendConfig("10.0.0.1", 80, weight=0, max_conns=100),
                    BackendConfig("10.0.0.2", 80),
                ),
                policy="consistent_hash",
                hash_key="header:x-user",
                fail_open=False,
                on_unhealthy="close",
                on_unhealthy_grace=5.0,
                health_check=HealthCheckConfig(
                    enabled=True,
                    type="websocket",
                    path="/health",
                    host="app.example",
                    expect_status=((200, 299), (301, 302), (404, 404)),
                    expect_body="ok",
                    interval=10.0,
                    timeout=3.0,
                    healthy_threshold=2,
                    unhealthy_threshold=4,
                    jitter=0.2,
                ),
                persistence=PersistenceConfig(
                    type="cookie",
                    cookie_name="sticky",
                    ttl=600.0,
                    cookie_path="/app",
                    secure=True,
                    http_only=False,
                    same_site="None",
                    secret="0123456789abcdef",
                ),
                passive=PassiveConfig(
                    failures=5, ejection=30.0, max_ejection=600.0, count_5xx=True
                ),
            ),
        )

    def test_defaults_follow_the_cloud_balancer(self) -> None:
        group = self.load(document()).target_group("demo")
        self.assertEqual(
            (group.policy, group.fail_open, group.on_unhealthy, group.health_check.enabled),
            ("round_robin", True, "keep", False),
        )
        check = (
            self.load(
                balancing_document(
                    '[target_group.demo]\nbackends = ["h:1"]\n[target_group.demo.health_check]\n'
                )
            )
            .target_group("demo")
            .health_check
        )
        self.assertEqual(
            (check.enabled, check.type, check.interval, check.timeout),
            (True, "http", 5.0, 2.0),
        )
        self.assertEqual((check.healthy_threshold, check.unhealthy_threshold), (3, 3))

    def test_balancing_problems(self) -> None:
        def group(extra: str, table: str = "") -> str:
            text = '[target_group.demo]\nbackends = ["h:1"]\n' + extra
            if table:
                text += table
            return balancing_document(text)

        hc = "[target_group.demo.health_check]\n"
        pers = "[target_group.demo.persistence]\n"
        cases = {
            "hash key": (
                group('hash_key = "body:x"\n'),
                "target_group.demo.hash_key: 'body:x' is not a hash key; use 'source_ip', "
                "'header:NAME', 'cookie:NAME' or 'query:NAME'",
            ),
            "fail_open": (
                group('fail_open = "yes"\n'),
                "target_group.demo.fail_open: expected true or false, got a string",
            ),
            "on_unhealthy": (
                group('on_unhealthy = "drop"\n'),
                "target_group.demo.on_unhealthy: unknown action 'drop'; "
                "must be one of: 'keep', 'close'",
            ),
            "max_conns": (
                group("", "").replace('["h:1"]', '[{ address = "h:1", max_conns = -1 }]'),
                "target_group.demo.backends[0].max_conns: -1 out of range 0-10000000",
            ),
            "interval": (
                group("", hc + "interval = 1\n"),
                "target_group.demo.health_check.interval: 1 s out of range 2-300 s",
            ),
            "timeout": (
                group("", hc + "timeout = 61\n"),
                "target_group.demo.health_check.timeout: 61 s out of range 2-60 s",
            ),
            "timeout over interval": (
                group("", hc + "timeout = 10\ninterval = 5\n"),
                "target_group.demo.health_check.timeout: 10 s is longer than the interval (5 s)",
            ),
            "threshold": (
                group("", hc + "healthy_threshold = 1\n"),
                "target_group.demo.health_check.healthy_threshold: 1 out of range 2-10",
            ),
            "check type": (
                group("", hc + 'type = "udp"\n'),
                "target_group.demo.health_check.type: unknown health check type 'udp'; "
                "must be one of: 'http', 'https', 'tcp', 'websocket'",
            ),
            "status": (
                group("", hc + 'expect_status = ["200-199"]\n'),
                "target_group.demo.health_check.expect_status[0]: '200-199' is not a status "
                "range; use '200', '200-399' or '2xx'",
            ),
            "jitter": (
                group("", hc + "jitter = 0.9\n"),
                "target_group.demo.health_check.jitter: 0.9 out of range 0-0.5",
            ),
            "check key": (
                group("", hc + "intervall = 5\n"),
                "target_group.demo.health_check: unknown key 'intervall' "
                "(did you mean 'interval'?)",
            ),
            "persistence type": (
                group("", pers + 'type = "url"\n'),
                "target_group.demo.persistence.type: unknown persistence type 'url'; "
                "must be one of: 'none', 'cookie', 'source_ip'",
            ),
            "persistence without type": (
                group("", pers + "ttl = 60\n"),
                "target_group.demo.persistence: missing required key 'type' "
                "('cookie', 'source_ip' or 'none')",
            ),
            "ttl": (
                group("", pers + 'type = "cookie"\nttl = 10\n'),
                "target_group.demo.persistence.ttl: 10 s out of range 30-3600 s",
            ),
            "cookie name": (
                group("", pers + 'type = "cookie"\ncookie_name = "a b"\n'),
                "target_group.demo.persistence.cookie_name: 'a b' is not a cookie name",
            ),
            "samesite none": (
                group("", pers + 'type = "cookie"\nsame_site = "None"\n'),
                "target_group.demo.persistence: same_site = 'None' needs secure = true "
                "(browsers require it)",
            ),
            "short secret": (
                group("", pers + 'type = "cookie"\nsecret = "abc"\n'),
                "target_group.demo.persistence.secret: must be at least 16 characters",
            ),
            "ejection cap": (
                group("", "[target_group.demo.passive]\nejection = 60\nmax_ejection = 30\n"),
                "target_group.demo.passive.max_ejection: 30 s is shorter than ejection (60 s)",
            ),
            "passive failures": (
                group("", "[target_group.demo.passive]\nfailures = 0\n"),
                "target_group.demo.passive.failures: 0 out of range 1-100",
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


class ObservabilityConfigTests(LoaderMixin, unittest.TestCase):
    def test_access_log_and_admin_load_with_defaults(self) -> None:
        config = self.load(
            document(listener={"access_log": '{ path = "-", format = "json" }'})
            + '[access_log]\npath = "/var/log/clb.log"\n[admin]\n'
        )
        self.assertEqual(config.access_log, AccessLogConfig(path="/var/log/clb.log"))
        self.assertEqual(config.listeners[0].access_log, AccessLogConfig("-", "json"))
        self.assertEqual(config.admin, AdminConfig("tcp:9090:interface=127.0.0.1", "/metrics"))

    def test_without_tables_there_is_no_access_log_nor_admin(self) -> None:
        config = self.load(document())
        self.assertIsNone(config.access_log)
        self.assertIsNone(config.admin)

    def test_observability_problems(self) -> None:
        cases = {
            "no path": (
                "[access_log]\n",
                "access_log: missing required key 'path' (a file, or \"-\" for stdout)",
            ),
            "empty path": (
                '[access_log]\npath = ""\n',
                'access_log.path: must not be empty; use "-" for stdout',
            ),
            "format": (
                '[access_log]\npath = "-"\nformat = "xml"\n',
                "access_log.format: unknown format 'xml'; must be one of: 'plain', 'json'",
            ),
            "unknown key": (
                '[admin]\nbnd = "tcp:1"\n',
                "admin: unknown key 'bnd' (did you mean 'bind'?)",
            ),
            "bind": ('[admin]\nbind = "ssl:443"\n', "admin.bind: 'ssl:443' " + TLS_REFUSED),
            "metrics path": (
                '[admin]\nmetrics_path = "/api/m"\n',
                "admin.metrics_path: '/api/m' must be a path like '/metrics' "
                "(not '/' or under '/api/', no query or spaces)",
            ),
            "same bind": (
                '[admin]\nbind = "tcp:8080"\n',
                "admin.bind: duplicate bind string 'tcp:8080' (also listener[0])",
            ),
        }
        found = self.problem_table({name: document() + text for name, (text, _) in cases.items()})
        self.assertEqual(
            {name: lines for name, lines in found.items()},
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )

    def test_listener_access_log_problems_name_the_listener(self) -> None:
        problems = self.problems(document(listener={"access_log": '"stdout"'}))
        self.assertEqual(
            problems, ["tap.conf: listener[0].access_log: expected a table, got a string"]
        )

    def test_admin_that_is_not_a_table(self) -> None:
        problems = self.problems('admin = "on"\n' + document())
        self.assertEqual(problems, ["tap.conf: admin: expected a table, got a string"])


class AdminAccessConfigTests(LoaderMixin, unittest.TestCase):
    """``[admin] allowed_hosts`` and ``token_file``: who may use the admin listener."""

    def token_file(self, content: bytes) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as stream:
            stream.write(content)
        return path

    def test_allowed_hosts_are_kept_lower_case_without_a_final_dot(self) -> None:
        config = self.load(
            document() + '[admin]\nallowed_hosts = ["Admin.Example.NET", "lb-1.internal."]\n'
        )
        self.assertEqual(config.admin.allowed_hosts, ("admin.example.net", "lb-1.internal"))

    def test_the_token_is_read_from_token_file_without_surrounding_whitespace(self) -> None:
        path = self.token_file(b"  0123abcdef-._~+/==\n")
        config = self.load(document() + f'[admin]\ntoken_file = "{path}"\n')
        self.assertEqual(config.admin.token_file, path)
        self.assertEqual(config.admin.token, "0123abcdef-._~+/==")

    def test_a_relative_token_file_is_relative_to_the_config_file(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "admin.token"), "w") as stream:
            stream.write("t0ken\n")
        config_path = os.path.join(directory, "tap.conf")
        with open(config_path, "w") as stream:
            stream.write(document() + '[admin]\ntoken_file = "admin.token"\n')
        self.assertEqual(load_config(config_path).admin.token, "t0ken")

    def test_the_token_is_not_shown_in_the_config_repr(self) -> None:
        path = self.token_file(b"very-secret\n")
        config = self.load(document() + f'[admin]\ntoken_file = "{path}"\n')
        self.assertNotIn("very-secret", repr(config))
        self.assertIn(path, repr(config))

    def test_without_token_file_there_is_no_token(self) -> None:
        self.assertIsNone(self.load(document() + "[admin]\n").admin.token)

    def test_admin_access_problems_name_the_key(self) -> None:
        missing = os.path.abspath(os.path.join(self.mktemp(), "none"))
        empty = self.token_file(b"")
        blank = self.token_file(b" \n\n")
        two = self.token_file(b"one two\n")
        binary = self.token_file(b"t\xc3\xb6ken")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cases = {
            "host with port": (
                'allowed_hosts = ["admin.example.net:8443"]',
                "admin.allowed_hosts[0]: 'admin.example.net:8443' is not a host name like "
                "'admin.example.net' (no port, no scheme)",
            ),
            "url": (
                'allowed_hosts = ["https://admin.example.net"]',
                "admin.allowed_hosts[0]: 'https://admin.example.net' is not a host name like "
                "'admin.example.net' (no port, no scheme)",
            ),
            "empty host": (
                'allowed_hosts = [""]',
                "admin.allowed_hosts[0]: '' is not a host name like "
                "'admin.example.net' (no port, no scheme)",
            ),
            "not a list": (
                'allowed_hosts = "admin.example.net"',
                "admin.allowed_hosts: expected an array of strings, got a string",
            ),
            "missing token file": (
                f'token_file = "{missing}"',
                f"admin.token_file: cannot read {missing}: No such file or directory",
            ),
            "a directory": (
                f'token_file = "{directory}"',
                f"admin.token_file: cannot read {directory}: Is a directory",
            ),
            "empty token file": (
                f'token_file = "{empty}"',
                f"admin.token_file: {empty} is empty; put the token on its first line",
            ),
            "blank token file": (
                f'token_file = "{blank}"',
                f"admin.token_file: {blank} is empty; put the token on its first line",
            ),
            "empty token file name": ('token_file = ""', "admin.token_file: must not be empty"),
        }
        for name, path in (("two words", two), ("not ascii", binary)):
            cases[name] = (
                f'token_file = "{path}"',
                f"admin.token_file: {path} must hold one token of at most 4096 letters, digits "
                "and -._~+/ (like the output of 'openssl rand -hex 32')",
            )
        found = self.problem_table(
            {name: document() + f"[admin]\n{text}\n" for name, (text, _) in cases.items()}
        )
        self.assertEqual(found, {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()})

    def test_an_unreadable_token_file_is_a_problem(self) -> None:
        if os.geteuid() == 0:
            raise unittest.SkipTest("root reads any file")
        path = self.token_file(b"t0ken\n")
        os.chmod(path, 0)
        self.assertEqual(
            self.problems(document() + f'[admin]\ntoken_file = "{path}"\n'),
            [f"tap.conf: admin.token_file: cannot read {path}: Permission denied"],
        )


class ExposureWarningTests(LoaderMixin, unittest.TestCase):
    """Settings that hand control to strangers: loaded, but warned about (file and key)."""

    def warnings(self, text: str) -> list[str]:
        path = self.write(text)
        return [line.replace(path, "tap.conf") for line in load_config(path).warnings]

    def test_admin_on_every_interface_is_warned_about(self) -> None:
        for bind in (
            "tcp:9090",
            "tcp:port=9090",
            "tcp:9090:interface=0.0.0.0",
            "tcp6:9090",
            r"tcp6:9090:interface=\\:\\:",
            "haproxy:tcp:9090",
        ):
            self.assertEqual(
                self.warnings(document() + f'[admin]\nbind = "{bind}"\n'),
                [
                    f"tap.conf: admin.bind: {bind.replace(chr(92) * 2, chr(92))!r} listens on "
                    "every interface: whoever reaches it can read the status and drain, disable "
                    "or reweight backends; bind 127.0.0.1 or a management address (and consider "
                    "admin.token_file)"
                ],
            )

    def test_admin_on_one_address_or_a_unix_socket_is_not_warned_about(self) -> None:
        for bind in (
            "tcp:9090:interface=127.0.0.1",
            "tcp:9090:interface=10.0.0.5",
            r"tcp6:9090:interface=\\:\\:1",
            "unix:/run/clbproxy-admin.sock",
        ):
            self.assertEqual(self.warnings(document() + f'[admin]\nbind = "{bind}"\n'), [], bind)

    def test_trusted_proxies_covering_every_address_are_warned_about(self) -> None:
        text = document(
            listener={"trusted_proxies": '["10.0.0.0/8", "0.0.0.0/0", "::/0", "2000::/3"]'}
        )
        self.assertEqual(
            self.warnings(text),
            [
                f"tap.conf: listener[0].trusted_proxies: listener 'web': {cidr} trusts {span}: "
                "any client there can claim any address in X-Forwarded-For (and is exempt from "
                "max_connections_per_ip); list only your own proxies' addresses"
                for cidr, span in (
                    ("0.0.0.0/0", "every address"),
                    ("::/0", "every address"),
                    ("2000::/3", "a very wide range"),
                )
            ],
        )

    def test_private_ranges_in_trusted_proxies_are_not_warned_about(self) -> None:
        text = document(
            listener={"trusted_proxies": '["10.0.0.0/8", "172.16.0.0/12", "fc00::/7", "127.0.0.1"]'}
        )
        self.assertEqual(self.warnings(text), [])

    def test_ranges_wider_than_a_slash_8_are_warned_about(self) -> None:
        (warning,) = self.warnings(document(listener={"trusted_proxies": '["0.0.0.0/1"]'}))
        self.assertIn("0.0.0.0/1 trusts a very wide range", warning)


class TLSKeyProblemTests(LoaderMixin, unittest.TestCase):
    def test_tls_key_problems(self) -> None:
        https = {"protocol": '"https"'}
        cases = {
            "tls on http listener": (
                document(listener={"tls": "{ self_signed = true }"}),
                'listener[0].tls: only HTTPS listeners have TLS settings (protocol = "https")',
            ),
            "neither certificates nor self_signed": (
                document(listener={**https, "tls": "{ }"}),
                "listener[0].tls: give either certificates = [...] or self_signed = true",
            ),
            "min version": (
                document(listener={**https, "tls": '{ self_signed = true, min_version = "1.1" }'}),
                "listener[0].tls.min_version: unknown TLS version '1.1'; must be one of: "
                "'1.2', '1.3'",
            ),
            "client_auth without client_ca": (
                document(
                    listener={**https, "tls": '{ self_signed = true, client_auth = "optional" }'}
                ),
                "listener[0].tls.client_auth: needs client_ca, the CAs that sign client "
                "certificates",
            ),
            "certificate without key": (
                document(listener={**https, "tls": '{ certificates = [{ cert = "a.pem" }] }'}),
                "listener[0].tls.certificates[0]: missing required key 'key'",
            ),
            "unknown tls key": (
                document(listener={**https, "tls": "{ self_signed = true, tickets = false }"}),
                "listener[0].tls: unknown key 'tickets' (did you mean 'session_tickets'?)",
            ),
            "redirect on https": (
                document(
                    listener={**https, "tls": "{ self_signed = true }", "redirect_to_https": "true"}
                ),
                "listener[0].redirect_to_https: is for HTTP listeners; this listener is "
                "already HTTPS",
            ),
            "https port": (
                document(listener={"https_port": "0"}),
                "listener[0].https_port: 0 out of range 1-65535",
            ),
            "backend scheme": (
                document(group={"scheme": '"ftp"'}),
                "target_group.demo.scheme: unknown scheme 'ftp'; must be one of: 'http', 'ws', "
                "'https', 'wss'",
            ),
            "verify without tls": (
                document(group={"verify": "false"}),
                'target_group.demo.verify: only applies with scheme = "wss" or "https"',
            ),
        }
        found = self.problem_table({name: text for name, (text, _) in cases.items()})
        expected = {name: [f"tap.conf: {message}"] for name, (_, message) in cases.items()}
        self.assertEqual(found, expected)

    def test_redirect_listener_needs_no_rules(self) -> None:
        config = self.load(
            document(listener={"redirect_to_https": "true", "https_port": "8443"}).replace(
                '[[listener.rule]]\ntarget_group = "demo"\n', ""
            )
        )
        listener = config.listeners[0]
        self.assertEqual(
            (listener.redirect_to_https, listener.https_port, listener.rules), (True, 8443, ())
        )

    def test_strict_sni_is_off_unless_asked_for(self) -> None:
        https = {"protocol": '"https"'}
        plain = self.load(document(listener={**https, "tls": "{ self_signed = true }"}))
        strict = self.load(
            document(listener={**https, "tls": "{ self_signed = true, strict_sni = true }"})
        )
        self.assertEqual(
            (plain.listeners[0].tls.strict_sni, strict.listeners[0].tls.strict_sni), (False, True)
        )
        self.assertEqual(
            self.problems(
                document(listener={**https, "tls": '{ self_signed = true, strict_sni = "yes" }'})
            ),
            ["tap.conf: listener[0].tls.strict_sni: expected true or false, got a string"],
        )

    def test_http_pool_settings_model(self) -> None:
        default = self.load(document()).target_groups[0]
        group = self.load(
            document(group={"http_pool_max_idle": "0", "http_pool_idle_timeout": '"90s"'})
        ).target_groups[0]
        self.assertEqual(
            [
                (default.http_pool_max_idle, default.http_pool_idle_timeout),
                (group.http_pool_max_idle, group.http_pool_idle_timeout),
            ],
            [(8, 60.0), (0, 90.0)],
        )

    def test_wss_target_group_model(self) -> None:
        config = self.load(
            document(group={"scheme": '"wss"', "verify": "false", "server_name": '"API.internal"'})
        )
        group = config.target_groups[0]
        self.assertEqual(
            (group.tls, group.verify, group.server_name), (True, False, "api.internal")
        )
