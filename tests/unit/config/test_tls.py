"""``[listener.tls]``, HTTPS redirects and TLS to backends."""

from __future__ import annotations

from twisted.trial import unittest

from tests.unit.config.loading import LoaderMixin, document


class TLSKeyProblemTests(LoaderMixin, unittest.TestCase):
    def test_tls_key_problems(self) -> None:
        https = {"protocol": '"https"'}
        cases = {
            "tls on http listener": (
                document(listener={"tls": "{ self_signed = true }"}),
                'listener[0].tls: only HTTPS listeners have TLS settings (protocol = "https")',
            ),
            "neither certificates nor self_signed": (
                document(listener={**https, "tls": "{ }"}),
                "listener[0].tls: give either certificates = [...] or self_signed = true",
            ),
            "min version": (
                document(listener={**https, "tls": '{ self_signed = true, min_version = "1.1" }'}),
                "listener[0].tls.min_version: unknown TLS version '1.1'; must be one of: "
                "'1.2', '1.3'",
            ),
            "client_auth without client_ca": (
                document(
                    listener={**https, "tls": '{ self_signed = true, client_auth = "optional" }'}
                ),
                "listener[0].tls.client_auth: needs client_ca, the CAs that sign client "
                "certificates",
            ),
            "certificate without key": (
                document(listener={**https, "tls": '{ certificates = [{ cert = "a.pem" }] }'}),
                "listener[0].tls.certificates[0]: missing required key 'key'",
            ),
            "unknown tls key": (
                document(listener={**https, "tls": "{ self_signed = true, tickets = false }"}),
                "listener[0].tls: unknown key 'tickets' (did you mean 'session_tickets'?)",
            ),
            "redirect on https": (
                document(
                    listener={**https, "tls": "{ self_signed = true }", "redirect_to_https": "true"}
                ),
                "listener[0].redirect_to_https: is for HTTP listeners; this listener is "
                "already HTTPS",
            ),
            "https port": (
                document(listener={"https_port": "0"}),
                "listener[0].https_port: 0 out of range 1-65535",
            ),
            "backend scheme": (
                document(group={"scheme": '"ftp"'}),
                "target_group.demo.scheme: unknown scheme 'ftp'; must be one of: 'http', 'ws', "
                "'https', 'wss'",
            ),
            "verify without tls": (
                document(group={"verify": "false"}),
                'target_group.demo.verify: only applies with scheme = "wss" or "https"',
            ),
        }
        found = self.problem_table({name: text for name, (text, _) in cases.items()})
        expected = {name: [f"tap.conf: {message}"] for name, (_, message) in cases.items()}
        self.assertEqual(found, expected)

    def test_redirect_listener_needs_no_rules(self) -> None:
        config = self.load(
            document(listener={"redirect_to_https": "true", "https_port": "8443"}).replace(
                '[[listener.rule]]\ntarget_group = "demo"\n', ""
            )
        )
        listener = config.listeners[0]
        self.assertEqual(
            (listener.redirect_to_https, listener.https_port, listener.rules), (True, 8443, ())
        )

    def test_strict_sni_is_off_unless_asked_for(self) -> None:
        https = {"protocol": '"https"'}
        plain = self.load(document(listener={**https, "tls": "{ self_signed = true }"}))
        strict = self.load(
            document(listener={**https, "tls": "{ self_signed = true, strict_sni = true }"})
        )
        self.assertEqual(
            (plain.listeners[0].tls.strict_sni, strict.listeners[0].tls.strict_sni), (False, True)
        )
        self.assertEqual(
            self.problems(
                document(listener={**https, "tls": '{ self_signed = true, strict_sni = "yes" }'})
            ),
            ["tap.conf: listener[0].tls.strict_sni: expected true or false, got a string"],
        )

    def test_http_pool_settings_model(self) -> None:
        default = self.load(document()).target_groups[0]
        group = self.load(
            document(group={"http_pool_max_idle": "0", "http_pool_idle_timeout": '"90s"'})
        ).target_groups[0]
        self.assertEqual(
            [
                (default.http_pool_max_idle, default.http_pool_idle_timeout),
                (group.http_pool_max_idle, group.http_pool_idle_timeout),
            ],
            [(64, 60.0), (0, 90.0)],
        )

    def test_wss_target_group_model(self) -> None:
        config = self.load(
            document(group={"scheme": '"wss"', "verify": "false", "server_name": '"API.internal"'})
        )
        group = config.target_groups[0]
        self.assertEqual(
            (group.tls, group.verify, group.server_name), (True, False, "api.internal")
        )
