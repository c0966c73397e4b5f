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
    BackendConfig,
    Config,
    ConfigError,
    DemoBackendConfig,
    ListenerConfig,
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
            self.assertEqual([listener.name for listener in config.listeners], ["web"])
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
            "https": (
                document(listener={"protocol": '"https"'}),
                "listener[0].protocol: HTTPS listeners are not available yet in this version; "
                'use "http"',
            ),
            "protocol": (
                document(listener={"protocol": '"ftp"'}),
                "listener[0].protocol: unknown protocol 'ftp'; must be one of: 'http'",
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


class RuleProblemTests(LoaderMixin, unittest.TestCase):
    def test_rule_problems(self) -> None:
        cases = {
            "unknown group": (
                document(rule={"target_group": '"api"'}),
                "listener[0].rule[0].target_group: unknown target group 'api' (defined: demo)",
            ),
            "missing group": (
                document(rule={"target_group": None, "path": '"/"'}),
                "listener[0].rule[0]: missing required key 'target_group'",
            ),
            "unknown key": (
                document(rule={"pth": '"/"'}),
                "listener[0].rule[0]: unknown key 'pth' (did you mean 'path'?)",
            ),
            "relative path": (
                document(rule={"path": '"api"'}),
                "listener[0].rule[0].path: 'api' must start with '/'",
            ),
            "query in path": (
                document(rule={"path": '"/api?x=1"'}),
                "listener[0].rule[0].path: '/api?x=1': a path prefix has no query, fragment, "
                "spaces or control characters",
            ),
            "host with port": (
                document(rule={"host": '"example.com:8080"'}),
                "listener[0].rule[0].host: 'example.com:8080': a host must not include a port",
            ),
            "inner wildcard": (
                document(rule={"host": '"api.*.example.com"'}),
                "listener[0].rule[0].host: 'api.*.example.com': '*' is only allowed as the whole "
                "first label, like '*.example.com'",
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
                document(group={"policy": '"least_conn"'}),
                "target_group.demo.policy: unknown policy 'least_conn'; "
                "must be one of: 'round_robin'",
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
                "tap.conf: listener[1].protocol: HTTPS listeners are not available yet in this "
                'version; use "http"',
                "tap.conf: listener[1].rule[0].path: 'nope' must start with '/'",
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
        problems = self.problems("a = " + "9" * 5000 + "\n")
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("tap.conf: not valid TOML: "), problems[0])

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
