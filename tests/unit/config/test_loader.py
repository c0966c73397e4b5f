"""Whole documents: the model they load into, top-level structure, warnings, defaults."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

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
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
    default_config_path,
    load_config,
    load_config_text,
)
from tests.unit.config.loading import (
    EXPECTED_FULL,
    FULL,
    REPOSITORY,
    TLS_REFUSED,
    LoaderMixin,
    document,
)


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


ETCD = "etcd:/clbproxy/config"


class TextDocumentTests(unittest.TestCase):
    """``load_config_text``: a document that is not a file (the fleet reads them from etcd)."""

    def test_a_text_loads_into_the_same_model_as_the_file(self) -> None:
        config = load_config_text(FULL, source=ETCD)
        self.assertEqual(config, attrs.evolve(EXPECTED_FULL, path=ETCD))

    def test_bytes_load_like_text(self) -> None:
        self.assertEqual(load_config_text(FULL.encode("utf-8"), source=ETCD).path, ETCD)

    def test_problems_name_the_source(self) -> None:
        error = self.assertRaises(
            ConfigError, load_config_text, document(listener={"bind": '"ssl:443"'}), ETCD
        )
        self.assertEqual(error.problems, [f"{ETCD}: listener[0].bind: 'ssl:443' {TLS_REFUSED}"])

    def test_a_syntax_error_names_the_source_and_the_position(self) -> None:
        error = self.assertRaises(ConfigError, load_config_text, "[[listener]]\nname = [", ETCD)
        self.assertEqual(len(error.problems), 1)
        self.assertTrue(error.problems[0].startswith(f"{ETCD}: line 2, column 9: "))

    def test_undecodable_bytes_name_the_source_and_the_position(self) -> None:
        error = self.assertRaises(ConfigError, load_config_text, b"# \xff\n", ETCD)
        self.assertEqual(error.problems, [f"{ETCD}: line 1, column 3: not valid UTF-8 (byte 0xff)"])

    def test_relative_file_names_resolve_against_the_base_directory(self) -> None:
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        with open(os.path.join(base, "token"), "w") as stream:
            stream.write("s3cret-token\n")
        config = load_config_text(
            document() + '[admin]\ntoken_file = "token"\n', source=ETCD, base_directory=base
        )
        self.assertEqual(config.admin.token_file, os.path.join(base, "token"))
        self.assertEqual(config.admin.token, "s3cret-token")

    def test_without_a_base_directory_relative_names_resolve_against_the_working_directory(
        self,
    ) -> None:
        error = self.assertRaises(
            ConfigError,
            load_config_text,
            document() + '[admin]\ntoken_file = "no-such-token"\n',
            ETCD,
        )
        missing = os.path.join(os.path.abspath(os.curdir), "no-such-token")
        self.assertEqual(
            error.problems,
            [f"{ETCD}: admin.token_file: cannot read {missing}: No such file or directory"],
        )
