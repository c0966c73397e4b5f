"""Bind strings: which server endpoints a listener or the admin site may use."""

from __future__ import annotations

from twisted.trial import unittest

from tests.unit.config.loading import TLS_REFUSED, LoaderMixin, document


class BindProblemTests(LoaderMixin, unittest.TestCase):
    def test_bind_problems(self) -> None:
        cases = {
            "ssl:443": f"'ssl:443' {TLS_REFUSED}",
            "haproxy:ssl:443:privateKey=k.pem": f"'haproxy:ssl:443:privateKey=k.pem' {TLS_REFUSED}",
            "tcp:abc": "'tcp:abc': port must be a number, got 'abc'",
            "tcp:70000": "'tcp:70000': port 70000 out of range 0-65535",
            "tcp:": "'tcp:': needs a port, like 'tcp:8080'",
            "tcp:8080:bogus=1": (
                "'tcp:8080:bogus=1': unknown option 'bogus' for tcp:; "
                "options: port, interface, backlog"
            ),
            "tcp:8080:intreface=127.0.0.1": (
                "'tcp:8080:intreface=127.0.0.1': unknown option 'intreface' for tcp: "
                "(did you mean 'interface'?)"
            ),
            "tcp:8080:backlog=x": (
                "'tcp:8080:backlog=x': backlog must be a positive number, got 'x'"
            ),
            "tcp:8080:interface=\\\\:\\\\:1": (
                "'tcp:8080:interface=\\\\:\\\\:1': interface '::1' is an IPv6 address; use tcp6:"
            ),
            "tcp:80:port=81": "'tcp:80:port=81': option 'port' given twice",
            "tcp:1:2:3:4": "'tcp:1:2:3:4': too many arguments; tcp: takes port, interface, backlog",
            "unix:": "'unix:': needs a socket path, like 'unix:/run/clbproxy.sock'",
            "unix:/s:mode=abc": (
                "'unix:/s:mode=abc': mode must be an octal number like 660, got 'abc'"
            ),
            "systemd:domain=INET": (
                "'systemd:domain=INET': give exactly one of index (a number) or name"
            ),
            "systemd:domain=IPX:index=0": (
                "'systemd:domain=IPX:index=0': domain must be INET, INET6 or UNIX, got 'IPX'"
            ),
            "haproxy:tcp:99999": "'haproxy:tcp:99999': port 99999 out of range 0-65535",
            "foo:1": (
                "'foo:1': unknown endpoint type 'foo'; "
                "use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint"
            ),
            "": "'': must not be empty; use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint",
        }
        found = self.problem_table(
            {bind: document(listener={"bind": f'"{bind}"'}) for bind in cases}
        )
        expected = {
            bind: [f"tap.conf: listener[0].bind: {message}"] for bind, message in cases.items()
        }
        self.assertEqual(found, expected)

    def test_unescaped_ipv6_interface_gets_a_hint(self) -> None:
        (problem,) = self.problems(document(listener={"bind": '"tcp6:8080:interface=::1"'}))
        self.assertTrue(
            problem.startswith("tap.conf: listener[0].bind: 'tcp6:8080:interface=::1':")
        )
        self.assertIn("escape the colons of an IPv6 address", problem)

    def test_demo_backend_bind_is_checked_like_a_listener_bind(self) -> None:
        problems = self.problems(
            document(extra='[[demo_backend]]\nname = "d"\nbind = "ssl:8443"\n')
        )
        self.assertEqual(problems, [f"tap.conf: demo_backend[0].bind: 'ssl:8443' {TLS_REFUSED}"])

    def test_identical_bind_strings_are_refused(self) -> None:
        problems = self.problems(
            document(
                extra=(
                    '[[listener]]\nname = "two"\nbind = "tcp:8080"\n'
                    '[[listener.rule]]\ntarget_group = "demo"\n'
                    '[[demo_backend]]\nname = "d"\nbind = "tcp:8080"\n'
                )
            )
        )
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[1].bind: duplicate bind string 'tcp:8080' (also listener[0])",
                "tap.conf: demo_backend[0].bind: duplicate bind string 'tcp:8080' "
                "(also listener[0])",
            ],
        )
