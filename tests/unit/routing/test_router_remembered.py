"""Tests for the routes a :class:`Router` remembers (:meth:`Router.match_target`).

A remembered answer must be the answer: the same rule (or None) as matching
afresh, for every Host and path, asked once or many times; a bad path is
refused every time; and clients cannot make the memory grow without bound.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.routing import router as router_module
from clbproxy.routing.router import BadPath, Router

from .test_router import rules

RULES = rules(
    ("a-root", "a.example", "/"),
    ("a-exact", "a.example", "= /exact"),
    ("a-static", "a.example", "^~ /static/"),
    ("a-php", "a.example", "~ \\.php$"),
    ("wild", "*.example", "/"),
    ("b-api", "b.example", "/api/"),
)

HOSTS = st.sampled_from(
    [None, "", "a.example", "A.EXAMPLE:8080", "x.example", "b.example", "b.example.", "other"]
)
PATHS = st.sampled_from(
    [
        "/",
        "/exact",
        "/exact/",
        "/static/x",
        "/%73tatic/x",
        "/x.php",
        "/api/",
        "//api//v",
        "/a/../api/",
        "/%zz",
        "/..",
        "*",
        "/caf\xc3\xa9",
    ]
)
QUERIES = st.sampled_from(["", "?", "?x=1", "?x=/../y"])


def fresh(host, target):
    """The rule a new router answers (nothing remembered), or the BadPath's text."""
    try:
        return Router(RULES).match_target(host, target)
    except BadPath as e:
        return f"BadPath: {e}"


def asked(router: Router, host, target):
    try:
        return router.match_target(host, target)
    except BadPath as e:
        return f"BadPath: {e}"


class RememberedRoutesTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(HOSTS, PATHS, QUERIES), min_size=1, max_size=30))
    def test_every_answer_is_the_fresh_answer_however_often_asked(self, requests):
        router = Router(RULES)
        for host, path, query in requests + requests:
            target = path + query
            self.assertEqual(asked(router, host, target), fresh(host, target))

    def test_a_bad_path_is_refused_every_time(self):
        router = Router(RULES)
        for _ in range(3):
            self.assertRaises(BadPath, router.match_target, "a.example", "/%zz")
            self.assertRaises(BadPath, router.match_target, "a.example", "/../x")

    def test_no_rule_is_remembered_as_no_rule(self):
        router = Router(rules(("g", "a.example", "= /only")))
        self.assertIsNone(router.match_target("a.example", "/other"))
        self.assertIsNone(router.match_target("a.example", "/other"))
        self.assertEqual(router.match_target("a.example", "/only").target_group, "g")

    def test_the_memory_is_bounded_and_answers_stay_right_past_it(self):
        router = Router(RULES)
        limit = router_module.MAX_REMEMBERED_ROUTES
        for i in range(limit + 50):
            router.match_target("a.example", f"/p{i}.php")
        self.assertLessEqual(len(router._remembered), limit)
        self.assertEqual(router.match_target("a.example", "/p1.php").target_group, "a-php")
        self.assertEqual(router.match_target("a.example", "/exact").target_group, "a-exact")

    def test_a_long_host_and_path_are_matched_afresh_not_remembered(self):
        router = Router(RULES)
        long_path = "/static/" + "x" * router_module.MAX_REMEMBERED_LENGTH
        for _ in range(3):
            self.assertEqual(router.match_target("a.example", long_path).target_group, "a-static")
        self.assertEqual(len(router._remembered), 0)
        router.match_target("a.example", "/static/x")
        self.assertEqual(len(router._remembered), 1)
