"""Which reloads send a listener's HTTP/2 connections GOAWAY
(:func:`clbproxy.listener.service.connection_settings_changed`)."""

from __future__ import annotations

import attrs
from twisted.trial import unittest

from clbproxy.config import CertificateConfig, ListenerConfig, RuleConfig, TLSConfig
from clbproxy.listener.service import connection_settings_changed

TLS = TLSConfig(certificates=(CertificateConfig(cert="/etc/a.pem", key="/etc/a.key"),))
BEFORE = ListenerConfig(
    name="web", bind="tcp:443", protocol="https", tls=TLS, http2=True, rules=(RuleConfig(),)
)


class ConnectionSettingsTests(unittest.TestCase):
    def test_which_changes_end_http2_connections(self) -> None:
        changes = {
            "http2 off": {"http2": False},
            "concurrent streams": {"http2_max_concurrent_streams": 50},
            "connection window": {"http2_connection_window": 2 * 1024 * 1024},
            "protocol": {"protocol": "http", "tls": None, "http2": False},
            "certificates": {
                "tls": attrs.evolve(
                    TLS, certificates=(CertificateConfig(cert="/etc/b.pem", key="/etc/b.key"),)
                )
            },
            "strict SNI": {"tls": attrs.evolve(TLS, strict_sni=True)},
            "rules": {"rules": (RuleConfig(path="/api"),)},
            "limits": {"max_connections": 10, "max_connections_per_ip": 3},
            "timeouts": {"keepalive_timeout": 5.0},
        }
        found = {
            name: connection_settings_changed(BEFORE, attrs.evolve(BEFORE, **change))
            for name, change in changes.items()
        }
        self.assertEqual(
            found,
            {
                "http2 off": True,
                "concurrent streams": True,
                "connection window": True,
                "protocol": True,
                "certificates": True,
                "strict SNI": True,
                "rules": False,
                "limits": False,
                "timeouts": False,
            },
        )

    def test_the_same_settings_change_nothing(self) -> None:
        self.assertFalse(connection_settings_changed(BEFORE, attrs.evolve(BEFORE)))
