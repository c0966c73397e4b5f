"""The embedded demo backend, over real sockets on 127.0.0.1 and with a fake clock."""

from __future__ import annotations

import json
import os
from functools import wraps
from typing import Any, Callable, Coroutine, Optional

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from clbproxy.config import DemoBackendConfig
from clbproxy.demo.backend import (
    MAX_NICK,
    MAX_TEXT,
    TICK_INTERVAL,
    ChatRoom,
    InvalidChatMessage,
    demo_service,
    parseSay,
)


def asyncTest(f: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Deferred[None]]:
    """Run an ``async def`` test method as the Deferred trial waits for."""

    @wraps(f)
    def run(self: TestCase) -> Deferred[None]:
        return ensureDeferred(f(self))

    return run


class RecordingClient(WebSocketClientProtocol):
    """A WebSocket client that queues what it receives, for tests to await."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self._received: list[tuple[bytes, bool]] = []
        self._waiting: list[Deferred[tuple[bytes, bool]]] = []
        self._lost = False
        self._whenLost: list[Deferred[None]] = []
        self.closeCode: Optional[int] = None
        self.closeReason: Optional[str] = None

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._waiting:
            self._waiting.pop(0).callback((payload, isBinary))
        else:
            self._received.append((payload, isBinary))

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.closeCode, self.closeReason = code, reason

    def connectionLost(self, reason: object) -> None:
        super().connectionLost(reason)
        self._lost = True
        waiting, self._whenLost = self._whenLost, []
        for d in waiting:
            d.callback(None)

    def nextMessage(self) -> Deferred[tuple[bytes, bool]]:
        if self._received:
            return succeed(self._received.pop(0))
        d: Deferred[tuple[bytes, bool]] = Deferred()
        self._waiting.append(d)
        return d

    async def nextEvent(self, kind: str) -> dict[str, Any]:
        """The next JSON event of type ``kind``, skipping events of other types."""
        while True:
            payload, isBinary = await self.nextMessage()
            event = json.loads(payload)
            if event["type"] == kind:
                return event

    def close(self) -> Deferred[None]:
        """Close the session and fire once the TCP connection is gone."""
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._whenLost.append(d)
        if self.state == self.STATE_OPEN:
            self.sendClose(1000)
        else:
            self.transport.loseConnection()
        return d


def acceptDeflateResponse(response: object) -> Optional[PerMessageDeflateResponseAccept]:
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


class DemoServers(TestCase):
    """Helpers to run demo instances on free ports and talk to them."""

    timeout = 8

    def setUp(self) -> None:
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def startDemo(self, name: str = "demo-a", room: Optional[ChatRoom] = None) -> int:
        """Start a demo instance on a free port (stopped at cleanup); its port number."""
        service = demo_service(
            DemoBackendConfig(name, "tcp:0:interface=127.0.0.1"), room or ChatRoom(reactor), reactor
        )
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.whenListening()
        return port.getHost().port

    async def connect(
        self,
        port: int,
        path: str,
        protocols: Optional[list[str]] = None,
        deflate: bool = False,
    ) -> RecordingClient:
        """An open WebSocket session to ``path`` (closed at cleanup)."""
        factory = WebSocketClientFactory(
            f"ws://127.0.0.1:{port}{path}", protocols=protocols or [], reactor=reactor
        )
        factory.protocol = RecordingClient
        if deflate:
            factory.setProtocolOptions(
                perMessageCompressionOffers=[PerMessageDeflateOffer()],
                perMessageCompressionAccept=acceptDeflateResponse,
            )
        client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        self.addCleanup(client.close)
        await client.opened
        return client

    async def get(self, port: int, path: str, headers: Optional[dict[str, str]] = None) -> Any:
        response = await self.http.get(f"http://127.0.0.1:{port}{path}", headers=headers)
        body = await response.content()
        return response, body


class PageTests(DemoServers):
    @asyncTest
    async def test_page_names_the_instance(self) -> None:
        port = await self.startDemo("demo-b")
        response, body = await self.get(port, "/")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"]
        )
        self.assertIn(b"demo-b", body)
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])

    @asyncTest
    async def test_page_assets_are_served(self) -> None:
        port = await self.startDemo()
        for path in ("/app.js", "/style.css"):
            response, body = await self.get(port, path)
            self.assertEqual(response.code, 200, path)
            self.assertTrue(body, path)

    @asyncTest
    async def test_unknown_path_is_not_found(self) -> None:
        port = await self.startDemo()
        response, _ = await self.get(port, "/nope")
        self.assertEqual(response.code, 404)


class InfoTests(DemoServers):
    @asyncTest
    async def test_info_reports_forwarding_headers(self) -> None:
        port = await self.startDemo("demo-a")
        forwarded = {
            "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "www.example.com",
            "X-Real-IP": "203.0.113.7",
        }
        response, body = await self.get(port, "/api/info", forwarded)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        info = json.loads(body)
        self.assertEqual(info["backend"], "demo-a")
        self.assertEqual(info["headers"], {"Host": f"127.0.0.1:{port}", **forwarded})
        self.assertTrue(info["client"].startswith("127.0.0.1:"), info["client"])

    @asyncTest
    async def test_info_reports_absent_headers_as_null(self) -> None:
        port = await self.startDemo()
        _, body = await self.get(port, "/api/info")
        self.assertIsNone(json.loads(body)["headers"]["X-Forwarded-For"])


class EchoTests(DemoServers):
    @asyncTest
    async def test_echo_returns_text_unchanged(self) -> None:
        client = await self.connect(await self.startDemo(), "/echo")
        client.sendMessage("héllo, proxy ✓".encode(), isBinary=False)
        self.assertEqual(await client.nextMessage(), ("héllo, proxy ✓".encode(), False))

    @asyncTest
    async def test_echo_returns_large_binary_unchanged(self) -> None:
        client = await self.connect(await self.startDemo(), "/echo")
        payload = os.urandom(1024 * 1024)
        client.sendMessage(payload, isBinary=True)
        self.assertEqual(await client.nextMessage(), (payload, True))

    @asyncTest
    async def test_echo_accepts_permessage_deflate(self) -> None:
        client = await self.connect(await self.startDemo(), "/echo", deflate=True)
        self.assertEqual(
            [e.EXTENSION_NAME for e in client.websocket_extensions_in_use],
            ["permessage-deflate"],
        )
        payload = b"compressible " * 10000
        client.sendMessage(payload, isBinary=True)
        self.assertEqual(await client.nextMessage(), (payload, True))

    @asyncTest
    async def test_known_subprotocol_is_chosen(self) -> None:
        client = await self.connect(await self.startDemo(), "/echo", ["x.v9", "echo.v1"])
        self.assertEqual(client.websocket_protocol_in_use, "echo.v1")

    @asyncTest
    async def test_unknown_subprotocols_choose_none(self) -> None:
        client = await self.connect(await self.startDemo(), "/echo", ["x.v9"])
        self.assertIsNone(client.websocket_protocol_in_use)


class ChatTests(DemoServers):
    @asyncTest
    async def test_chat_welcomes_with_backend_and_members(self) -> None:
        client = await self.connect(await self.startDemo("demo-b"), "/chat")
        welcome = await client.nextEvent("welcome")
        self.assertEqual(welcome, {"type": "welcome", "backend": "demo-b", "members": 1})

    @asyncTest
    async def test_message_reaches_clients_of_another_instance(self) -> None:
        room = ChatRoom(reactor)
        portA = await self.startDemo("demo-a", room)
        portB = await self.startDemo("demo-b", room)
        onB = await self.connect(portB, "/chat")
        await onB.nextEvent("welcome")
        onA = await self.connect(portA, "/chat")
        self.assertEqual((await onA.nextEvent("welcome"))["members"], 2)
        presence = await onB.nextEvent("presence")
        self.assertEqual(
            (presence["event"], presence["backend"], presence["members"]), ("join", "demo-a", 2)
        )

        onA.sendMessage(json.dumps({"type": "say", "nick": "ann", "text": "hi b"}).encode())

        received = await onB.nextEvent("message")
        self.assertEqual(
            (received["nick"], received["text"], received["backend"]), ("ann", "hi b", "demo-a")
        )
        self.assertIn("T", received["time"])
        self.assertEqual((await onA.nextEvent("message"))["text"], "hi b")

    @asyncTest
    async def test_leaving_is_announced(self) -> None:
        room = ChatRoom(reactor)
        port = await self.startDemo("demo-a", room)
        staying = await self.connect(port, "/chat")
        leaving = await self.connect(port, "/chat")
        leaving.sendMessage(json.dumps({"type": "say", "nick": "bo", "text": "bye"}).encode())
        await leaving.nextEvent("message")
        await leaving.close()
        presence = await staying.nextEvent("presence")
        while presence["event"] != "leave":
            presence = await staying.nextEvent("presence")
        self.assertEqual((presence["nick"], presence["members"]), ("bo", 1))

    @asyncTest
    async def test_bad_json_gets_an_error_and_the_session_stays_open(self) -> None:
        client = await self.connect(await self.startDemo(), "/chat")
        client.sendMessage(b"{not json")
        error = await client.nextEvent("error")
        self.assertEqual(error["error"], "message is not valid JSON")

        client.sendMessage(json.dumps({"type": "say", "nick": "c", "text": "still here"}).encode())
        self.assertEqual((await client.nextEvent("message"))["text"], "still here")

    @asyncTest
    async def test_binary_chat_message_gets_an_error(self) -> None:
        client = await self.connect(await self.startDemo(), "/chat")
        client.sendMessage(b"\x00\x01", isBinary=True)
        self.assertEqual((await client.nextEvent("error"))["error"], "chat messages are JSON text")


class ServiceTests(DemoServers):
    def test_service_is_named_after_the_instance(self) -> None:
        room = ChatRoom(reactor)
        service = demo_service(DemoBackendConfig("demo-a", "tcp:0"), room, reactor)
        self.assertEqual(service.name, "demo:demo-a")

    @asyncTest
    async def test_busy_port_fails_start_up(self) -> None:
        port = await self.startDemo()
        second = demo_service(
            DemoBackendConfig("demo-b", f"tcp:{port}:interface=127.0.0.1"),
            ChatRoom(reactor),
            reactor,
        )
        self.assertRaises(CannotListenError, second.privilegedStartService)

    @asyncTest
    async def test_stopping_closes_sessions_going_away(self) -> None:
        room = ChatRoom(reactor)
        service = demo_service(
            DemoBackendConfig("demo-a", "tcp:0:interface=127.0.0.1"), room, reactor
        )
        service.startService()
        port = (await service.whenListening()).getHost().port
        client = await self.connect(port, "/chat")

        await service.stopService()

        await client.close()
        self.assertEqual(client.closeCode, 1001)
        self.assertEqual(room.members, 0)


class RecordingMember:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def sendEvent(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class ChatRoomTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.room = ChatRoom(self.clock)
        self.member = RecordingMember()

    def test_room_pushes_ticks_while_running(self) -> None:
        self.room.start()
        self.room.join(self.member, "demo-a")
        self.clock.advance(TICK_INTERVAL)
        self.clock.advance(TICK_INTERVAL)
        ticks = [e for e in self.member.events if e["type"] == "tick"]
        self.assertEqual(
            ticks,
            [
                {"type": "tick", "time": "1970-01-01T00:00:10.000+00:00", "members": 1},
                {"type": "tick", "time": "1970-01-01T00:00:20.000+00:00", "members": 1},
            ],
        )

    def test_room_ticks_until_its_last_instance_stops(self) -> None:
        self.room.start()
        self.room.start()
        self.room.join(self.member, "demo-a")
        self.room.stop()
        self.clock.advance(TICK_INTERVAL)
        self.assertEqual(self.member.events[-1]["type"], "tick")
        self.room.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_message_names_the_receiving_backend(self) -> None:
        self.room.start()
        self.clock.advance(1.5)
        self.room.join(self.member, "demo-a")
        self.room.say("ann", "hello", "demo-b")
        self.assertEqual(
            self.member.events[-1],
            {
                "type": "message",
                "nick": "ann",
                "text": "hello",
                "backend": "demo-b",
                "time": "1970-01-01T00:00:01.500+00:00",
            },
        )
        self.room.stop()

    def test_joining_member_is_welcomed_and_others_told(self) -> None:
        self.room.start()
        other = RecordingMember()
        self.room.join(other, "demo-a")
        self.room.join(self.member, "demo-b")
        self.assertEqual(
            self.member.events, [{"type": "welcome", "backend": "demo-b", "members": 2}]
        )
        self.assertEqual(
            other.events[-1],
            {
                "type": "presence",
                "event": "join",
                "nick": None,
                "backend": "demo-b",
                "members": 2,
                "time": "1970-01-01T00:00:00.000+00:00",
            },
        )
        self.room.stop()


class ParseSayTests(SynchronousTestCase):
    def test_nick_and_text_are_capped(self) -> None:
        nick, text = parseSay(json.dumps({"type": "say", "nick": "n" * 100, "text": "t" * 5000}))
        self.assertEqual((len(nick), len(text)), (MAX_NICK, MAX_TEXT))

    def test_wrong_shapes_are_refused(self) -> None:
        for payload in (
            b"[1, 2]",
            b'{"type": "shout", "nick": "a", "text": "b"}',
            b'{"type": "say", "nick": "", "text": "b"}',
            b'{"type": "say", "nick": "a", "text": 3}',
            b"[" * 100000,
        ):
            self.assertRaises(InvalidChatMessage, parseSay, payload)
