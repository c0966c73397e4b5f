"""Choosing a forwarding rule by Host and path: the precedence tables of README.rst."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clbproxy.config import RuleConfig
from clbproxy.config.patterns import HostPattern, PathPattern, parse_host, parse_path
from clbproxy.routing.router import BadPath, Router, normalize_host, normalize_path


def rules(*specs: tuple[str, ...]) -> tuple[RuleConfig, ...]:
    """Rules from ``(name, host, path)``; the target group is the name, host "" is any host."""
    return tuple(
        RuleConfig(target_group=name, host=host or None, path=path) for name, host, path in specs
    )


def chosen(router: Router, host, path):
    rule = router.match(host, path)
    return rule.target_group if rule is not None else None


class HostPrecedenceTests(unittest.TestCase):
    ROUTER = Router(
        rules(
            ("regex", r"~ ^api[0-9]+\.example\.com$", "/"),
            ("trailing", "api1.example.*", "/"),
            ("leading", "*.example.com", "/"),
            ("leading-longer", "*.eu.example.com", "/"),
            ("exact", "api1.example.com", "/"),
            ("trailing-longer", "www.example.co.*", "/"),
            ("trailing-short", "www.*", "/"),
            ("regex-second", r"~ ^api", "/"),
            ("any", "", "/"),
        )
    )

    def test_table(self) -> None:
        for host, expected in [
            ("api1.example.com", "exact"),
            ("API1.Example.COM:8443", "exact"),
            ("api1.example.com.", "exact"),
            ("api2.example.com", "leading"),
            ("x.eu.example.com", "leading-longer"),
            ("a.b.eu.example.com", "leading-longer"),
            ("example.com", "any"),
            ("api1.example.org", "trailing"),
            ("www.example.co.uk", "trailing-longer"),
            ("www.other.net", "trailing-short"),
            ("api7.example.net", "regex-second"),
            ("other.test", "any"),
            (None, "any"),
            ("", "any"),
            ("[::1]:8080", "any"),
        ]:
            self.assertEqual(chosen(self.ROUTER, host, "/"), expected, host)

    def test_regexes_are_tried_in_the_order_written(self) -> None:
        router = Router(rules(("first", r"~ \.test$", "/"), ("second", "~ ^a", "/")))
        self.assertEqual(chosen(router, "a.test", "/"), "first")
        self.assertEqual(chosen(router, "a.example", "/"), "second")

    def test_host_regex_is_case_insensitive(self) -> None:
        router = Router(rules(("r", r"~ ^API\.example$", "/")))
        self.assertEqual(chosen(router, "api.EXAMPLE", "/"), "r")


class PathPrecedenceTests(unittest.TestCase):
    ROUTER = Router(
        rules(
            ("prefix-root", "", "/"),
            ("prefix-static-img", "", "/static/img/"),
            ("preferred-static", "", "^~ /static/"),
            ("regex-images", "", r"~ \.(png|jpg)$"),
            ("regex-ci-php", "", r"~* \.php$"),
            ("regex-version", "", "~^/v[0-9]+/"),
            ("exact-login", "", "= /login"),
            ("prefix-login", "", "/login"),
            ("prefix-api", "", "/api/"),
            ("prefix-api-long", "", "/api/admin/"),
        )
    )

    def test_table(self) -> None:
        for path, expected in [
            ("/login", "exact-login"),
            ("/login/x", "prefix-login"),
            ("/static/app.js", "preferred-static"),
            ("/static/logo.png", "preferred-static"),
            # The longest prefix is plain, so the regexes still win (nginx).
            ("/static/img/logo.png", "regex-images"),
            ("/static/img/readme.txt", "prefix-static-img"),
            ("/index.PHP", "regex-ci-php"),
            ("/index.Png", "prefix-root"),
            ("/v2/thing.png", "regex-images"),
            ("/v2/thing", "regex-version"),
            ("/api/admin/users", "prefix-api-long"),
            ("/api/users", "prefix-api"),
            ("/", "prefix-root"),
            ("/elsewhere", "prefix-root"),
        ]:
            self.assertEqual(chosen(self.ROUTER, "h.test", path), expected, path)

    def test_exact_match_is_only_exact(self) -> None:
        router = Router(rules(("exact", "", "= /login")))
        self.assertEqual(chosen(router, None, "/login"), "exact")
        self.assertIsNone(chosen(router, None, "/login/"))

    def test_equal_prefixes_prefer_the_preferred_one(self) -> None:
        router = Router(rules(("plain", "", "/a/"), ("preferred", "", "^~ /a/"), ("re", "", "~ x")))
        self.assertEqual(chosen(router, None, "/a/x"), "preferred")


class DefaultDomainTests(unittest.TestCase):
    def test_unmatched_host_goes_to_the_default_domain(self) -> None:
        router = Router(
            rules(("a", "a.test", "/"), ("b", "b.test", "/"), ("b-api", "b.test", "/api/")),
            default_domain="b.test",
        )
        self.assertEqual(chosen(router, "c.test", "/api/x"), "b-api")
        self.assertEqual(chosen(router, None, "/"), "b")
        self.assertEqual(chosen(router, "a.test", "/api/x"), "a")

    def test_rules_without_host_are_the_default_domain(self) -> None:
        router = Router(rules(("a", "a.test", "/"), ("any", "", "/")))
        self.assertEqual(chosen(router, "c.test", "/"), "any")

    def test_table(self) -> None:
        """Which rule an unmatched Host gets, for each way of naming the default domain."""
        a_and_b = (("a", "a.test", "/"), ("b", "b.test", "/"), ("b-api", "b.test", "/api/"))
        for name, router, expected in [
            ("default_domain named", Router(rules(*a_and_b), default_domain="b.test"), "b-api"),
            ("first domain written", Router(rules(*a_and_b)), "a"),
            ("first domain, by its first rule", Router(rules(*a_and_b[1:], a_and_b[0])), "b-api"),
            (
                "rules without host, though written last",
                Router(rules(*a_and_b, ("any", "", "/"))),
                "any",
            ),
            ("regex domain first", Router(rules(("re", "~ ^x", "/"), *a_and_b)), "re"),
            ("no rules", Router(()), None),
        ]:
            self.assertEqual(chosen(router, "c.test", "/api/x"), expected, name)

    def test_without_default_domain_the_first_domain_written_takes_unknown_hosts(self) -> None:
        router = Router(rules(("a", "a.test", "/only/"), ("b", "b.test", "/")))
        self.assertEqual(chosen(router, "c.test", "/only/x"), "a")
        self.assertEqual(chosen(router, None, "/only/x"), "a")
        # 404 only when no path under that domain matches: never another domain's rule.
        self.assertIsNone(chosen(router, "c.test", "/other"))

    def test_no_path_under_the_chosen_domain_is_404_not_another_domain(self) -> None:
        router = Router(rules(("a", "a.test", "/only/"), ("any", "", "/")))
        self.assertIsNone(chosen(router, "a.test", "/other"))

    def test_wildcard_default_domain(self) -> None:
        router = Router(rules(("w", "*.example.com", "/")), default_domain="*.example.com")
        self.assertEqual(chosen(router, "elsewhere.test", "/"), "w")


class NormalizeHostTests(unittest.TestCase):
    def test_normalize_host(self) -> None:
        self.assertEqual(normalize_host("Example.COM:80"), "example.com")
        self.assertEqual(normalize_host("[2001:db8::1]:443"), "2001:db8::1")
        self.assertEqual(normalize_host(""), "")


class PathNormalisationTests(unittest.TestCase):
    """Rules match the normalised path, as nginx's ``location`` does."""

    def test_table(self) -> None:
        for raw, expected in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/", "/a/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/.", "/"),
            ("/a/b/..", "/a/"),
            ("/a/../b", "/b"),
            ("/a/...", "/a/..."),
            ("/%61dmin", "/admin"),
            ("/%41DMIN", "/ADMIN"),
            ("/admin%2Fx", "/admin/x"),
            ("/admin%2fx", "/admin/x"),
            ("/a%2F..%2Fadmin", "/admin"),
            ("/x/%2e%2e/admin", "/admin"),
            ("/x/%2E/admin", "/x/admin"),
            ("/%252F", "/%2F"),
            ("/a%20b", "/a b"),
            ("/caf%C3%A9", "/caf\u00e9"),
            ("/caf\u00c3\u00a9", "/caf\u00e9"),
            ("*", "*"),
        ]:
            self.assertEqual(normalize_path(raw), expected, raw)

    def test_invalid_paths_are_refused(self) -> None:
        for raw, reason in [
            ("/..", "above the root"),
            ("/../x", "above the root"),
            ("/a/../../x", "above the root"),
            ("/%2e%2e/x", "above the root"),
            ("/a/%2E%2E%2F..%2Fx", "above the root"),
            ("/%zz", "invalid percent-escape"),
            ("/%4", "invalid percent-escape"),
            ("/a%", "invalid percent-escape"),
            ("/%%30", "invalid percent-escape"),
            ("/%00", "encoded NUL"),
            ("/a%00.html", "encoded NUL"),
        ]:
            with self.assertRaises(BadPath, msg=raw) as caught:
                normalize_path(raw)
            self.assertIn(reason, str(caught.exception), raw)

    def test_invalid_utf8_matches_no_literal_rule(self) -> None:
        router = Router(rules(("any", "", "/"), ("latin", "", "= /caf\u00e9")))
        self.assertEqual(chosen(router, None, "/caf%E9"), "any")
        self.assertEqual(chosen(router, None, "/caf%C3%A9"), "latin")

    def test_a_deny_rule_cannot_be_bypassed(self) -> None:
        router = Router(
            rules(
                ("app", "", "/"),
                ("admin", "", "/admin"),
                ("login", "", "= /login"),
                ("php", "", "~* \\.php$"),
                ("static", "", "^~ /static/"),
            )
        )
        for path, expected in [
            ("/admin", "admin"),
            ("/%61dmin", "admin"),
            ("/%61%64%6d%69%6e/x", "admin"),
            ("//admin", "admin"),
            ("/./admin", "admin"),
            ("/x/../admin", "admin"),
            ("/x/%2e%2e/admin", "admin"),
            ("/x%2F..%2Fadmin", "admin"),
            ("/login", "login"),
            ("/%6cogin", "login"),
            ("//login", "login"),
            ("/a/../login", "login"),
            ("/x.ph%70", "php"),
            ("/x.PHP", "php"),
            ("/static//../static/a.css", "static"),
            ("/%2561dmin", "app"),
            ("/administrator", "admin"),
            ("/app", "app"),
        ]:
            self.assertEqual(chosen(router, "a.test", path), expected, path)

    def test_match_target_ignores_the_query(self) -> None:
        router = Router(rules(("app", "", "/"), ("admin", "", "= /admin")))
        self.assertEqual(router.match_target("a", "/%61dmin?x=/../y").target_group, "admin")
        self.assertEqual(router.match_target("a", "?x").target_group, "app")
        with self.assertRaises(BadPath):
            router.match_target("a", "/../admin?x")


# -- properties (hypothesis) -------------------------------------------------------

#: Request paths as the listener hands them over: bytes read as latin-1.
_LATIN1 = st.text(alphabet=st.characters(max_codepoint=255))

#: Pieces that make paths the normaliser has work to do on.
_PIECES = st.sampled_from(
    ["/", ".", "..", "a", "b", "%2e", "%2E", "%2f", "%2F", "%41", "%00", "%zz", "%", "%c3%a9"]
)
_TRICKY = st.lists(_PIECES, max_size=12).map("".join)


def _segments(path: str) -> list[str]:
    return path.split("/")[1:]


class NormalizePathProperties(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(st.one_of(_TRICKY.map(lambda p: "/" + p), _LATIN1.map(lambda p: "/" + p)))
    def test_a_path_is_refused_or_normalised_to_one_without_dot_segments(self, path) -> None:
        try:
            result = normalize_path(path)
        except BadPath:
            return
        self.assertTrue(result.startswith("/"), result)
        self.assertNotIn("//", result)
        self.assertFalse({".", ".."} & set(_segments(result)), result)

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(_TRICKY, _LATIN1))
    def test_any_path_text_gives_a_string_or_bad_path(self, path) -> None:
        try:
            self.assertIsInstance(normalize_path(path), str)
        except BadPath:
            pass

    @settings(max_examples=400, deadline=None)
    @given(_TRICKY.map(lambda p: "/" + p))
    def test_normalising_twice_changes_nothing(self, path) -> None:
        """For results in plain ASCII without '%': escapes are decoded once only, as nginx
        does, so ``%252F`` becomes ``%2F``, which a second pass would decode again."""
        try:
            once = normalize_path(path)
        except BadPath:
            return
        assume(once.isascii() and "%" not in once)
        self.assertEqual(normalize_path(once), once)


_NAME = st.text(alphabet="abcxyz0123-_~", min_size=1, max_size=6)

ROUTES = Router(
    rules(
        ("root", "", "/"),
        ("a", "", "/a"),
        ("deep", "", "/a/b-c/"),
        ("exact", "", "= /x/y"),
        ("preferred", "", "^~ /z"),
        ("regex", "", "~ ^/r[0-9]+/"),
        ("ci", "", "~* ~$"),
    )
)


@st.composite
def _disguised(draw, path: str) -> str:
    """``path`` with escaped bytes, ``.`` segments, ``x/..`` detours and doubled slashes."""
    out = []
    for char in path:
        if char == "/":
            out.append(
                draw(
                    st.sampled_from(
                        ["/", "//", "/./", "/q/../", "%2F", "%2f", "/%2e/", "/q/%2E%2e/"]
                    )
                )
                if out
                else "/"
            )
        elif draw(st.booleans()):
            escape = f"%{ord(char):02X}"
            out.append(escape if draw(st.booleans()) else escape.lower())
        else:
            out.append(char)
    return "".join(out)


class RoutingProperties(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(st.data(), st.lists(_NAME, max_size=5), st.booleans())
    def test_encoded_and_dotted_variants_route_to_the_same_rule(self, data, names, slash):
        path = "/" + "/".join(names) + ("/" if slash and names else "")
        variant = data.draw(_disguised(path))
        self.assertEqual(chosen(ROUTES, "h", variant), chosen(ROUTES, "h", path), variant)

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(st.none(), st.text()), st.one_of(_TRICKY, _LATIN1))
    def test_the_router_never_raises_on_arbitrary_host_and_path(self, host, path) -> None:
        router = HostPrecedenceTests.ROUTER
        try:
            rule = router.match(host, path)
            rule = router.match_target(host, path)
        except BadPath:
            return
        self.assertTrue(rule is None or isinstance(rule, RuleConfig))


class PatternProperties(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.one_of(st.text(), st.text().map(lambda t: "~ " + t), st.text().map(lambda t: "*." + t))
    )
    def test_a_host_pattern_parses_or_is_a_value_error(self, text) -> None:
        try:
            self.assertIsInstance(parse_host(text), HostPattern)
        except ValueError as e:
            self.assertTrue(str(e))

    @settings(max_examples=400, deadline=None)
    @given(
        st.one_of(
            st.text(),
            st.sampled_from(["= ", "^~ ", "~ ", "~* "]).flatmap(
                lambda marker: st.text().map(lambda t: marker + t)
            ),
            st.sampled_from(
                ["~ a{4294967296}", "~ (?P<a>", "~* [z-a]", "~ " + "(" * 5000 + ")" * 5000]
            ),
        )
    )
    def test_a_path_pattern_parses_or_is_a_value_error(self, text) -> None:
        try:
            self.assertIsInstance(parse_path(text), PathPattern)
        except ValueError as e:
            self.assertTrue(str(e))
