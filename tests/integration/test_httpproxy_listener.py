"""The HTTP forwarder's integration tests with the listener's own connection in front.

:mod:`tests.integration.test_httpproxy` puts twisted.web's ``ProxySite`` in front
of the forwarder; here the same tests run with the listener's
:class:`~clbproxy.listener.connection.ListenerSite` (the sans-IO parser, its
lean requests) instead, on each parser back end.
"""

from __future__ import annotations

from typing import List

from twisted.internet import reactor

from clbproxy.config import ListenerConfig
from clbproxy.listener.connection import ListenerConnection, ListenerSite
from tests.integration import test_httpproxy
from tests.support.parsers import choose_parser


class TrackedListenerConnection(test_httpproxy._Tracked, ListenerConnection):
    """A listener connection whose end can be awaited."""


class TrackedListenerSite(test_httpproxy._TrackedSiteMixin, ListenerSite):
    """The front: the listener's connections, with the listener defaults."""

    protocol = TrackedListenerConnection

    def __init__(self, resource) -> None:
        super().__init__(resource, ListenerConfig(name="front", bind="tcp:0", rules=()), reactor)
        self.channels: List[test_httpproxy._Tracked] = []


class _OnListener:
    parser = ""

    async def setUp(self) -> None:
        choose_parser(self, self.parser)
        self.patch(test_httpproxy, "TrackedProxySite", TrackedListenerSite)
        self.fronts: List[TrackedListenerSite] = []
        await super().setUp()

    async def listen(self, factory, *args) -> int:
        if isinstance(factory, TrackedListenerSite):
            self.fronts.append(factory)
        return await super().listen(factory, *args)

    async def test_the_front_is_the_listeners_connection_on_the_chosen_parser(self) -> None:
        url = await self.start_proxy()
        await self.get(url + "/")
        (front,) = self.fronts
        (connection,) = front.channels
        self.assertIsInstance(connection, ListenerConnection)
        self.assertEqual(front.backend, self.parser)


class ForwarderBehindHttptoolsTests(_OnListener, test_httpproxy.HTTPForwarderTests):
    parser = "httptools"


class ForwarderBehindH11Tests(_OnListener, test_httpproxy.HTTPForwarderTests):
    parser = "h11"
