"""Tests for :mod:`clbproxy.net.tls` without sockets: SNI map, certificate problems, demo cert."""

from __future__ import annotations

import datetime
import os

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.trial import unittest

from clbproxy.config import ConfigError, TLSConfig
from clbproxy.http.redirect import https_location, redirect_status
from clbproxy.net.certificates import (
    ensure_self_signed,
    fingerprint,
    load_certificate,
    weak_cipher_problem,
)
from clbproxy.net.tls import SNIMap, refusing_context, server_context
from clbproxy.ops.preflight import load_checked
from tests.support.tls import certificate_files, expired, write


class SNIMapTests(unittest.TestCase):
    def setUp(self):
        self.map = SNIMap(
            {"a.example.com": "A", "*.example.com": "WILD", "xn--bcher-kva.example": "IDN"},
            "DEFAULT",
        )

    def test_exact_name_wins_over_the_wildcard(self):
        self.assertEqual(self.map.lookup(b"a.example.com"), "A")

    def test_wildcard_covers_exactly_one_label(self):
        self.assertEqual(
            [self.map.lookup(n) for n in (b"b.example.com", b"x.b.example.com", b"example.com")],
            ["WILD", "DEFAULT", "DEFAULT"],
        )

    def test_case_and_trailing_dot_are_ignored(self):
        self.assertEqual(self.map.lookup(b"A.Example.COM."), "A")

    def test_odd_names_fall_back_to_the_default_without_raising(self):
        for name in (None, b"", b"\xff\xfe", b".", b"..", "a.example.com\x00", 42, b"*" * 70000):
            self.assertIn(self.map.lookup(name), ("DEFAULT",), repr(name)[:40])

    def test_str_names_work_like_bytes(self):
        self.assertEqual(self.map.lookup("xn--bcher-kva.example"), "IDN")

    def test_find_gives_none_for_names_no_certificate_covers(self):
        """``strict_sni`` refuses what ``find`` does not know (``lookup`` serves the default)."""
        self.assertEqual(
            [self.map.find(n) for n in (b"a.example.com", b"b.example.com", b"other.test", None)],
            ["A", "WILD", None, None],
        )


class ContextPolicyTests(unittest.TestCase):
    def test_every_server_context_refuses_renegotiation_and_compression(self):
        """Client-initiated renegotiation would let one client make the proxy do full handshakes.

        OpenSSL 3 refuses it by default; older builds allowed it, so it is set explicitly.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        entry = certificate_files(directory, trustme.CA(), "a.example.com")
        tls = TLSConfig(certificates=(entry,))
        contexts = [
            server_context(load_certificate(entry), tls, b"x" * 32, lambda connection: None),
            refusing_context(tls),
        ]
        for context in contexts:
            options = context.set_options(0)
            self.assertTrue(options & SSL.OP_NO_RENEGOTIATION)
            self.assertTrue(options & SSL.OP_NO_COMPRESSION)

    def test_server_contexts_release_idle_connections_record_buffers(self):
        """An idle WSS session must not keep OpenSSL's ~34 KB of read and write buffers.

        nginx and HAProxy set this mode too; pyOpenSSL does not by default.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        entry = certificate_files(directory, trustme.CA(), "a.example.com")
        tls = TLSConfig(certificates=(entry,))
        context = server_context(load_certificate(entry), tls, b"x" * 32, lambda connection: None)
        self.assertTrue(context.set_mode(0) & SSL.MODE_RELEASE_BUFFERS)


HTTPS_LISTENER = """
[[listener]]
name = "secure"
protocol = "https"
bind = "tcp:8443"
  [listener.tls]
  certificates = [{certificates}]
  [[listener.rule]]
  target_group = "demo"
[target_group.demo]
backends = ["127.0.0.1:8181"]
"""


class CertificateProblemTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ca = trustme.CA()
        self.good = certificate_files(self.dir, self.ca, "a.example.com")
        self.other = certificate_files(self.dir, self.ca, "b.example.com")

    def load(self, *entries: str):
        path = write(
            self.dir,
            "tap.conf",
            HTTPS_LISTENER.format(certificates=", ".join(entries)).encode(),
        )
        return path, load_checked(path)

    def problems(self, *entries: str):
        with self.assertRaises(ConfigError) as raised:
            self.load(*entries)
        return raised.exception.problems

    def entry(self, cert, key, **extra):
        fields = [f'cert = "{cert}"', f'key = "{key}"'] + [f'{k} = "{v}"' for k, v in extra.items()]
        return "{ " + ", ".join(fields) + " }"

    def test_good_certificate_loads(self):
        _, config = self.load(self.entry(self.good.cert, self.good.key))
        self.assertEqual(config.listeners[0].tls.certificates[0].cert, self.good.cert)
        self.assertEqual(config.warnings, ())

    def test_missing_file_names_listener_and_file(self):
        missing = os.path.join(self.dir, "missing.pem")
        (problem,) = self.problems(self.entry(missing, self.good.key))
        self.assertEqual(
            problem,
            f"{self.dir}/tap.conf: listener[0].tls: listener 'secure': certificate {missing}: "
            "cannot read: No such file or directory",
        )

    def test_relative_paths_are_relative_to_the_config_file(self):
        _, config = self.load(self.entry("a.example.com.pem", "a.example.com.key"))
        self.assertEqual(config.listeners[0].tls.certificates[0].key, self.good.key)

    def test_key_of_another_certificate_is_refused(self):
        (problem,) = self.problems(self.entry(self.good.cert, self.other.key))
        self.assertTrue(
            problem.endswith(
                f"key {self.other.key} does not match the certificate {self.good.cert}"
            )
        )

    def test_file_without_a_certificate_is_refused(self):
        (problem,) = self.problems(self.entry(self.good.key, self.good.key))
        self.assertTrue(
            problem.endswith(f"certificate {self.good.key}: no PEM certificate in the file")
        )

    def test_certificate_without_dns_names_is_refused(self):
        ip_only = certificate_files(self.dir, self.ca, "127.0.0.1", prefix="ip")
        (problem,) = self.problems(self.entry(ip_only.cert, ip_only.key))
        self.assertIn("has no DNS names in its subjectAltName", problem)

    def test_encrypted_key_loads_with_its_passphrase_file(self):
        key = serialization.load_pem_private_key(open(self.good.key, "rb").read(), None)
        encrypted = write(
            self.dir,
            "encrypted.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"s3cret"),
            ),
        )
        right = write(self.dir, "right.txt", b"s3cret\n")
        wrong = write(self.dir, "wrong.txt", b"nope\n")
        self.load(self.entry(self.good.cert, encrypted, passphrase_file=right))
        (without,) = self.problems(self.entry(self.good.cert, encrypted))
        (mistyped,) = self.problems(self.entry(self.good.cert, encrypted, passphrase_file=wrong))
        self.assertTrue(without.endswith("the key is encrypted; give its passphrase_file"))
        self.assertIn("wrong passphrase", mistyped)

    def test_expired_certificate_is_a_warning(self):
        old = expired(self.ca, self.dir, "old.example.com")
        _, config = self.load(self.entry(old.cert, old.key))
        (warning,) = config.warnings
        self.assertIn(f"certificate {old.cert} expired on 2020-01-31", warning)

    def test_unknown_cipher_list_is_a_problem(self):
        path = write(
            self.dir,
            "tap.conf",
            HTTPS_LISTENER.format(certificates=self.entry(self.good.cert, self.good.key))
            .replace("[listener.tls]", '[listener.tls]\n  ciphers = "NOPE-CIPHER"')
            .encode(),
        )
        with self.assertRaises(ConfigError) as raised:
            load_checked(path)
        self.assertIn("ciphers: no usable cipher in 'NOPE-CIPHER'", raised.exception.problems[0])


class WeakCipherTests(unittest.TestCase):
    """A cipher string that lets OpenSSL negotiate weak ciphers refuses the config."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        good = certificate_files(self.dir, trustme.CA(), "a.example.com")
        self.entry = f'{{ cert = "{good.cert}", key = "{good.key}" }}'

    def problems(self, ciphers: str) -> list[str]:
        text = HTTPS_LISTENER.format(certificates=self.entry).replace(
            "[listener.tls]", f'[listener.tls]\n  ciphers = "{ciphers}"'
        )
        path = write(self.dir, "tap.conf", text.encode())
        try:
            load_checked(path)
        except ConfigError as error:
            return [line.replace(path, "tap.conf") for line in error.problems]
        return []

    def test_null_and_anonymous_ciphers_with_seclevel_0_are_one_problem_line(self):
        (problem,) = self.problems("ALL:eNULL:@SECLEVEL=0")
        self.assertTrue(
            problem.startswith(
                "tap.conf: listener[0].tls.ciphers: listener 'secure': "
                "'ALL:eNULL:@SECLEVEL=0' is unsafe: it enables eNULL ("
            ),
            problem,
        )
        for part in ("aNULL (ADH-", "MD5 (NULL-MD5)", "it sets @SECLEVEL=0"):
            self.assertIn(part, problem)
        self.assertTrue(problem.endswith("or leave ciphers out for the default"), problem)

    def test_each_weak_kind_is_refused(self):
        cases = {
            "ECDHE-RSA-AES128-GCM-SHA256:eNULL": "eNULL (",
            "NULL-SHA256": "eNULL (NULL-SHA256)",
            "HIGH": "aNULL (ADH-",
            "ECDHE-RSA-AES128-GCM-SHA256:ADH-AES128-SHA": "aNULL (ADH-AES128-SHA)",
            "ECDHE-RSA-AES128-GCM-SHA256:AECDH-AES128-SHA": "aNULL (AECDH-AES128-SHA)",
            "NULL-MD5": "MD5 (NULL-MD5)",
            "DEFAULT:@SECLEVEL=0": "it sets @SECLEVEL=0",
            "HIGH:!aNULL:@SECLEVEL=0": "it sets @SECLEVEL=0",
        }
        for ciphers, reason in cases.items():
            (problem,) = self.problems(ciphers)
            self.assertIn(reason, problem, ciphers)

    def test_strings_whose_weak_ciphers_openssl_removes_are_accepted(self):
        """OpenSSL decides, not the text: ``!``/``-`` exclusions and aliases count."""
        for ciphers in (
            "HIGH:!aNULL:!MD5",
            "ALL:!aNULL:!eNULL",
            "DEFAULT:NULL-SHA256:-NULL-SHA256",
            "DEFAULT:eNULL",  # DEFAULT holds !eNULL, which nothing after it can undo
            "DEFAULT:@SECLEVEL=1",
            "DEFAULT:@SECLEVEL=2",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ):
            self.assertEqual(self.problems(ciphers), [], ciphers)

    def test_the_default_cipher_list_is_sound(self):
        self.assertIsNone(weak_cipher_problem(TLSConfig().ciphers))

    def test_a_self_signed_listener_not_generated_yet_is_checked_too(self):
        text = HTTPS_LISTENER.replace(
            "certificates = [{certificates}]",
            f'self_signed = true\n  state_directory = "{self.dir}/state"\n  ciphers = "aNULL"',
        )
        path = write(self.dir, "tap.conf", text.encode())
        with self.assertRaises(ConfigError) as raised:
            load_checked(path)
        (problem,) = raised.exception.problems
        self.assertIn("listener[0].tls.ciphers: listener 'secure': 'aNULL' is unsafe", problem)


class SelfSignedTests(unittest.TestCase):
    def test_generated_once_for_localhost_with_a_private_key_file(self):
        directory = os.path.join(self.mktemp(), "state")
        self.assertTrue(ensure_self_signed(directory))
        self.assertFalse(ensure_self_signed(directory))
        with open(os.path.join(directory, "selfsigned-cert.pem"), "rb") as stream:
            cert = x509.load_pem_x509_certificate(stream.read())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        mode = os.stat(os.path.join(directory, "selfsigned-key.pem")).st_mode & 0o777
        self.assertEqual(mode, 0o600)
        self.assertEqual(len(fingerprint(cert)), 64)

    def test_expired_demo_certificate_is_renewed(self):
        directory = self.mktemp()
        ensure_self_signed(directory)
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=400)
        self.assertTrue(ensure_self_signed(directory, now=later))


class RedirectTests(unittest.TestCase):
    def test_get_and_head_are_301_others_308(self):
        self.assertEqual(
            [redirect_status(m) for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE")],
            [301, 301, 308, 308, 308],
        )

    def test_location_keeps_host_path_and_query_and_sets_the_port(self):
        cases = [
            ((b"example.com:8080", b"/a?b=1", 443), b"https://example.com/a?b=1"),
            ((b"example.com", b"/", 8443), b"https://example.com:8443/"),
            ((b"[::1]:80", b"/x", 443), b"https://[::1]/x"),
            ((None, b"/x", 443), b"https://fallback/x"),
            ((b"evil.com/@x", b"/x", 443), b"https://fallback/x"),
            ((b"a.test", b"http://a.test/p/q?r=1", 443), b"https://a.test/p/q?r=1"),
            ((b"a.test", b"http://a.test", 8443), b"https://a.test:8443/"),
            ((b"a.test", b"*", 443), b"https://a.test/"),
        ]
        for (host, target, port), location in cases:
            self.assertEqual(https_location(host, target, port, "fallback"), location)
