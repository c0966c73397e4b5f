"""The WebSocket relay over real sockets on 127.0.0.1: handshakes, messages, closes, flow."""

from __future__ import annotations

import gc
import json
import os
import platform
import weakref

from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.internet import defer, reactor, task
from twisted.internet.tcp import Connector
from twisted.trial import unittest

from clbproxy.listener.service import ListenerResource
from clbproxy.ws.fastpath import Hop
from clbproxy.ws.handshake_stage import RelayClientFactory
from clbproxy.ws.passthrough import BackendUpgrade, ClientWaiting
from clbproxy.ws.relay import RelayServerFactory
from tests.support.handshakes import upgrade_request
from tests.support.network import Listening, hops_without_no_delay, raw_request


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


class RelayTestCase(unittest.TestCase):
    timeout = 20

    def setUp(self):
        self.net = Listening(self)

    @defer.inlineCallbacks
    def proxy_to_backend(self, backend_kwargs=None, **proxy_kwargs):
        backend, port = self.net.backend(**(backend_kwargs or {}))
        backend_port = yield port
        proxy_port = yield self.net.proxy([backend_port], **proxy_kwargs)
        return backend, proxy_port


class MessageRelayTests(RelayTestCase):
    @defer.inlineCallbacks
    def test_text_and_binary_messages_are_relayed_both_ways(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port)
        protocol = yield client.opened
        protocol.sendMessage("héllo".encode(), isBinary=False)
        protocol.sendMessage(b"\x00\x01\xff", isBinary=True)
        messages = yield client.wait_messages(2)
        self.assertEqual(messages, [("héllo".encode(), False), (b"\x00\x01\xff", True)])
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_backend_pushes_without_being_asked(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port, "/push?n=3")
        yield client.opened
        messages = yield client.wait_messages(3)
        self.assertEqual([m for m, _ in messages], [b"push 0", b"push 1", b"push 2"])

    @defer.inlineCallbacks
    def test_large_fragmented_message_arrives_intact(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port)
        protocol = yield client.opened
        payload = os.urandom(3 * 1024 * 1024 + 17)
        protocol.sendMessage(payload, isBinary=True, fragmentSize=100_000)
        messages = yield client.wait_messages(1)
        self.assertEqual(len(messages[0][0]), len(payload))
        self.assertEqual(messages[0][0], payload)

    @defer.inlineCallbacks
    def test_deflate_is_negotiated_on_each_hop_with_per_hop(self):
        backend, port = yield self.proxy_to_backend(websocket_deflate="per_hop")
        client = self.net.client(port, deflate=True)
        protocol = yield client.opened
        self.assertEqual(
            [ext.EXTENSION_NAME for ext in protocol.websocket_extensions_in_use],
            ["permessage-deflate"],
        )
        protocol.sendMessage(b"a" * 100_000, isBinary=False)
        messages = yield client.wait_messages(1)
        self.assertEqual(messages[0][0], b"a" * 100_000)
        self.assertIn("permessage-deflate", backend.requests[0].headers["sec-websocket-extensions"])

    @defer.inlineCallbacks
    def test_a_session_kept_on_autobahn_relays_in_order_and_counts_its_bytes(self):
        """Deflate keeps the session on Autobahn, whose frames are written to the socket directly.

        The client stops reading for a while, so an 8 MiB message among small ones
        fills the proxy's socket: what follows it must queue behind it.
        """
        _, port = yield self.proxy_to_backend(websocket_deflate="per_hop")
        client = self.net.client(port, deflate=True)
        protocol = yield client.opened
        payloads = [(f"message {index}".encode(), False) for index in range(300)]
        payloads.insert(150, (os.urandom(8 << 20), True))
        protocol.transport.pauseProducing()
        for payload, binary in payloads:
            protocol.sendMessage(payload, isBinary=binary)
        yield task.deferLater(reactor, 0.5, lambda: None)
        protocol.transport.resumeProducing()
        messages = yield client.wait_messages(len(payloads))
        self.assertEqual(messages, payloads)
        [session] = self.net.service.relay.sessions
        self.assertIsNone(session.front._fast)
        self.assertEqual(
            session.front.trafficStats.outgoingOctetsWireLevel,
            protocol.trafficStats.incomingOctetsWireLevel,
        )

    @defer.inlineCallbacks
    def test_backend_is_not_offered_deflate_when_the_client_did_not_ask(self):
        backend, port = yield self.proxy_to_backend()
        client = self.net.client(port)
        yield client.opened
        self.assertNotIn("sec-websocket-extensions", backend.requests[0].headers)


class NagleTests(RelayTestCase):
    """Both hops' sockets send small frames at once (TCP_NODELAY), as nginx's and HAProxy's do.

    With Nagle's algorithm on a hop, a fragmented or rapid message stream waits
    for the peer's delayed ACKs (40 ms each) at every small write.
    """

    @defer.inlineCallbacks
    def assert_no_delay_on_both_hops(self, deflate, **listener):
        _, port = yield self.proxy_to_backend(**listener)
        client = self.net.client(port, deflate=deflate)
        protocol = yield client.opened
        protocol.sendMessage(b"ping", isBinary=False)
        yield client.wait_messages(1)
        (session,) = self.net.service.relay.sessions
        self.assertEqual(hops_without_no_delay(session), [])
        protocol.sendClose(1000)
        yield client.closed

    def test_on_the_fast_path(self):
        return self.assert_no_delay_on_both_hops(deflate=False)

    def test_on_sessions_kept_on_autobahn(self):
        return self.assert_no_delay_on_both_hops(deflate=True, websocket_deflate="per_hop")

    def test_with_deflate_end_to_end(self):
        return self.assert_no_delay_on_both_hops(deflate=True)


def extension_parameters(header: str) -> set[str]:
    """One extension's name and parameters, whatever their order."""
    return {part.strip().replace(" ", "") for part in header.split(";")}


class EndToEndDeflateTests(RelayTestCase):
    """permessage-deflate negotiated by client and backend through the proxy (the default)."""

    @defer.inlineCallbacks
    def test_the_offer_and_the_answer_pass_through_and_the_session_takes_the_fast_path(self):
        def accept(offers):
            return PerMessageDeflateOfferAccept(
                offers[0], request_no_context_takeover=True, request_max_window_bits=10
            )

        backend, port = yield self.proxy_to_backend({"deflate_accept": accept})
        offer = PerMessageDeflateOffer(accept_max_window_bits=True, request_max_window_bits=12)
        client = self.net.client(port, deflate=True, deflate_offer=offer)
        protocol = yield client.opened
        # The client's own offer, its parameters in a canonical order.
        self.assertEqual(
            extension_parameters(backend.requests[0].headers["sec-websocket-extensions"]),
            extension_parameters(offer.get_extension_string()),
        )
        self.assertEqual(
            extension_parameters(client.response.headers["sec-websocket-extensions"]),
            {
                "permessage-deflate",
                "server_max_window_bits=12",
                "client_no_context_takeover",
                "client_max_window_bits=10",
            },
        )
        (session,) = self.net.service.relay.sessions
        self.assertIsInstance(session.front, Hop)
        self.assertIsInstance(session.backend, Hop)
        self.assertEqual(session.deflate, (True, False))
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_compressed_messages_pass_unchanged_both_ways(self):
        """Text and binary, small and large, relying on the kept window: all arrive intact,
        and the bytes on the wire are the compressed ones."""
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port, deflate=True)
        protocol = yield client.opened
        payloads = [(f"message {n} of many alike".encode(), False) for n in range(200)]
        payloads.insert(50, (os.urandom(70_000), True))
        payloads.insert(120, ("grüße ".encode() * 200_000, False))
        for payload, binary in payloads:
            protocol.sendMessage(payload, isBinary=binary)
        messages = yield client.wait_messages(len(payloads))
        self.assertEqual(messages, payloads)
        (session,) = self.net.service.relay.sessions
        self.assertEqual(session.front.messages_in, len(payloads))
        stats = protocol.trafficStats
        self.assertEqual(session.front.octets_in, stats.outgoingOctetsWireLevel)
        self.assertLess(stats.outgoingOctetsWireLevel, stats.outgoingOctetsAppLevel // 10)
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_a_backend_that_declines_gives_a_client_without_deflate(self):
        _, port = yield self.proxy_to_backend({"deflate": False})
        client = self.net.client(port, deflate=True)
        protocol = yield client.opened
        self.assertEqual(protocol.websocket_extensions_in_use, [])
        protocol.sendMessage(b"plain", isBinary=False)
        self.assertEqual((yield client.wait_messages(1)), [(b"plain", False)])
        (session,) = self.net.service.relay.sessions
        self.assertIsInstance(session.front, Hop)
        self.assertIsNone(session.deflate)
        protocol.sendClose(1000)
        yield client.closed

    @defer.inlineCallbacks
    def test_invalid_utf8_inside_a_compressed_message_is_1007(self):
        backend, port = yield self.proxy_to_backend()
        backend.closed = defer.Deferred()
        client = self.net.client(port, deflate=True)
        protocol = yield client.opened
        protocol.sendMessage(b"valid text, then \xff\xfe", isBinary=False)
        _clean, code, _reason = yield client.closed
        self.assertEqual(code, 1007)
        _clean, backend_code, _reason = yield backend.closed
        self.assertEqual(backend_code, 1001)

    @defer.inlineCallbacks
    def test_an_answer_that_does_not_fit_the_offer_is_502(self):
        """The client did not offer client_max_window_bits; the backend sets it anyway."""

        class Misfit(PerMessageDeflateOfferAccept):
            def get_extension_string(self):
                return "permessage-deflate; client_max_window_bits=10"

        backend, port = yield self.proxy_to_backend(
            {"deflate_accept": lambda offers: Misfit(offers[0])}
        )
        client = self.net.client(
            port, deflate=True, deflate_offer=PerMessageDeflateOffer(accept_max_window_bits=False)
        )
        with self.assertRaises(ConnectionError):
            yield client.opened
        self.assertEqual(client.response, None)
        response = yield raw_request(
            port,
            upgrade_request(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        )
        self.assertEqual(_status(response), 502)
        self.assertIn(b"invalid permessage-deflate response", response)

    @defer.inlineCallbacks
    def test_an_invalid_offer_is_400_before_any_backend_is_asked(self):
        backend, port = yield self.proxy_to_backend()
        response = yield raw_request(
            port,
            upgrade_request(
                extra=b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n"
            ),
        )
        self.assertEqual(_status(response), 400)
        self.assertIn(b"invalid permessage-deflate offer", response)
        self.assertEqual(backend.requests, [])


class HandshakeTests(RelayTestCase):
    @defer.inlineCallbacks
    def test_subprotocol_chosen_by_backend_is_answered(self):
        _, port = yield self.proxy_to_backend({"subprotocols": ["chat.v1"]})
        client = self.net.client(port, protocols=["echo.v2", "chat.v1"])
        yield client.opened
        self.assertEqual(client.response.protocol, "chat.v1")

    @defer.inlineCallbacks
    def test_no_subprotocol_when_backend_chooses_none(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port, protocols=["echo.v2"])
        yield client.opened
        self.assertIsNone(client.response.protocol)

    @defer.inlineCallbacks
    def test_backend_cookies_reach_the_client_on_the_101(self):
        _, port = yield self.proxy_to_backend()
        response = yield _handshake_head(port)
        self.assertIn(b"HTTP/1.1 101", response)
        self.assertIn(b"Set-Cookie: a=1; Path=/\r\n", response)
        self.assertIn(b"Set-Cookie: b=2; Path=/\r\n", response)

    @defer.inlineCallbacks
    def test_end_to_end_headers_and_forwarding_headers_reach_the_backend(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(
            port,
            "/headers?x=1",
            origin="http://app.example",
            headers={
                "Authorization": "Bearer t",
                "Cookie": "s=1",
                "X-Forwarded-Proto": "https",
                "X-Real-IP": "10.9.9.9",
            },
        )
        protocol = yield client.opened
        protocol.sendMessage(b"?")
        ((payload, _),) = yield client.wait_messages(1)
        seen = json.loads(payload)
        self.assertEqual(seen["host"], f"127.0.0.1:{port}")
        self.assertEqual(seen["origin"], "http://app.example")
        self.assertEqual(seen["authorization"], "Bearer t")
        self.assertEqual(seen["cookie"], "s=1")
        self.assertEqual(seen["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(seen["x-real-ip"], "127.0.0.1")
        self.assertEqual(seen["x-forwarded-proto"], "http")
        self.assertEqual(seen["x-forwarded-host"], f"127.0.0.1:{port}")
        self.assertEqual(seen["x-forwarded-port"], str(port))
        self.assertNotIn("via", seen)

    @defer.inlineCallbacks
    def test_via_header_reaches_the_backend_when_asked_for(self):
        _, port = yield self.proxy_to_backend(via=True)
        client = self.net.client(port, "/headers", headers={"X-Forwarded-Port": "1"})
        protocol = yield client.opened
        protocol.sendMessage(b"?")
        ((payload, _),) = yield client.wait_messages(1)
        seen = json.loads(payload)
        self.assertEqual(seen["via"], "1.1 clbproxy")
        self.assertEqual(seen["x-forwarded-port"], str(port))

    @defer.inlineCallbacks
    def test_proxy_protocol_client_address_reaches_the_backend(self):
        backend, port = yield self.proxy_to_backend(bind="haproxy:tcp:0:interface=127.0.0.1")
        response = yield _handshake_head(
            port, preamble=b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n"
        )
        self.assertEqual(_status(response), 101)
        headers = backend.requests[0].headers
        self.assertEqual(headers["x-real-ip"], "198.51.100.7")
        self.assertEqual(headers["x-forwarded-for"], "198.51.100.7")

    @defer.inlineCallbacks
    def test_path_and_query_are_forwarded(self):
        backend, port = yield self.proxy_to_backend()
        client = self.net.client(port, "/echo?room=7&x=%20y")
        yield client.opened
        self.assertEqual(backend.opened[0].http_request_uri, "/echo?room=7&x=%20y")

    @defer.inlineCallbacks
    def test_backend_refusal_is_passed_to_the_client(self):
        backend_port = yield self.net.raw_backend(
            b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="chat"\r\n'
            b"Content-Type: text/plain\r\nContent-Length: 12\r\n\r\nlog in first"
        )
        port = yield self.net.proxy([backend_port])
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 401)
        self.assertIn(b'WWW-Authenticate: Bearer realm="chat"\r\n', response)
        self.assertIn(b"Content-Length: 12\r\n", response)
        self.assertTrue(response.endswith(b"\r\n\r\nlog in first"))

    @defer.inlineCallbacks
    def test_chunked_refusal_body_is_decoded(self):
        backend_port = yield self.net.raw_backend(
            b"HTTP/1.1 302 Found\r\nLocation: /login\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            close_after=False,
        )
        port = yield self.net.proxy([backend_port])
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 302)
        self.assertIn(b"Location: /login\r\n", response)
        self.assertNotIn(b"Transfer-Encoding", response)
        self.assertTrue(response.endswith(b"\r\n\r\nhello world"))

    @defer.inlineCallbacks
    def test_refusal_body_over_the_limit_is_cut(self):
        backend_port = yield self.net.raw_backend(b"HTTP/1.1 403 Forbidden\r\n\r\n" + b"z" * 5000)
        port = yield self.net.proxy([backend_port], max_refusal_body=1000)
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 403)
        self.assertTrue(response.endswith(b"\r\n\r\n" + b"z" * 1000))

    @defer.inlineCallbacks
    def test_garbage_from_backend_is_502(self):
        backend_port = yield self.net.raw_backend(b"SSH-2.0-OpenSSH\r\n\r\n")
        port = yield self.net.proxy([backend_port])
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 502)
        self.assertIn(b"Content-Type: text/html", response)

    @defer.inlineCallbacks
    def test_silent_backend_is_504(self):
        backend_port = yield self.net.raw_backend(b"", close_after=False)
        port = yield self.net.proxy([backend_port], group_options={"response_timeout": 0.3})
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 504)

    @defer.inlineCallbacks
    def test_unreachable_backend_is_retried_on_another(self):
        _, good = self.net.backend()
        good_port = yield good
        dead_port = yield _closed_port(self.net)
        port = yield self.net.proxy([dead_port, good_port])
        for _ in range(2):
            client = self.net.client(port)
            protocol = yield client.opened
            protocol.sendClose(1000)
            yield client.closed

    @defer.inlineCallbacks
    def test_all_backends_unreachable_is_502(self):
        dead_port = yield _closed_port(self.net)
        port = yield self.net.proxy([dead_port])
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 502)

    @defer.inlineCallbacks
    def test_group_without_available_backend_is_503(self):
        port = yield self.net.proxy([])
        response = yield raw_request(port, upgrade_request())
        self.assertEqual(_status(response), 503)

    @defer.inlineCallbacks
    def test_no_matching_rule_is_404(self):
        from clbproxy.config import RuleConfig

        _, backend = self.net.backend()
        backend_port = yield backend
        port = yield self.net.proxy(
            [backend_port],
            rules=(RuleConfig(target_group="pool", host="chat.example", path="/echo"),),
        )
        # The only domain is the default one: another host gets its rules, and a
        # path none of them matches is 404.
        response = yield raw_request(port, upgrade_request("/other", host="chat.example"))
        elsewhere = yield raw_request(port, upgrade_request("/other", host="other.example"))
        self.assertEqual((_status(response), _status(elsewhere)), (404, 404))
        ok = yield _handshake_head(port, host="CHAT.example:8080")
        self.assertEqual(_status(ok), 101)

    @defer.inlineCallbacks
    def test_origin_outside_the_allow_list_is_403(self):
        _, port = yield self.proxy_to_backend(allowed_origins=("https://app.example",))
        denied = yield raw_request(port, upgrade_request(extra=b"Origin: https://evil.example\r\n"))
        self.assertEqual(_status(denied), 403)
        allowed = self.net.client(port, origin="https://app.example")
        yield allowed.opened

    @defer.inlineCallbacks
    def test_wrong_websocket_version_is_answered_by_the_proxy(self):
        _, port = yield self.proxy_to_backend()
        request = upgrade_request().replace(
            b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 7"
        )
        response = yield raw_request(port, request)
        self.assertEqual(_status(response), 426)
        self.assertIn(b"Sec-WebSocket-Version: 13\r\n", response)


class CloseTests(RelayTestCase):
    @defer.inlineCallbacks
    def test_backend_close_code_and_reason_reach_the_client(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port, "/close?code=4001&reason=kicked")
        protocol = yield client.opened
        protocol.sendMessage(b"x")
        was_clean, code, reason = yield client.closed
        self.assertEqual((code, reason), (4001, "kicked"))
        self.assertTrue(was_clean)

    @defer.inlineCallbacks
    def test_client_close_code_reaches_the_backend(self):
        backend, port = yield self.proxy_to_backend()
        backend.closed = defer.Deferred()
        client = self.net.client(port)
        protocol = yield client.opened
        protocol.sendClose(4002, "leaving")
        _, code, reason = yield backend.closed
        self.assertEqual((code, reason), (4002, "leaving"))

    @defer.inlineCallbacks
    def test_backend_vanishing_closes_the_client_with_1011(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port, "/drop")
        protocol = yield client.opened
        protocol.sendMessage(b"x")
        _, code, _ = yield client.closed
        self.assertEqual(code, 1011)

    @defer.inlineCallbacks
    def test_client_vanishing_closes_the_backend_with_1001(self):
        backend, port = yield self.proxy_to_backend()
        backend.closed = defer.Deferred()
        client = self.net.client(port)
        protocol = yield client.opened
        protocol.transport.abortConnection()
        _, code, _ = yield backend.closed
        self.assertEqual(code, 1001)

    @defer.inlineCallbacks
    def test_oversized_message_is_closed_with_1009(self):
        backend, port = yield self.proxy_to_backend(max_message_size=1000)
        backend.closed = defer.Deferred()
        client = self.net.client(port)
        protocol = yield client.opened
        protocol.sendMessage(b"y" * 1001, isBinary=True)
        _, code, _ = yield client.closed
        self.assertEqual(code, 1009)
        _, backend_code, _ = yield backend.closed
        self.assertEqual(backend_code, 1001)

    @defer.inlineCallbacks
    def test_unmasked_client_frame_is_a_protocol_error(self):
        _, port = yield self.proxy_to_backend()
        client = self.net.client(port)
        protocol = yield client.opened
        protocol.transport.write(b"\x81\x02hi")  # text frame without the mask bit
        _, code, _ = yield client.closed
        self.assertEqual(code, 1002)


class BackpressureTests(RelayTestCase):
    @defer.inlineCallbacks
    def test_slow_client_bounds_what_the_proxy_buffers(self):
        limit = 64 * 1024
        backend, port = yield self.proxy_to_backend(session_buffer=limit)
        client = self.net.client(port, "/flood?n=256")  # 16 MiB from the backend
        protocol = yield client.opened
        protocol.transport.pauseProducing()
        yield task.deferLater(reactor, 0.5, lambda: None)
        (session,) = self.net.service.relay.sessions
        # Two transport buffers of `limit`, plus what one read may add to each.
        self.assertLess(session.buffered_bytes(), 2 * limit + 2 * 65536 + 16384)
        self.assertLess(len(client.messages), 256)
        protocol.transport.resumeProducing()
        messages = yield client.wait_messages(256)
        self.assertEqual(sum(len(m) for m, _ in messages), 256 * 65536)


class SessionTrackingTests(RelayTestCase):
    @defer.inlineCallbacks
    def test_session_is_forgotten_when_both_hops_are_closed(self):
        backend, port = yield self.proxy_to_backend()
        backend.closed = defer.Deferred()
        client = self.net.client(port)
        protocol = yield client.opened
        self.assertEqual(len(self.net.service.relay.sessions), 1)
        protocol.sendClose(1000)
        yield client.closed
        yield backend.closed
        yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.net.service.relay.sessions, set())


class IdleFootprintTests(RelayTestCase):
    """An open session on the fast path keeps only what relaying and its end need."""

    def hold_weakly(self, held, cls, method="__init__"):
        """Keep a weak reference to each object ``cls.method`` builds or is called on."""
        original = getattr(cls, method)

        if method == "__init__":

            def tracked(instance, *args, **kwargs):
                original(instance, *args, **kwargs)
                held.append(weakref.ref(instance))

        else:

            def tracked(factory, *args, **kwargs):
                built = original(factory, *args, **kwargs)
                held.append(weakref.ref(built))
                return built

        self.patch(cls, method, tracked)

    @defer.inlineCallbacks
    def assert_open_session_holds_nothing_else(self, held, **listener_options):
        # Freed by reference counting alone (on CPython): no cycle waits for a full collection.
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        render = ListenerResource.render

        def rendered(resource, request):
            held.append(weakref.ref(request))
            held.append(weakref.ref(request.channel))
            return render(resource, request)

        self.patch(ListenerResource, "render", rendered)
        _, port = yield self.proxy_to_backend(**listener_options)
        client = self.net.client(port)
        protocol = yield client.opened
        protocol.sendMessage(b"ping", isBinary=False)
        yield client.wait_messages(1)
        yield task.deferLater(reactor, 0.05, lambda: None)
        if platform.python_implementation() != "CPython":
            # Without reference counting (PyPy) nothing is freed before a collection;
            # what is checked there is that nothing still refers to these objects.
            gc.collect()
        self.assertEqual(len(held), 4)
        self.assertEqual([ref() for ref in held], [None] * 4)
        (session,) = self.net.service.relay.sessions
        self.assertIsInstance(session.front, Hop)
        self.assertIsInstance(session.backend, Hop)
        backend_socket = session.backend.transport
        self.assertIs(backend_socket.protocol, session.backend)
        self.assertNotIsInstance(backend_socket.connector, Connector)
        self.assertIs(backend_socket.producer, session.backend)
        self.assertIs(session.front.transport.transport.producer, session.front)
        self.assertEqual(
            (backend_socket.bufferSize, session.front.transport.transport.bufferSize),
            (session.settings.listener.session_buffer,) * 2,
        )
        self.assertEqual(session.record.path, "/echo")
        protocol.sendClose(1000)
        yield client.closed

    def test_a_passed_through_session_holds_no_request_or_handshake_objects(self):
        held = []
        self.hold_weakly(held, ClientWaiting)
        self.hold_weakly(held, BackendUpgrade)
        return self.assert_open_session_holds_nothing_else(held)

    def test_an_autobahn_session_holds_no_request_autobahn_or_endpoint_objects(self):
        held = []
        self.hold_weakly(held, RelayServerFactory, "buildProtocol")
        self.hold_weakly(held, RelayClientFactory, "buildProtocol")
        return self.assert_open_session_holds_nothing_else(held, websocket_deflate="per_hop")


def _handshake_head(port, host="127.0.0.1", preamble=b"") -> defer.Deferred:
    """The proxy's answer to a handshake, read until the end of its headers."""
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol

    done = defer.Deferred()

    class Head(Protocol):
        buffer = b""

        def connectionMade(self):
            self.transport.write(preamble + upgrade_request(host=host))

        def dataReceived(self, data):
            self.buffer += data
            if b"\r\n\r\n" in self.buffer and not done.called:
                done.callback(self.buffer)
                self.transport.abortConnection()

    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(Head))
    return done


@defer.inlineCallbacks
def _closed_port(net) -> int:
    """A loopback port with nothing listening on it."""
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.protocol import Factory

    listening = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
    port = listening.getHost().port
    yield listening.stopListening()
    return port
