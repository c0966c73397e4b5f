"""A proxy on 127.0.0.1 with its observability (access log, metrics, admin listener) running."""

from __future__ import annotations

import json
import re

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task
from twisted.web.client import HTTPConnectionPool

from clbproxy.config import (
    AccessLogConfig,
    AdminConfig,
    BackendConfig,
    Config,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
    load_config,
)
from clbproxy.listener.service import listener_service
from clbproxy.observability.service import Observability
from clbproxy.ops.reload import Reloader
from clbproxy.ops.services import build_service
from clbproxy.upstream.balancer import TargetGroup
from tests.support.network import Listening, abort_sessions

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PLAIN = re.compile(
    rf"^(?P<client>\S+) - - \[(?P<time>[^\]]+)\] (?P<request>{_QUOTED}) (?P<status>\d+) "
    rf"(?P<bytes_out>\d+) (?P<referer>{_QUOTED}) (?P<user_agent>{_QUOTED}) (?P<extra>.*)$"
)
_PAIR = re.compile(rf'(\w+)=({_QUOTED}|[^\s"]+)(?:\s|$)')


def parse_plain(line: str) -> dict:
    """A plain access log line back into its fields, as strings (``-`` stays ``-``)."""
    match = _PLAIN.match(line.rstrip("\n"))
    if match is None:
        raise ValueError(f"not a plain access log line: {line!r}")
    fields = match.groupdict()
    for name in ("request", "referer", "user_agent"):
        fields[name] = json.loads(fields[name])
    extra = fields.pop("extra")
    for key, value in _PAIR.findall(extra):
        fields[key] = json.loads(value) if value.startswith('"') else value
    consumed = "".join(f"{k}={v} " for k, v in _PAIR.findall(extra)).strip()
    if consumed != extra:
        raise ValueError(f"unparsed fields in {extra!r}")
    return fields


class Observed(Listening):
    """A listener named ``web`` with access log and admin listener, over given backends."""

    @defer.inlineCallbacks
    def start(self, backend_ports, *, log_path, log_format="plain", rules=None, **listener_options):
        group = TargetGroupConfig(
            name="pool",
            backends=tuple(BackendConfig("127.0.0.1", port) for port in backend_ports),
        )
        listener = ListenerConfig(
            name="web",
            bind=listener_options.pop("bind", "tcp:0:interface=127.0.0.1"),
            rules=rules or (RuleConfig(target_group="pool"),),
            **listener_options,
        )
        config = Config(
            path="test.conf",
            listeners=(listener,),
            target_groups=(group,),
            access_log=AccessLogConfig(path=log_path, format=log_format),
            admin=AdminConfig(bind="tcp:0:interface=127.0.0.1"),
        )
        self.groups = {g.name: TargetGroup(g, reactor) for g in config.target_groups}
        self.observability = Observability(config, self.groups, reactor)
        self.observability.startService()
        self.testcase.addCleanup(self.observability.stopService)
        service = listener_service(
            listener, self.groups, reactor, access=self.observability.access_events
        )
        self.observability.watch_listener(listener, service)
        self.service = service
        self.port = yield self._start(service)
        self.admin_port = yield self._start(self.observability.admin_service())
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.pool = pool
        return self.port

    @defer.inlineCallbacks
    def _start(self, service):
        ready = defer.Deferred()

        def listening(port):
            ready.callback(port)
            return port

        service.startService()
        service._waitingForPort.addCallback(listening)
        self.testcase.addCleanup(service.stopService)
        port = yield ready
        return port.getHost().port

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"


class ProductionProxy(Listening):
    """The whole proxy built from a tap.conf file by ``build_service``, as twistd builds it
    (health checks, global connection gate and reload included), on this reactor.

    The file needs an ``[admin]`` table (on an ephemeral port of 127.0.0.1).
    """

    def __init__(self, testcase):
        super().__init__(testcase)
        self.path = testcase.mktemp()
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    def write(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    @defer.inlineCallbacks
    def start(self, text: str):
        self.write(text)
        self.root = build_service(load_config(self.path), reactor)
        self.root.privilegedStartService()
        self.root.startService()
        self.testcase.addCleanup(self._stop)
        self.reloader = Reloader(self.path, self.root, reactor)
        ready = defer.Deferred()

        def listening(port):
            ready.callback(port)
            return port

        self.root.getServiceNamed("admin")._waitingForPort.addCallback(listening)
        admin = yield ready
        self.admin_port = admin.getHost().port

    def port(self, name: str = "web") -> int:
        return self.root.getServiceNamed(f"listener:{name}").limiter.port.getHost().port

    def _stop(self):
        abort_sessions(self.root.listener_services())
        return self.root.stopService()

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"


@defer.inlineCallbacks
def wait_for_lines(path: str, count: int, timeout: float = 5.0):
    """The first ``count`` lines of the file at ``path``, once they are there."""
    waited = 0.0
    while True:
        try:
            with open(path, encoding="utf-8") as stream:
                lines = stream.readlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= count:
            return lines
        if waited > timeout:
            raise AssertionError(f"{path} has {len(lines)} lines, expected {count}: {lines}")
        yield task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


def samples(text: str) -> dict:
    """``{(name, frozenset(labels.items())): value}`` of a Prometheus text page."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@defer.inlineCallbacks
def scrape(proxy, path: str = "/metrics"):
    """The samples of one real HTTP GET of ``proxy``'s metrics page (its ``admin_url``)."""
    response = yield treq.get(proxy.admin_url(path), pool=proxy.pool)
    text = yield response.text()
    if response.code != 200:
        raise AssertionError(f"GET {path}: {response.code} {text!r}")
    content_type = response.headers.getRawHeaders(b"content-type")[0]
    if not content_type.startswith(b"text/plain"):
        raise AssertionError(f"GET {path}: content type {content_type!r}")
    return samples(text)


@defer.inlineCallbacks
def get_json(proxy, path: str):
    """``(status, decoded body)`` of a real HTTP GET of ``proxy``'s admin API."""
    response = yield treq.get(proxy.admin_url(path), pool=proxy.pool)
    data = yield response.json()
    return response.code, data
