"""A proxy on 127.0.0.1 with its observability (access log, metrics, admin listener) running."""

from __future__ import annotations

import json
import re

from twisted.internet import defer, reactor, task
from twisted.web.client import HTTPConnectionPool

from clbproxy.balancer import TargetGroup
from clbproxy.config import (
    AccessLogConfig,
    AdminConfig,
    BackendConfig,
    Config,
    ListenerConfig,
    RuleConfig,
    TargetGroupConfig,
)
from clbproxy.listener import listener_service
from clbproxy.observability import Observability

from .support import Listening

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
    def start(self, backend_ports, *, log_path, log_format="plain", **listener_options):
        group = TargetGroupConfig(
            name="pool",
            backends=tuple(BackendConfig("127.0.0.1", port) for port in backend_ports),
        )
        listener = ListenerConfig(
            name="web",
            bind=listener_options.pop("bind", "tcp:0:interface=127.0.0.1"),
            rules=(RuleConfig(target_group="pool"),),
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
        service = listener_service(listener, self.groups, reactor)
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
