"""The default WebSocket path: the client's upgrade passed through to the backend and checked.

A scripted backend records the upgrade request it gets and answers with bytes
built from the client's key, so what crosses the proxy in each direction is
seen exactly.
"""

from __future__ import annotations

import base64
import hashlib
import re

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from clbproxy.ws.fastpath import control_frame
from clbproxy.ws.frames import CLOSE
from tests.support.handshakes import WS_KEY, upgrade_request
from tests.support.network import Listening, raw_request

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


class ScriptedBackend(Protocol):
    """Answers an upgrade with ``factory.answer`` (``{accept}`` filled in), then records bytes."""

    def connectionMade(self):
        self.head = b""
        self.after = b""
        self.headed = False
        self.factory.seen.append(self)

    def dataReceived(self, data):
        if not self.headed:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            self.headed = True
            self.head, _, rest = self.head.partition(b"\r\n\r\n")
            self.after += rest
            if self.factory.answer is not None:
                key = re.search(rb"(?im)^sec-websocket-key: *(\S+)", self.head).group(1)
                answer = self.factory.answer.replace(b"{accept}", accept_for(key.decode()).encode())
                self.transport.write(answer)
            self.factory.got_head.callback(self)
            if not rest:
                return
            data = b""
        self.after += data
        if self.factory.got_after is not None and not self.factory.got_after.called:
            self.factory.got_after.callback(self.after)

    def header(self, name: bytes) -> list[bytes]:
        return [
            line.split(b":", 1)[1].strip()
            for line in self.head.split(b"\r\n")[1:]
            if line.split(b":", 1)[0].strip().lower() == name.lower()
        ]


SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: {accept}\r\n"
)


class PassThroughTestCase(unittest.TestCase):
    timeout = 15

    def setUp(self):
        self.net = Listening(self)

    @defer.inlineCallbacks
    def proxy(self, answer: bytes = SWITCH + b"\r\n", group_options=None, **listener_options):
        factory = Factory.forProtocol(ScriptedBackend)
        factory.answer = answer
        factory.seen = []
        factory.got_head = defer.Deferred()
        factory.got_after = None
        backend_port = yield self.net.listen(factory)
        self.addCleanup(lambda: [p.transport.abortConnection() for p in factory.seen])
        port = yield self.net.proxy([backend_port], group_options=group_options, **listener_options)
        return factory, port

    def exchange(self, port, request: bytes, *, close_after: float = 0.3):
        """Send ``request``; all bytes the proxy sends back until it closes or ``close_after``."""
        received = []
        done = defer.Deferred()

        class Client(Protocol):
            def connectionMade(self):
                self.transport.write(request)
                self.call = reactor.callLater(close_after, self.transport.abortConnection)

            def dataReceived(self, data):
                received.append(data)

            def connectionLost(self, reason):
                if self.call.active():
                    self.call.cancel()
                done.callback(b"".join(received))

        from twisted.internet.endpoints import TCP4ClientEndpoint

        TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(Client))
        return done


class BackendRequestTests(PassThroughTestCase):
    @defer.inlineCallbacks
    def test_the_backend_gets_the_clients_own_key_and_subprotocols(self):
        backend, port = yield self.proxy()
        extra = b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        self.exchange(port, upgrade_request(extra=extra))
        seen = yield backend.got_head
        self.assertEqual(seen.header(b"sec-websocket-key"), [WS_KEY.encode()])
        self.assertEqual(seen.header(b"sec-websocket-version"), [b"13"])
        self.assertEqual(seen.header(b"sec-websocket-protocol"), [b"chat, superchat"])
        self.assertEqual(seen.header(b"upgrade"), [b"websocket"])
        self.assertEqual(seen.header(b"connection"), [b"Upgrade"])
        self.assertTrue(seen.head.startswith(b"GET /echo HTTP/1.1\r\n"))

    @defer.inlineCallbacks
    def test_only_the_first_permessage_deflate_offer_is_forwarded(self):
        backend, port = yield self.proxy()
        extra = (
            b"Sec-WebSocket-Extensions: x-webkit-deflate-frame, "
            b"permessage-deflate; client_max_window_bits, permessage-deflate\r\n"
        )
        self.exchange(port, upgrade_request(extra=extra))
        seen = yield backend.got_head
        (offer,) = seen.header(b"sec-websocket-extensions")
        self.assertTrue(offer.startswith(b"permessage-deflate"), offer)
        self.assertIn(b"client_max_window_bits", offer)
        self.assertNotIn(b"x-webkit", offer)
        self.assertEqual(offer.count(b"permessage-deflate"), 1)

    @defer.inlineCallbacks
    def test_forwarding_headers_are_added_and_hop_by_hop_ones_dropped(self):
        backend, port = yield self.proxy()
        extra = b"Keep-Alive: timeout=5\r\nX-Forwarded-For: 6.6.6.6\r\nX-App: 1\r\n"
        self.exchange(port, upgrade_request(host="example.test:8080", extra=extra))
        seen = yield backend.got_head
        self.assertEqual(seen.header(b"host"), [b"example.test:8080"])
        # Appended to, as nginx's $proxy_add_x_forwarded_for does.
        self.assertEqual(seen.header(b"x-forwarded-for"), [b"6.6.6.6, 127.0.0.1"])
        self.assertEqual(seen.header(b"x-forwarded-host"), [b"example.test:8080"])
        self.assertEqual(seen.header(b"x-app"), [b"1"])
        self.assertEqual(seen.header(b"keep-alive"), [])


class ClientAnswerTests(PassThroughTestCase):
    @defer.inlineCallbacks
    def test_the_client_gets_the_accept_for_its_key_and_the_backends_own_headers(self):
        answer = SWITCH + (
            b"Sec-WebSocket-Protocol: chat\r\nX-Backend: b1\r\nKeep-Alive: timeout=5\r\n"
            b"Server: backend/1.0\r\n\r\n"
        )
        _, port = yield self.proxy(answer)
        extra = b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        response = yield self.exchange(port, upgrade_request(extra=extra))
        head = response.split(b"\r\n\r\n", 1)[0]
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertIn(b"Sec-WebSocket-Accept: " + accept_for(WS_KEY).encode(), head)
        self.assertIn(b"Sec-WebSocket-Protocol: chat\r\n", head + b"\r\n")
        self.assertIn(b"X-Backend: b1", head)
        self.assertIn(b"Server: clbproxy", head)
        self.assertNotIn(b"backend/1.0", head)
        self.assertNotIn(b"Keep-Alive", head)

    @defer.inlineCallbacks
    def test_frames_the_backend_sends_with_its_101_follow_the_clients_101(self):
        pushed = b"\x81\x05hello"
        _, port = yield self.proxy(SWITCH + b"\r\n" + pushed)
        response = yield self.exchange(port, upgrade_request())
        head, _, rest = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
        self.assertEqual(rest[: len(pushed)], pushed)

    @defer.inlineCallbacks
    def test_frames_the_client_sends_behind_its_upgrade_reach_the_backend_after_the_101(self):
        backend, port = yield self.proxy()
        backend.got_after = defer.Deferred()
        frame = control_frame(CLOSE, (1000).to_bytes(2, "big"), mask=True)
        self.exchange(port, upgrade_request() + frame)
        after = yield backend.got_after
        # The backend hop's Close is the client's, re-masked or passed; the code survives.
        self.assertEqual(after[0], 0x88)

    @defer.inlineCallbacks
    def test_a_backend_refusal_is_passed_back_whole(self):
        answer = (
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"
            b"Content-Length: 4\r\n\r\nnope"
        )
        _, port = yield self.proxy(answer)
        response = yield raw_request(port, upgrade_request())
        self.assertTrue(response.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), response)
        self.assertIn(b"WWW-Authenticate: Bearer", response)
        self.assertTrue(response.endswith(b"nope"))


class BackendAnswerCheckTests(PassThroughTestCase):
    @defer.inlineCallbacks
    def assert_502(self, answer: bytes, reason: bytes, extra: bytes = b""):
        _, port = yield self.proxy(answer)
        response = yield raw_request(port, upgrade_request(extra=extra))
        self.assertTrue(response.startswith(b"HTTP/1.1 502 "), response)
        self.assertIn(reason, response)

    def test_a_wrong_accept_is_502(self):
        answer = SWITCH.replace(b"{accept}", b"c2VjcmV0c2VjcmV0c2VjcmV0c2U=") + b"\r\n"
        return self.assert_502(answer, b"Sec-WebSocket-Accept")

    def test_a_subprotocol_not_offered_is_502(self):
        answer = SWITCH + b"Sec-WebSocket-Protocol: other\r\n\r\n"
        extra = b"Sec-WebSocket-Protocol: chat\r\n"
        return self.assert_502(answer, b"Sec-WebSocket-Protocol", extra)

    def test_a_malformed_answer_is_502(self):
        return self.assert_502(b"HTTP/1.1 1O1 Switching\r\n\r\n", b"malformed")

    @defer.inlineCallbacks
    def test_a_backend_that_does_not_answer_gets_504(self):
        _, port = yield self.proxy(None, group_options={"response_timeout": 0.3})
        started = reactor.seconds()
        response = yield raw_request(port, upgrade_request())
        self.assertTrue(response.startswith(b"HTTP/1.1 504 "), response)
        self.assertLess(reactor.seconds() - started, 5)


class SessionEndTests(PassThroughTestCase):
    @defer.inlineCallbacks
    def test_a_client_leaving_during_the_handshake_ends_the_session(self):
        backend, port = yield self.proxy(None)
        self.exchange(port, upgrade_request(), close_after=0.05)
        yield backend.got_head
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.net.service.relay.sessions, set())
