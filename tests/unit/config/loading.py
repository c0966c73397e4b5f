"""What the config tests share: a full document and its model, a small document, a loader."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from clbproxy.config import (
    BackendConfig,
    Config,
    ConfigError,
    DemoBackendConfig,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
    load_config,
)

REPOSITORY = Path(__file__).resolve().parents[3]

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
