"""``[[listener.rule]]`` tables: matching, actions, rewrites, headers."""

from __future__ import annotations

from twisted.trial import unittest

from tests.unit.config.loading import LoaderMixin, document


class RuleProblemTests(LoaderMixin, unittest.TestCase):
    def test_rule_problems(self) -> None:
        cases = {
            "unknown group": (
                document(rule={"target_group": '"api"'}),
                "listener[0].rule[0].target_group: unknown target group 'api' (defined: demo)",
            ),
            "missing group": (
                document(rule={"target_group": None, "path": '"/"'}),
                "listener[0].rule[0]: missing required key 'target_group' "
                "(or 'fixed_response' or 'redirect')",
            ),
            "two actions": (
                document(rule={"redirect": '"https://x.test/"'}),
                "listener[0].rule[0]: give only one of 'target_group', 'redirect'",
            ),
            "bad host regex": (
                document(rule={"host": '"~ ^api[0-9+$"'}),
                "listener[0].rule[0].host: invalid regular expression '^api[0-9+$': "
                "unterminated character set at position 4",
            ),
            "bad path regex": (
                document(rule={"path": '"~*(unclosed"'}),
                "listener[0].rule[0].path: invalid regular expression '(unclosed': "
                "missing ), unterminated subpattern at position 0",
            ),
            "path regex repeating past the regex engine's limit": (
                document(rule={"path": '"~ a{4294967296}"'}),
                "listener[0].rule[0].path: invalid regular expression 'a{4294967296}': "
                "the repetition number is too large",
            ),
            "empty path regex": (
                document(rule={"path": '"~ "'}),
                "listener[0].rule[0].path: the regular expression after '~' is empty",
            ),
            "exact path without slash": (
                document(rule={"path": '"= login"'}),
                "listener[0].rule[0].path: 'login' must start with '/' "
                "(or a marker: '= ', '^~ ', '~ ', '~* ')",
            ),
            "rewrite with both": (
                document(rule={"rewrite": '{ strip_prefix = "/a", pattern = "b" }'}),
                "listener[0].rule[0].rewrite: give exactly one of 'strip_prefix' or 'pattern' "
                "(with 'replacement')",
            ),
            "rewrite bad group": (
                document(rule={"rewrite": '{ pattern = "^/a/(.*)", replacement = "/\\\\2" }'}),
                "listener[0].rule[0].rewrite.replacement: replacement '/\\\\2' refers to "
                "group 2, but the pattern has 1",
            ),
            "fixed status": (
                document(
                    rule={"target_group": None, "fixed_response": "{ status = 99 }"},
                ),
                "listener[0].rule[0].fixed_response.status: 99 out of range 200-599",
            ),
            "redirect status": (
                document(
                    rule={
                        "target_group": None,
                        "redirect": '{ location = "/x", status = 200 }',
                    },
                ),
                "listener[0].rule[0].redirect.status: unknown redirect status '200'; must be "
                "one of: '301', '302', '303', '307', '308'",
            ),
            "set framing header": (
                document(rule={"set_headers": '{ "Content-Length" = "5" }'}),
                "listener[0].rule[0].set_headers.Content-Length: 'Content-Length' describes one "
                "hop or the body; it cannot be set",
            ),
            "set header control char": (
                document(rule={"set_headers": '{ "X-A" = "a\\nb" }'}),
                "listener[0].rule[0].set_headers.X-A: 'a\\nb' is not a header value "
                "(no control characters)",
            ),
            "remove bad name": (
                document(rule={"remove_headers": '["X A"]'}),
                "listener[0].rule[0].remove_headers[0]: 'X A' is not a header name",
            ),
            "unknown key": (
                document(rule={"pth": '"/"'}),
                "listener[0].rule[0]: unknown key 'pth' (did you mean 'path'?)",
            ),
            "relative path": (
                document(rule={"path": '"api"'}),
                "listener[0].rule[0].path: 'api' must start with '/' "
                "(or a marker: '= ', '^~ ', '~ ', '~* ')",
            ),
            "query in path": (
                document(rule={"path": '"/api?x=1"'}),
                "listener[0].rule[0].path: '/api?x=1': a path has no query, fragment, "
                "spaces or control characters",
            ),
            "host with port": (
                document(rule={"host": '"example.com:8080"'}),
                "listener[0].rule[0].host: 'example.com:8080': a host must not include a port",
            ),
            "inner wildcard": (
                document(rule={"host": '"api.*.example.com"'}),
                "listener[0].rule[0].host: 'api.*.example.com': '*' is only allowed as the whole "
                "first or last label, like '*.example.com' or 'www.example.*'",
            ),
            "bad host": (
                document(rule={"host": '"exa_mple-.com"'}),
                "listener[0].rule[0].host: 'exa_mple-.com' is not a valid host name",
            ),
            "empty host": (
                document(rule={"host": '""'}),
                "listener[0].rule[0].host: must not be empty; leave host out to match any host",
            ),
            "wildcard IP": (
                document(rule={"host": '"*.10.0.0.1"'}),
                "listener[0].rule[0].host: '*.10.0.0.1': a wildcard needs a DNS name, "
                "like '*.example.com'",
            ),
            "bad IPv4": (
                document(rule={"host": '"10.0.0.300"'}),
                "listener[0].rule[0].host: '10.0.0.300' is not an IPv4 address",
            ),
            "size type": (
                document(rule={"max_message_size": "true"}),
                "listener[0].rule[0].max_message_size: expected a size (bytes as an integer, "
                'or a string like "64KiB", "16MiB", "512KB" or "10MB"), got a boolean',
            ),
            "relay mode": (
                document(rule={"relay": '"splice"'}),
                "listener[0].rule[0].relay: unknown relay mode 'splice'; must be one of: "
                "'frames', 'tunnel'",
            ),
            "deflate mode": (
                document(listener={"websocket_deflate": '"both"'}),
                "listener[0].websocket_deflate: unknown permessage-deflate mode 'both'; "
                "must be one of: 'end_to_end', 'per_hop'",
            ),
        }
        self.assertEqual(
            self.problem_table({name: text for name, (text, _) in cases.items()}),
            {name: [f"tap.conf: {line}"] for name, (_, line) in cases.items()},
        )

    def test_unknown_group_lists_defined_groups_or_none(self) -> None:
        problems = self.problems(
            "[[listener]]\nname = 'web'\nbind = 'tcp:1'\n[[listener.rule]]\ntarget_group = 'x'\n"
        )
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[0].rule[0].target_group: "
                "unknown target group 'x' (defined: none)"
            ],
        )

    def test_rules_with_the_same_host_and_path_are_refused(self) -> None:
        problems = self.problems(
            document(
                rule={"host": '"Example.com"', "path": '"/api"'},
                extra=(
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    'host = "example.com"\npath = "/api"\n'
                ),
            )
        )
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[0].rule[2]: rule[1] already matches any host and path '/'",
                "tap.conf: listener[0].rule[3]: rule[0] already matches host 'example.com' "
                "and path '/api'",
            ],
        )
