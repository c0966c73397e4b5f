"""Session persistence: inserted cookies and source-IP bindings bring clients back."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clbproxy.config import BackendConfig, PersistenceConfig, TargetGroupConfig
from clbproxy.upstream.balancer import RequestInfo, TargetGroup, parse_cookies
from clbproxy.upstream.persistence import (
    CookiePersistence,
    ISessionPersistence,
    SourceIPPersistence,
)

BACKENDS = tuple(BackendConfig(f"10.0.0.{i}", 8080) for i in range(1, 5))


def sticky_group(kind: str, clock=None, **persistence) -> TargetGroup:
    config = TargetGroupConfig(
        name="g",
        backends=BACKENDS,
        persistence=PersistenceConfig(type=kind, **persistence),
    )
    return TargetGroup(config, clock or task.Clock())


def returning(set_cookie: str, ip: str = "192.0.2.9") -> RequestInfo:
    name_value = set_cookie.split(";", 1)[0]
    return RequestInfo.build(ip, [("Cookie", f"other=1; {name_value}")], {})


class CookiePersistenceTests(unittest.TestCase):
    def test_set_cookie_carries_the_configured_attributes(self):
        group = sticky_group(
            "cookie", cookie_name="lb", ttl=600, cookie_path="/app", secure=True, same_site="Strict"
        )
        [(name, value)] = group.persistence_headers(RequestInfo(), BACKENDS[0])
        self.assertEqual(name, "Set-Cookie")
        attributes = value.split("; ")
        self.assertTrue(attributes[0].startswith("lb="))
        self.assertEqual(
            attributes[1:], ["Max-Age=600", "Path=/app", "Secure", "HttpOnly", "SameSite=Strict"]
        )

    def test_cookie_value_does_not_reveal_the_backend_address(self):
        group = sticky_group("cookie")
        for backend in BACKENDS:
            [(_, value)] = group.persistence_headers(RequestInfo(), backend)
            token = value.split(";")[0].split("=", 1)[1]
            self.assertNotIn("10.0.0", token)
            self.assertNotIn("8080", token)

    def test_reconnecting_client_returns_to_its_backend(self):
        group = sticky_group("cookie")
        first = group.pick(RequestInfo(client_ip="192.0.2.9"))
        [(_, cookie)] = group.persistence_headers(RequestInfo(), first)
        self.assertEqual({group.pick(returning(cookie)) for _ in range(20)}, {first})

    def test_secret_makes_cookies_valid_across_processes(self):
        config = PersistenceConfig(type="cookie", secret="shared secret for all")
        one = CookiePersistence(config, BACKENDS)
        two = CookiePersistence(config, BACKENDS)
        [(_, cookie)] = one.remember(RequestInfo(), BACKENDS[2])
        self.assertEqual(two.lookup(returning(cookie)), BACKENDS[2])
        self.assertTrue(verifyObject(ISessionPersistence, one))

    def test_unknown_or_forged_cookie_is_balanced_normally(self):
        group = sticky_group("cookie")
        forged = RequestInfo.build("192.0.2.9", [("Cookie", "clb_session=10.0.0.1:8080")], {})
        self.assertEqual([group.pick(forged) for _ in range(4)], list(BACKENDS))

    def test_drained_or_down_backend_falls_back_to_the_policy(self):
        group = sticky_group("cookie")
        [(_, cookie)] = group.persistence_headers(RequestInfo(), BACKENDS[0])
        for _ in range(3):
            group.report_failure(BACKENDS[0], "connection refused")
        picked = group.pick(returning(cookie))
        self.assertNotEqual(picked, BACKENDS[0])
        self.assertIsNotNone(picked)


class SourceIPPersistenceTests(unittest.TestCase):
    def test_same_address_returns_until_the_ttl_after_last_use(self):
        clock = task.Clock()
        group = sticky_group("source_ip", clock, ttl=60)
        client = RequestInfo(client_ip="198.51.100.1")
        first = group.pick(client)
        group.persistence_headers(client, first)
        clock.advance(50)
        self.assertEqual(group.pick(client), first)
        group.persistence_headers(client, first)
        clock.advance(50)
        self.assertEqual(group.pick(client), first)
        clock.advance(61)
        self.assertNotEqual(group.pick(client), first)

    def test_bindings_are_bounded(self):
        clock = task.Clock()
        persistence = SourceIPPersistence(PersistenceConfig(type="source_ip"), clock, limit=10)
        for i in range(100):
            persistence.remember(RequestInfo(client_ip=f"10.1.0.{i}"), BACKENDS[0])
        self.assertEqual(len(persistence), 10)
        self.assertEqual(persistence.lookup(RequestInfo(client_ip="10.1.0.99")), BACKENDS[0])
        self.assertIsNone(persistence.lookup(RequestInfo(client_ip="10.1.0.0")))

    def test_full_backend_falls_back_to_the_policy(self):
        clock = task.Clock()
        small = BackendConfig("10.0.0.1", 80, max_conns=1)
        config = TargetGroupConfig(
            name="g",
            backends=(small, BackendConfig("10.0.0.2", 80)),
            persistence=PersistenceConfig(type="source_ip"),
        )
        group = TargetGroup(config, clock)
        client = RequestInfo(client_ip="198.51.100.1")
        group.persistence_headers(client, small)
        group.acquire(small)
        self.assertEqual(group.pick(client), config.backends[1])


class CookieParsingTests(unittest.TestCase):
    def test_cookie_header_pairs(self):
        self.assertEqual(
            parse_cookies('a=1; b="two" ; junk; a=3'),
            {"a": "1", "b": "two"},
        )
