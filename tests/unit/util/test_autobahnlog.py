"""Autobahn's debug-log arguments are built only when a debug line is written."""

from __future__ import annotations

from pprint import pformat

import txaio
from autobahn import util
from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.config import ListenerConfig
from clbproxy.routing.settings import ListenerSettings
from clbproxy.util import autobahnlog
from clbproxy.ws.relay import RelayServerFactory


class LazyDebugArgumentsTests(unittest.TestCase):
    def setUp(self) -> None:
        listener = ListenerConfig(name="web", bind="tcp:0", rules=())
        RelayServerFactory(ListenerSettings.from_config(listener, {}), MemoryReactorClock())

    def test_building_the_relay_factory_installs_the_lazy_helpers(self) -> None:
        self.assertTrue(autobahnlog.installed())
        self.assertIsNot(protocol.hltype, util.hltype)
        self.assertIsNot(twisted_websocket.hlval, util.hlval)

    def test_install_twice_changes_nothing(self) -> None:
        before = (protocol.hltype, protocol.pformat)
        autobahnlog.install()
        self.assertEqual((protocol.hltype, protocol.pformat), before)

    def test_lazy_type_name_formats_as_autobahn_would(self) -> None:
        lazy = protocol.hltype(self.test_install_twice_changes_nothing)
        self.assertEqual(str(lazy), util.hltype(self.test_install_twice_changes_nothing))
        self.assertEqual(f"{lazy}", util.hltype(self.test_install_twice_changes_nothing))
        self.assertEqual(f"{protocol.hlval(42)}", util.hlval(42))

    def test_lazy_value_is_not_computed_until_formatted(self) -> None:
        calls = []

        def expensive(value):
            calls.append(value)
            return "text"

        lazy = autobahnlog._lazy(expensive)(1)
        self.assertEqual(calls, [])
        self.assertEqual(str(lazy), "text")
        self.assertEqual(calls, [1])

    def test_pformat_is_skipped_unless_autobahn_logs_debug(self) -> None:
        data = [("openHandshakeTimeout", 5, "Factory")]
        self.assertNotEqual(protocol.pformat(data), pformat(data))
        previous = txaio.get_global_log_level()
        txaio.set_global_log_level("debug")
        self.addCleanup(txaio.set_global_log_level, previous)
        self.assertEqual(protocol.pformat(data), pformat(data))
