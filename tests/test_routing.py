"""Choosing a forwarding rule by Host and path."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import RuleConfig
from clbproxy.routing import Router, normalize_host

RULES = (
    RuleConfig(target_group="any-root", path="/"),
    RuleConfig(target_group="any-api", path="/api/"),
    RuleConfig(target_group="wild", host="*.example.com", path="/"),
    RuleConfig(target_group="www", host="www.example.com", path="/"),
    RuleConfig(target_group="www-chat", host="www.example.com", path="/chat"),
)


class RouterTests(unittest.TestCase):
    def test_table(self):
        router = Router(RULES)
        for host, path, expected in [
            ("www.example.com", "/", "www"),
            ("WWW.Example.COM:8080", "/chat/room", "www-chat"),
            ("www.example.com.", "/x", "www"),
            ("img.example.com", "/api/x", "wild"),
            ("example.com", "/", "any-root"),
            ("other.test", "/api/v1", "any-api"),
            (None, "/", "any-root"),
            ("[::1]:8080", "/api/", "any-api"),
        ]:
            rule = router.match(host, path)
            self.assertEqual(rule.target_group if rule else None, expected, (host, path))

    def test_no_path_under_the_chosen_host_is_no_match(self):
        router = Router((RuleConfig(target_group="a", host="a.test", path="/only/"),))
        self.assertIsNone(router.match("a.test", "/other"))
        self.assertIsNone(router.match("b.test", "/only/"))

    def test_normalize_host(self):
        self.assertEqual(normalize_host("Example.COM:80"), "example.com")
        self.assertEqual(normalize_host("[2001:db8::1]:443"), "2001:db8::1")
        self.assertEqual(normalize_host(""), "")
