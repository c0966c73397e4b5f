"""ListenerRequest: who is told when a request ends (notifyFinish, on_finish, on_lost)."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET

from clbproxy.config import ListenerConfig
from clbproxy.listener.connection import ListenerSite


class Root:
    def __init__(self) -> None:
        self.requests: list = []

    def render(self, request):
        self.requests.append(request)
        return NOT_DONE_YET


class NotificationTests(unittest.TestCase):
    def setUp(self):
        self.root = Root()
        config = ListenerConfig(name="web", bind="tcp:0", rules=())
        site = ListenerSite(self.root, config, MemoryReactorClock())
        self.connection = site.buildProtocol(None)
        self.connection.makeConnection(StringTransport())
        self.connection.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        (self.request,) = self.root.requests
        self.told: list = []

    def listen_every_way(self):
        request, told = self.request, self.told
        request.on_finish(lambda result: told.append(("on_finish", result)))
        request.notifyFinish().addBoth(lambda result: told.append(("deferred", result)))
        request.on_lost(lambda reason: told.append(("on_lost", reason)))

    def test_a_finished_request_tells_waiters_in_order_and_not_on_lost(self):
        self.listen_every_way()
        self.request.finish()
        self.assertEqual(self.told, [("on_finish", None), ("deferred", None)])

    def test_a_lost_client_tells_every_waiter_the_reason_in_order(self):
        self.listen_every_way()
        self.connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([who for who, _ in self.told], ["on_finish", "deferred", "on_lost"])
        self.assertTrue(all(reason.check(ConnectionDone) for _, reason in self.told))

    def test_a_failing_callback_is_logged_and_the_others_are_still_told(self):
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.request.on_finish(lambda result: 1 / 0)
        self.listen_every_way()
        self.request.finish()
        self.assertEqual(self.told, [("on_finish", None), ("deferred", None)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(any("request ended" in e.get("log_format", "") for e in events))

    def test_a_callback_asked_after_a_deferred_is_told_after_it(self):
        request, told = self.request, self.told
        request.notifyFinish().addBoth(lambda result: told.append(("deferred", result)))
        request.on_finish(lambda result: told.append(("on_finish", result)))
        request.on_finish(lambda result: told.append(("second", result)))
        request.finish()
        self.assertEqual(told, [("deferred", None), ("on_finish", None), ("second", None)])

    def test_a_callback_asked_after_a_deferred_is_told_after_it_when_the_client_leaves(self):
        request, told = self.request, self.told
        request.on_lost(lambda reason: told.append("on_lost"))
        request.on_finish(lambda result: told.append("on_finish"))
        self.connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(told, ["on_lost", "on_finish"])

    def test_a_finished_request_with_only_on_lost_waiters_tells_none_of_them_ever(self):
        request, told = self.request, self.told
        request.on_lost(lambda reason: told.append("on_lost"))
        request.finish()
        request.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(told, [])
