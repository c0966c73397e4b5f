"""The Host rules a listener applies to every request: one valid Host, absolute-form targets."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.http.server import BadHost, request_host, valid_authority


class RequestHostTests(unittest.TestCase):
    def test_the_target_and_host_every_later_step_uses(self):
        cases = [
            ((b"HTTP/1.1", b"/x?y=1", [b"a.test"]), (b"/x?y=1", b"a.test")),
            ((b"HTTP/1.1", b"http://a.test/x?y=1", [b"b.test"]), (b"/x?y=1", b"a.test")),
            ((b"HTTP/1.1", b"HTTPS://A.test:8443", [b"b.test"]), (b"/", b"A.test:8443")),
            ((b"HTTP/1.0", b"http://a.test/x", []), (b"/x", b"a.test")),
            ((b"HTTP/1.0", b"/x", []), (b"/x", None)),
            ((b"HTTP/1.1", b"*", [b"a.test"]), (b"*", b"a.test")),
            ((b"HTTP/1.1", b"ftp://a.test/x", [b"b.test"]), (b"ftp://a.test/x", b"b.test")),
            ((b"HTTP/1.1", b"http:///x", [b"b.test"]), (b"http:///x", b"b.test")),
            ((b"HTTP/1.1", b"/", [b"A.test:8080"]), (b"/", b"A.test:8080")),
            ((b"HTTP/1.1", b"/", [b"[::1]:8080"]), (b"/", b"[::1]:8080")),
            ((b"HTTP/1.1", b"/", [b"127.0.0.1"]), (b"/", b"127.0.0.1")),
        ]
        for arguments, expected in cases:
            self.assertEqual(request_host(*arguments), expected, arguments)

    def test_host_errors_name_the_rule(self):
        cases = [
            ((b"HTTP/1.1", b"/", [b"a", b"b"]), "more than one Host header (RFC 9112 3.2)"),
            ((b"HTTP/1.1", b"/", [b"a", b"a"]), "more than one Host header (RFC 9112 3.2)"),
            ((b"HTTP/1.0", b"/", [b"a", b"b"]), "more than one Host header (RFC 9112 3.2)"),
            ((b"HTTP/1.1", b"/", []), "a Host header is required (HTTP/1.1, RFC 9112 3.2)"),
            (
                (b"HTTP/1.1", b"http://a.test/x", []),
                "a Host header is required (HTTP/1.1, RFC 9112 3.2)",
            ),
            (
                (b"HTTP/1.1", b"http://u@a.test/", [b"a.test"]),
                "a request target with userinfo is not accepted (RFC 9110 4.2.4)",
            ),
        ]
        for arguments, message in cases:
            with self.assertRaises(BadHost, msg=arguments) as caught:
                request_host(*arguments)
            self.assertEqual(str(caught.exception), message)

    def test_a_host_that_is_not_host_and_port_is_refused(self):
        # A value a name-based backend would read as another host than the router did.
        for host in INVALID_HOSTS:
            with self.assertRaises(BadHost, msg=host) as caught:
                request_host(b"HTTP/1.1", b"/", [host])
            self.assertEqual(
                str(caught.exception), "the Host header is not a valid host[:port] (RFC 9110 7.2)"
            )

    def test_an_absolute_target_with_an_invalid_authority_is_refused(self):
        with self.assertRaises(BadHost) as caught:
            request_host(b"HTTP/1.1", b"http://a:1:1/x", [b"a.test"])
        self.assertIn("authority is not a valid host[:port]", str(caught.exception))


#: Host values that are not ``uri-host [":" port]`` (RFC 9110 7.2).
INVALID_HOSTS = [
    b"",
    b"a:80:80",
    b"internal.test:1:1",
    b"a, b",
    b"a,b",
    b"a b",
    b"a/b",
    b"a@b",
    b"a\\b",
    b"a:http",
    b"a:123456",
    b":80",
    b"[::1",
    b"[::1]x",
    b"[not-v6]",
    b"a%2fb",
    b"a;b",
    b"a\x1b[31m",
]


class AuthorityTests(unittest.TestCase):
    def test_names_addresses_and_ports_are_valid(self):
        for host in [
            b"a",
            b"a.test",
            b"A-1.b_c.test.",
            b"a.test:8080",
            b"a.test:",
            b"127.0.0.1:1",
            b"[::1]",
            b"[2001:db8::1]:443",
        ]:
            self.assertTrue(valid_authority(host), host)

    def test_anything_else_is_not(self):
        for host in INVALID_HOSTS:
            self.assertFalse(valid_authority(host), host)
