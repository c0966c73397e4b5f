"""Session controls in tap.conf: message and byte rates per listener and rule, lifetimes."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.routing.settings import ListenerSettings
from tests.unit.config.loading import LoaderMixin, document


class SessionControlKeysTests(LoaderMixin, unittest.TestCase):
    def test_the_listener_keys_are_read(self):
        config = self.load(
            document(
                listener={
                    "websocket_message_rate": "50",
                    "websocket_message_burst": "200",
                    "websocket_byte_rate": '"1MiB"',
                    "websocket_byte_burst": '"4MiB"',
                    "websocket_rate_action": '"close"',
                    "websocket_max_lifetime": '"2h"',
                    "websocket_lifetime_spread": "0.25",
                }
            )
        )
        listener = config.listeners[0]
        self.assertEqual(
            (
                listener.websocket_message_rate,
                listener.websocket_message_burst,
                listener.websocket_byte_rate,
                listener.websocket_byte_burst,
                listener.websocket_rate_action,
                listener.websocket_max_lifetime,
                listener.websocket_lifetime_spread,
            ),
            (50.0, 200, 1024 * 1024, 4 * 1024 * 1024, "close", 7200.0, 0.25),
        )

    def test_everything_is_off_by_default(self):
        listener = self.load(document()).listeners[0]
        settings = ListenerSettings.from_config(listener, {})
        self.assertEqual(settings.rate_limits(listener.rules[0]), (0.0, 0, 0, 0, "throttle"))
        self.assertEqual(
            (listener.websocket_max_lifetime, listener.websocket_lifetime_spread), (0.0, 0.1)
        )

    def test_a_rule_overrides_the_listeners_limits_key_by_key(self):
        listener = self.load(
            document(
                listener={"websocket_message_rate": "10", "websocket_byte_rate": "1000"},
                rule={"websocket_message_rate": "0", "websocket_rate_action": '"close"'},
            )
        ).listeners[0]
        settings = ListenerSettings.from_config(listener, {})
        self.assertEqual(settings.rate_limits(listener.rules[0]), (0.0, 0, 1000, 0, "close"))

    def test_a_tunnel_rule_may_have_a_byte_rate(self):
        listener = self.load(
            document(rule={"relay": '"tunnel"', "websocket_byte_rate": '"64KiB"'})
        ).listeners[0]
        self.assertEqual(listener.rules[0].websocket_byte_rate, 64 * 1024)

    def test_a_tunnel_rule_may_turn_the_listeners_message_rate_off(self):
        self.load(
            document(
                listener={"websocket_message_rate": "10"},
                rule={"relay": '"tunnel"', "websocket_message_rate": "0"},
            )
        )


class SessionControlProblemTests(LoaderMixin, unittest.TestCase):
    def test_problems(self):
        cases = {
            "message rate on a tunnel rule": (
                document(rule={"relay": '"tunnel"', "websocket_message_rate": "5"}),
                'listener[0].rule[0].websocket_message_rate: a relay = "tunnel" rule reads no '
                "messages; limit its bytes (websocket_byte_rate) instead",
            ),
            "listener message rate over a tunnel rule": (
                document(listener={"websocket_message_rate": "5"}, rule={"relay": '"tunnel"'}),
                'listener[0].websocket_message_rate: applies to rule[0], a relay = "tunnel" '
                "rule, which reads no messages: set websocket_message_rate = 0 on that rule "
                "(or limit bytes)",
            ),
            "negative rate": (
                document(listener={"websocket_message_rate": "-1"}),
                "listener[0].websocket_message_rate: -1 out of range 0-10000000 (0: no limit)",
            ),
            "rate as text": (
                document(rule={"websocket_message_rate": '"fast"'}),
                "listener[0].rule[0].websocket_message_rate: expected a number of messages per "
                "second, got a string",
            ),
            "action": (
                document(listener={"websocket_rate_action": '"drop"'}),
                "listener[0].websocket_rate_action: unknown rate action 'drop'; must be one of: "
                "'throttle', 'close'",
            ),
            "spread over one": (
                document(listener={"websocket_lifetime_spread": "1.5"}),
                "listener[0].websocket_lifetime_spread: 1.5 out of range 0-1",
            ),
        }
        for name, (text, expected) in cases.items():
            self.assertEqual(self.problems(text), [f"tap.conf: {expected}"], name)
