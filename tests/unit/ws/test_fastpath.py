"""Tests for :mod:`clbproxy.ws.fastpath`: the open hops of a session once Autobahn is dropped."""

from __future__ import annotations

import socket
import sys
import zlib

from twisted.internet import task, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial import unittest

from clbproxy.net.transports import socket_under, switch_protocol
from clbproxy.ws.closecodes import HopEnd, Side
from clbproxy.ws.fastpath import (
    CLOSE_HANDSHAKE_TIMEOUT,
    CLOSED,
    CLOSING,
    SERVER_DROP_TIMEOUT,
    Hop,
    compact_tcp_transport,
    control_frame,
    send_now,
)
from clbproxy.ws.frames import CLOSE, INFLATE_PER_TURN, PING, PONG, FrameScanner
from clbproxy.ws.pauses import InflateBudget
from tests.unit.ws.test_pauses import FlowRecorder

MASK = b"\x01\x02\x03\x04"


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame (masked with MASK), as a browser would send it."""
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + MASK + body


def plain(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


def unmask(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one masked frame with a payload under 126 bytes."""
    assert frame[1] & 0x80, "frame is not masked"
    key, body = frame[2:6], frame[6:]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


class FakeSession:
    def __init__(self) -> None:
        self.reactor = task.Clock()
        self.timers = None
        self.inflate_budget = None
        self.ended = []
        self.lost = []

    def hop_ended(self, event) -> None:
        self.ended.append(event)

    def hop_lost(self, side, was_clean, code, reason) -> None:
        self.lost.append((side, was_clean, code))


def session_hops(
    tunnel: bool = False, hold: int = 0, timers=None, transport=StringTransport, deflate=False
):
    session = FakeSession()
    session.timers = timers
    hops = []
    for side, is_masked in ((Side.CLIENT, True), (Side.BACKEND, False)):
        scanner = None if tunnel else FrameScanner(masked=is_masked, hold=hold, deflate=deflate)
        hops.append(Hop(transport(), session, side, scanner))
    front, backend = hops
    front.peer, backend.peer = backend, front
    return session, front, backend


class RelayingTests(unittest.TestCase):
    def test_client_data_frame_reaches_the_backend_with_its_mask(self) -> None:
        session, front, backend = session_hops()
        frame = masked(1, b"hello")
        front.dataReceived(frame)
        self.assertEqual(backend.transport.value(), frame)
        self.assertEqual((front.messages_in, front.octets_in, backend.octets_out), (1, 11, 11))

    def test_client_ping_is_answered_on_the_client_hop_unmasked(self) -> None:
        session, front, backend = session_hops()
        front.dataReceived(masked(PING, b"p"))
        self.assertEqual(front.transport.value(), plain(PONG, b"p"))
        self.assertEqual(backend.transport.value(), b"")

    def test_backend_ping_is_answered_with_a_masked_pong(self) -> None:
        session, front, backend = session_hops()
        backend.dataReceived(plain(PING, b"xyz"))
        self.assertEqual(unmask(backend.transport.value()), (PONG, b"xyz"))
        self.assertEqual(front.transport.value(), b"")

    def test_tunnel_passes_bytes_unread_and_sends_no_frames_of_its_own(self) -> None:
        session, front, backend = session_hops(tunnel=True)
        front.dataReceived(b"\xff\x00not a frame")
        backend.sendCloseFrame(1001, b"bye")
        self.assertEqual(backend.transport.value(), b"\xff\x00not a frame")
        self.assertEqual(front.transport.value(), b"")


class BufferedTransport(StringTransport):
    """A socket transport's buffer rule: its producer is paused past ``bufferSize``.

    ``drain()`` is the kernel taking everything: the producer is resumed, as
    Twisted does once the buffer is empty.
    """

    bufferSize = 1024

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.io.getvalue()) > self.bufferSize:
            if not self.producer_paused:
                self.producer_paused = True
                self.producer.pauseProducing()

    producer_paused = False

    def drain(self) -> bytes:
        written = self.value()
        self.clear()
        if self.producer_paused:
            self.producer_paused = False
            self.producer.resumeProducing()
        return written


def pongs(data: bytes) -> list[bytes]:
    """The payloads of the unmasked pongs (payload < 126 bytes) in ``data``."""
    found = []
    while data:
        assert data[0] == 0x80 | PONG, data[:2]
        n = data[1]
        found.append(data[2 : 2 + n])
        data = data[2 + n :]
    return found


class FlowControlTests(unittest.TestCase):
    """A hop is its transport's producer: a full transport stops reading both hops."""

    def test_full_transport_stops_reading_both_hops_and_suspends_ping_deadlines(self) -> None:
        timers = FlowRecorder()
        session, front, backend = session_hops(timers=timers)
        front.pauseProducing()
        self.assertEqual(
            (backend.transport.producerState, front.transport.producerState),
            ("paused", "paused"),
        )
        front.resumeProducing()
        self.assertEqual(
            (backend.transport.producerState, front.transport.producerState),
            ("producing", "producing"),
        )
        self.assertEqual(timers.events, ["throttled", "throttled", "flowing", "flowing"])

    def test_in_a_tunnel_a_full_transport_stops_reading_only_the_other_hop(self) -> None:
        session, front, backend = session_hops(tunnel=True)
        front.pauseProducing()
        self.assertEqual(
            (backend.transport.producerState, front.transport.producerState),
            ("paused", "producing"),
        )

    def test_a_hop_is_read_again_only_when_both_buffers_have_drained(self) -> None:
        session, front, backend = session_hops()
        front.pauseProducing()
        backend.pauseProducing()
        front.resumeProducing()
        self.assertEqual(
            (backend.transport.producerState, front.transport.producerState),
            ("paused", "paused"),
        )
        backend.resumeProducing()
        self.assertEqual(
            (backend.transport.producerState, front.transport.producerState),
            ("producing", "producing"),
        )

    def test_pings_while_the_buffer_is_full_get_one_pong_for_the_latest_once_drained(self):
        session, front, backend = session_hops()
        front.pauseProducing()
        front.dataReceived(masked(PING, b"1") + masked(PING, b"2") + masked(PING, b"3"))
        self.assertEqual(front.transport.value(), b"")
        front.resumeProducing()
        self.assertEqual(front.transport.value(), plain(PONG, b"3"))

    def test_backend_pings_while_its_buffer_is_full_get_one_masked_pong(self) -> None:
        session, front, backend = session_hops()
        backend.pauseProducing()
        backend.dataReceived(plain(PING, b"a") + plain(PING, b"b"))
        backend.resumeProducing()
        self.assertEqual(unmask(backend.transport.value()), (PONG, b"b"))

    def test_a_ping_flood_stops_being_read_once_its_pongs_fill_the_buffer(self) -> None:
        session, front, backend = session_hops(transport=BufferedTransport)
        front.transport.registerProducer(front, True)
        ping = b"x" * 100
        front.dataReceived(b"".join(masked(PING, b"%03d" % i + ping) for i in range(20)))
        self.assertEqual(front.transport.producerState, "paused")
        # What was read before the hop paused (a TLS record, say) owes one pong.
        front.dataReceived(b"".join(masked(PING, b"%03d" % i + ping) for i in range(20, 40)))
        written = front.transport.drain()
        self.assertEqual(len(pongs(written)), 20)
        # Once drained: one pong, for the last ping, and the hop is read again.
        self.assertEqual(pongs(front.transport.value()), [b"039" + ping])
        self.assertEqual(front.transport.producerState, "producing")
        self.assertEqual(backend.transport.value(), b"")

    def test_the_pongs_for_one_read_leave_in_one_write(self) -> None:
        session, front, backend = session_hops()
        writes = []
        front.transport.write = writes.append
        front.dataReceived(b"".join(masked(PING, b"") for i in range(1000)))
        self.assertEqual(writes, [plain(PONG, b"") * 1000])

    def test_pings_are_each_answered_while_the_buffer_has_room(self) -> None:
        session, front, backend = session_hops(transport=BufferedTransport)
        front.transport.registerProducer(front, True)
        front.dataReceived(b"".join(masked(PING, b"%d" % i) for i in range(5)))
        self.assertEqual(pongs(front.transport.value()), [b"0", b"1", b"2", b"3", b"4"])

    def test_no_pong_is_owed_after_the_hop_started_closing(self) -> None:
        session, front, backend = session_hops()
        front.pauseProducing()
        front.dataReceived(masked(PING, b"late"))
        front.sendCloseFrame(1001, b"bye")
        front.transport.clear()
        front.resumeProducing()
        self.assertEqual(front.transport.value(), b"")


class InflateTests(unittest.TestCase):
    """A compressed bomb is inflated a megabyte per reactor turn, within the session's rate."""

    TEXT = b"all work and no play " * 200_000  # ~4 MiB

    def bomb(self) -> bytes:
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        payload = deflater.compress(self.TEXT) + deflater.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4]
        body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 65536
        return bytes((0x80 | 0x40 | 1, 0x80 | 126)) + len(payload).to_bytes(2, "big") + MASK + body

    def test_the_sender_is_not_read_while_its_bomb_is_inflated_over_later_turns(self) -> None:
        session, front, backend = session_hops(deflate=True)
        turns = []
        call_later = session.reactor.callLater
        session.reactor.callLater = lambda delay, f, *a: (
            turns.append(delay) or call_later(delay, f, *a)
        )
        data = self.bomb()
        front.dataReceived(data)
        self.assertEqual(front.transport.producerState, "paused")
        self.assertNotEqual(backend.transport.value(), data)
        session.reactor.advance(0)
        self.assertEqual(front.transport.producerState, "producing")
        # ~4 MiB, a little over INFLATE_PER_TURN each turn: three more turns, no delay.
        self.assertEqual(turns, [0] * (len(self.TEXT) // (INFLATE_PER_TURN + 65536)))
        self.assertEqual(backend.transport.value(), data)
        self.assertEqual(front.messages_in, 1)

    def test_a_sender_over_the_inflate_rate_is_read_again_once_the_budget_refills(self) -> None:
        session, front, backend = session_hops(deflate=True)
        session.inflate_budget = InflateBudget(session.reactor, 1024 * 1024)
        front.dataReceived(self.bomb())
        # ~4 MiB at 1 MiB/s, the first second's worth at once: read again after ~3 s.
        session.reactor.pump([0.1] * 25)
        self.assertEqual(front.transport.producerState, "paused")
        session.reactor.pump([0.1] * 10)
        self.assertEqual(front.transport.producerState, "producing")
        self.assertEqual(front.messages_in, 1)

    def test_no_inflating_goes_on_after_the_hop_is_lost(self) -> None:
        session, front, backend = session_hops(deflate=True)
        front.dataReceived(self.bomb())
        front.connectionLost(None)
        self.assertEqual(session.reactor.getDelayedCalls(), [])


class ClosingTests(unittest.TestCase):
    def test_failed_hop_releases_the_throttle_so_tls_can_close(self) -> None:
        # A TLS transport sends its close_notify (and so closes) only once no
        # producer is registered: the session's throttle must be let go.
        session, front, backend = session_hops()
        front.transport.registerProducer(object(), True)
        front.dataReceived(masked(1, b"\xff"))
        self.assertIsNone(front.transport.producer)
        self.assertTrue(front.transport.disconnecting)

    def test_graceful_close_is_cut_off_after_the_close_timeout(self) -> None:
        # The peer neither reads the rest nor (on TLS) answers close_notify.
        session, front, backend = session_hops()
        aborted = []
        front.transport.abortConnection = lambda: aborted.append(True)
        front.dataReceived(masked(1, b"\xff"))
        session.reactor.advance(CLOSE_HANDSHAKE_TIMEOUT - 0.1)
        self.assertEqual(aborted, [])
        session.reactor.advance(0.2)
        self.assertEqual(aborted, [True])

    def test_connection_lost_stops_the_close_timeout(self) -> None:
        session, front, backend = session_hops()
        aborted = []
        front.transport.abortConnection = lambda: aborted.append(True)
        front.dataReceived(masked(1, b"\xff"))
        front.connectionLost(None)
        session.reactor.advance(CLOSE_HANDSHAKE_TIMEOUT + 1)
        self.assertEqual(aborted, [])
        self.assertEqual(session.reactor.getDelayedCalls(), [])

    def test_client_close_is_answered_with_1000_and_tcp_closed(self) -> None:
        session, front, backend = session_hops()
        front.dataReceived(masked(CLOSE, b"\x0f\xa1bye"))  # 4001 "bye"
        self.assertEqual(front.transport.value(), plain(CLOSE, b"\x03\xe8"))
        self.assertTrue(front.transport.disconnecting)
        [event] = session.ended
        self.assertEqual(
            (event.side, event.how, event.code, event.reason),
            (Side.CLIENT, HopEnd.CLOSED, 4001, "bye"),
        )
        front.connectionLost(None)
        self.assertEqual(session.lost, [(Side.CLIENT, True, 4001)])

    def test_backend_close_is_answered_masked_and_the_backend_must_close_tcp(self) -> None:
        session, front, backend = session_hops()
        backend.dataReceived(plain(CLOSE, b"\x03\xe8"))
        self.assertEqual(unmask(backend.transport.value()), (CLOSE, b"\x03\xe8"))
        self.assertFalse(backend.transport.disconnecting)
        session.reactor.advance(SERVER_DROP_TIMEOUT)
        self.assertTrue(backend.transport.disconnected)
        self.assertIn("server did not drop", backend.wasNotCleanReason)

    def test_close_we_start_waits_for_the_answer_then_closes_tcp(self) -> None:
        session, front, backend = session_hops()
        front.sendCloseFrame(1001, b"going")
        self.assertEqual(front.state, CLOSING)
        self.assertEqual(front.transport.value(), plain(CLOSE, b"\x03\xe9going"))
        front.dataReceived(masked(CLOSE, b"\x03\xe9"))
        self.assertTrue(front.transport.disconnecting)
        self.assertEqual(front.state, CLOSED)
        self.assertEqual(session.ended, [])
        self.assertEqual(session.reactor.getDelayedCalls()[0].getTime(), CLOSE_HANDSHAKE_TIMEOUT)

    def test_unanswered_close_drops_the_hop_after_the_timeout(self) -> None:
        session, front, backend = session_hops()
        backend.sendCloseFrame(1000)
        self.assertEqual(unmask(backend.transport.value()), (CLOSE, b"\x03\xe8"))
        session.reactor.advance(CLOSE_HANDSHAKE_TIMEOUT)
        self.assertTrue(backend.transport.disconnected)
        self.assertFalse(backend.wasClean)

    def test_invalid_close_code_fails_the_hop_with_1002(self) -> None:
        session, front, backend = session_hops()
        front.dataReceived(masked(CLOSE, b"\x03\xed"))  # 1005 must never be on the wire
        sent = front.transport.value()
        self.assertEqual((sent[0], sent[2:4]), (0x88, b"\x03\xea"))
        self.assertTrue(front.failedByMe)
        self.assertEqual(session.ended[0].how, HopEnd.FAILED)
        self.assertTrue(front.transport.disconnecting)


class ViolationTests(unittest.TestCase):
    def test_unmasked_client_frame_fails_the_hop_with_1002(self) -> None:
        session, front, backend = session_hops()
        front.dataReceived(plain(1, b"hi"))
        sent = front.transport.value()
        self.assertEqual((sent[0], sent[2:4]), (0x88, b"\x03\xea"))
        self.assertEqual(backend.transport.value(), b"")
        self.assertEqual(
            (session.ended[0].side, session.ended[0].how, session.ended[0].code),
            (Side.CLIENT, HopEnd.FAILED, 1002),
        )
        self.assertTrue(front.transport.disconnecting)

    def test_invalid_utf8_fails_the_hop_with_1007(self) -> None:
        session, front, backend = session_hops()
        front.dataReceived(masked(1, b"\xff"))
        self.assertEqual(front.transport.value()[2:4], b"\x03\xef")
        self.assertEqual(session.ended[0].code, 1007)

    def test_losing_a_hop_mid_frame_drops_the_other(self) -> None:
        session, front, backend = session_hops()
        frame = bytes((0x82, 126)) + (300).to_bytes(2, "big") + b"x" * 100
        backend.dataReceived(frame)
        self.assertTrue(backend.mid_frame)
        backend.connectionLost(None)
        self.assertTrue(front.transport.disconnected)


class HoldingTests(unittest.TestCase):
    def test_own_frames_wait_until_the_other_hops_frame_is_complete(self) -> None:
        session, front, backend = session_hops()
        head = bytes((0x82, 126)) + (300).to_bytes(2, "big")
        backend.dataReceived(head + b"a" * 100)
        front.dataReceived(masked(PING, b"p"))  # our pong to the client must wait
        self.assertEqual(front.transport.value(), head + b"a" * 100)
        backend.dataReceived(b"b" * 200)
        self.assertEqual(
            front.transport.value(), head + b"a" * 100 + b"b" * 200 + plain(PONG, b"p")
        )


class FramingTests(unittest.TestCase):
    def test_masked_control_frame_unmasks_to_its_payload(self) -> None:
        frame = control_frame(CLOSE, b"\x03\xe8normal closure", mask=True)
        self.assertEqual(unmask(frame), (CLOSE, b"\x03\xe8normal closure"))

    def test_unmasked_control_frame(self) -> None:
        self.assertEqual(control_frame(PONG, b"", mask=False), b"\x8a\x00")


class SwitchTests(unittest.TestCase):
    def test_protocol_under_a_wrapper_is_replaced(self) -> None:
        old, new = Protocol(), Protocol()
        wrapper = ProtocolWrapper(WrappingFactory(None), old)
        socket = StringTransport()
        socket.bufferSize = 65536
        socket.protocol = wrapper
        wrapper.makeConnection(socket)
        old.transport = wrapper
        self.assertTrue(switch_protocol(old, new))
        self.assertIs(wrapper.wrappedProtocol, new)

    def test_unknown_chain_is_reported(self) -> None:
        old = Protocol()
        socket = StringTransport()
        socket.bufferSize = 65536
        old.transport = socket
        self.assertFalse(switch_protocol(old, Protocol()))


class DirectWriteTests(unittest.TestCase):
    def connection(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        theirs.settimeout(2)
        connection = tcp.Connection(ours, Protocol(), reactor=task.Clock())
        connection.connected = 1
        return connection, theirs

    def test_frame_goes_to_the_socket_at_once_when_nothing_is_queued(self) -> None:
        connection, theirs = self.connection()
        send_now(connection, b"\x81\x02hi")
        self.assertEqual(theirs.recv(100), b"\x81\x02hi")
        self.assertEqual(connection._tempDataLen, 0)

    def test_tcp_under_pass_through_wrappers_is_written_directly_but_not_under_tls(self) -> None:
        connection, _ = self.connection()
        wrapper = ProtocolWrapper(WrappingFactory(None), Protocol())
        wrapper.makeConnection(connection)
        self.assertIs(socket_under(wrapper), connection)
        self.assertIsNone(socket_under(StringTransport()))
        tls = TLSMemoryBIOProtocol(None, Protocol())
        tls.transport = connection
        self.assertIsNone(socket_under(tls))

    def grown_connection(self):
        """A connection whose dict has its own name table, as parsing and a handshake leave it."""
        connection, theirs = self.connection()
        connection.reactor = MemoryReactorClock()
        for index in range(40):
            setattr(connection, f"scratch{index}", index)
        for index in range(40):
            delattr(connection, f"scratch{index}")
        return connection, theirs

    def test_compacting_keeps_every_attribute_and_the_class_even_under_tls(self) -> None:
        connection, theirs = self.grown_connection()
        before = dict(vars(connection))
        tls = TLSMemoryBIOProtocol(None, Protocol())
        tls.transport = connection

        compact_tcp_transport(tls)

        self.assertIsInstance(connection, tcp.Connection)
        self.assertEqual(type(connection).__name__, "Connection")
        for name, value in before.items():
            self.assertIs(vars(connection)[name], value)
        connection.write(b"still ")
        connection.write(b"writes")
        connection.doWrite()
        self.assertEqual(theirs.recv(100), b"still writes")
        compact_tcp_transport(connection)  # a second time: the same subclass
        if sys.implementation.name == "cpython":
            self.assertIs(type(connection).__mro__[1], tcp.Connection)
        else:  # left alone there (see below)
            self.assertIs(type(connection), tcp.Connection)
        compact_tcp_transport(StringTransport())  # no TCP connection under it: nothing to do

    def test_compacted_connections_hold_less_memory_each_and_writes_add_nothing(self) -> None:
        if sys.implementation.name != "cpython":
            raise unittest.SkipTest("PyPy's shared attribute maps need no compacting")
        import tracemalloc  # CPython's own: PyPy has no _tracemalloc

        tracemalloc.start()
        try:
            connections = [self.grown_connection()[0] for _ in range(50)]
            before = tracemalloc.get_traced_memory()[0]
            for connection in connections:
                compact_tcp_transport(connection)
            compacted = tracemalloc.get_traced_memory()[0]
            for connection in connections:  # what an echo through the hop sets
                connection.write(b"x")
                connection.doWrite()
            written = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        self.assertLess(compacted - before, -100 * len(connections))
        self.assertLess(written - compacted, 16 * len(connections))

    def test_compacting_shares_the_log_prefix_and_repr_text_of_a_listeners_connections(
        self,
    ) -> None:
        compacted = []
        for number, client in ((7, "10.0.0.9"), (8, "10.0.0.10")):
            connection, _ = self.connection()
            connection.logstr = f"ListenerConnection,{number},{client}"
            connection.repstr = f"<ListenerConnection #{number} on 8080>"
            compact_tcp_transport(connection)
            compacted.append(connection)
        first, second = compacted
        if sys.implementation.name != "cpython":  # left alone there (see above)
            self.assertEqual(first.logstr, "ListenerConnection,7,10.0.0.9")
            return
        self.assertEqual(first.logPrefix(), "ListenerConnection")
        self.assertIs(first.logstr, second.logstr)
        self.assertEqual(first.repstr, "<ListenerConnection on 8080>")
        self.assertIs(first.repstr, second.repstr)
