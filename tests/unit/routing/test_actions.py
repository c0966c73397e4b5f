"""What a rule does to a request: path rewrites, header changes, redirects."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import RedirectConfig, RewriteConfig, RuleConfig
from clbproxy.http.redirect import redirect_host, redirect_response
from clbproxy.routing.actions import expand_location, header_changes, rewrite_target, rule_redirect


class RewriteTests(unittest.TestCase):
    def test_table(self) -> None:
        strip = RuleConfig(target_group="g", rewrite=RewriteConfig(strip_prefix="/api/"))
        regex = RuleConfig(
            target_group="g",
            rewrite=RewriteConfig(pattern=r"^/old/(?P<rest>.*)$", replacement=r"/new/\g<rest>"),
        )
        for rule, target, expected in [
            (None, "/a?b", "/a?b"),
            (strip, "/api/users?x=1", "/users?x=1"),
            (strip, "/api", "/"),
            (strip, "/apix", "/apix"),
            (regex, "/old/a/b?q", "/new/a/b?q"),
            (regex, "/other", "/other"),
        ]:
            self.assertEqual(rewrite_target(rule, target), expected, (target, rule))

    def test_a_rewrite_works_on_the_normalised_path(self) -> None:
        strip = RuleConfig(target_group="g", rewrite=RewriteConfig(strip_prefix="/api/"))
        for target, expected in [
            ("/x/../api/users?id=%2F", "/users?id=%2F"),
            ("/%61pi//u%20s/caf%C3%A9", "/u%20s/caf%C3%A9"),
            ("/api/a%2Fb", "/a/b"),
            ("/api/%3F%23", "/%3F%23"),
        ]:
            self.assertEqual(rewrite_target(strip, target), expected, target)

    def test_query_in_a_regex_replacement_comes_before_the_clients(self) -> None:
        rule = RuleConfig(
            target_group="g",
            rewrite=RewriteConfig(pattern=r"^/v([0-9]+)/(.*)$", replacement=r"/\2?version=\1"),
        )
        self.assertEqual(rewrite_target(rule, "/v2/items"), "/items?version=2")
        self.assertEqual(rewrite_target(rule, "/v2/items?a=1"), "/items?version=2&a=1")

    def test_regex_rewrite_without_a_leading_slash_gets_one(self) -> None:
        rule = RuleConfig(target_group="g", rewrite=RewriteConfig(pattern="^/x/", replacement=""))
        self.assertEqual(rewrite_target(rule, "/x/y"), "/y")


class HeaderChangeTests(unittest.TestCase):
    def test_set_headers_replace_and_remove_headers_drop(self) -> None:
        rule = RuleConfig(
            target_group="g", set_headers=(("X-Env", "prod"),), remove_headers=("x-debug",)
        )
        self.assertEqual(header_changes(rule, []), ({"x-env", "x-debug"}, [("X-Env", "prod")]))


class RedirectTests(unittest.TestCase):
    def test_status_by_method(self) -> None:
        self.assertEqual(
            [redirect_response("/x", method)[0] for method in (b"GET", b"HEAD", b"POST")],
            [301, 301, 308],
        )

    def test_rule_redirect_expands_variables_and_keeps_its_status(self) -> None:
        rule = RuleConfig(
            redirect=RedirectConfig(location="$scheme://$host/new$request_uri", status=302)
        )
        self.assertEqual(
            rule_redirect(rule, method=b"GET", scheme="http", host="a.test", request_uri="/p?q"),
            (302, [("Location", "http://a.test/new/p?q")]),
        )

    def test_expand_location_leaves_other_text(self) -> None:
        self.assertEqual(
            expand_location("https://x/$other", scheme="http", host="h", request_uri="/"),
            "https://x/$other",
        )

    def test_expand_location_does_not_expand_variables_inside_the_request_uri(self) -> None:
        self.assertEqual(
            expand_location(
                "$scheme://$host$request_uri", scheme="https", host="a.test", request_uri="/$host"
            ),
            "https://a.test/$host",
        )


class RedirectHostTests(unittest.TestCase):
    """The Host a redirect URL is built with cannot move its authority elsewhere."""

    def test_a_host_that_would_change_the_authority_gives_the_fallback(self) -> None:
        hosts = [
            "good.test@evil.example",
            "good.test:80@evil.example",
            "evil.example/x",
            "evil.example\\x",
            "a.test?x",
            "a.test#x",
            "a.test%40evil.example",
            "a b",
            "a.test\x1b",
            "a.test\x7f",
            "caf\xe9.test",
            "",
            None,
        ]
        self.assertEqual(
            [redirect_host(host, "fallback", keep_port=True) for host in hosts],
            ["fallback"] * len(hosts),
        )

    def test_a_valid_host_is_kept_with_its_port_when_asked(self) -> None:
        self.assertEqual(
            [
                redirect_host(host, "fallback", keep_port=keep)
                for host, keep in (
                    ("a.test:8080", True),
                    ("a.test:8080", False),
                    ("[::1]:8080", False),
                    ("[::1]:8080", True),
                    ("A.Test", False),
                )
            ],
            ["a.test:8080", "a.test", "[::1]", "[::1]:8080", "A.Test"],
        )
