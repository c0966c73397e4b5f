"""``[target_group.NAME]`` tables: backends, balancing, health, persistence."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import (
    BackendConfig,
    HealthCheckConfig,
    PassiveConfig,
    PersistenceConfig,
    TargetGroupConfig,
)
from tests.unit.config.loading import LoaderMixin, document


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
