"""Lean event dispatch: epoll events still reach their sockets, and errors are still logged."""

from __future__ import annotations

import socket

from twisted.internet import abstract
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from clbproxy.net.dispatch import lean_dispatch

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # pragma: no cover
    EPollReactor = None


class _Reader(abstract.FileDescriptor):
    """Reads one end of a socket pair; ``lost_with`` makes its connectionLost raise."""

    def __init__(self, reactor, sock: socket.socket, lost_with=None) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.received: list[bytes] = []
        self.lost = False
        self.lost_with = lost_with

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self):
        data = self.sock.recv(65536)
        if not data:
            return CONNECTION_DONE
        self.received.append(data)
        return None

    def connectionLost(self, reason) -> None:
        self.lost = True
        if self.lost_with is not None:
            raise self.lost_with


class LeanDispatchTests(unittest.TestCase):
    def setUp(self) -> None:
        if EPollReactor is None:
            raise unittest.SkipTest("no epoll on this platform")
        self.ours, self.theirs = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(self.theirs.close)
        self.reactor = EPollReactor()
        # Cleanups run last first: the reactor lets go of the sockets before they close.
        self.addCleanup(self._close_reactor)

    def _close_reactor(self) -> None:
        self.reactor.removeAll()
        self.reactor.waker.connectionLost(None)
        self.reactor._poller.close()

    def test_other_reactors_are_left_alone(self) -> None:
        reactor = MemoryReactorClock()
        self.assertFalse(lean_dispatch(reactor))
        self.assertNotIn("doIteration", vars(reactor))

    def test_an_epoll_reactor_dispatches_reads_to_the_socket(self) -> None:
        self.assertTrue(lean_dispatch(self.reactor))
        reader = _Reader(self.reactor, self.ours)
        self.reactor.addReader(reader)
        self.theirs.sendall(b"hello")
        self.reactor.doIteration(1.0)
        self.assertEqual(reader.received, [b"hello"])

    def test_a_closed_peer_disconnects_the_reader_as_before(self) -> None:
        lean_dispatch(self.reactor)
        reader = _Reader(self.reactor, self.ours)
        self.reactor.addReader(reader)
        self.theirs.close()
        self.reactor.doIteration(1.0)
        self.assertTrue(reader.lost)
        self.assertNotIn(reader, self.reactor.getReaders())

    def test_an_error_escaping_the_event_is_logged_and_the_loop_goes_on(self) -> None:
        self.assert_logged_and_served(ZeroDivisionError("in connectionLost"))

    def test_even_a_system_exit_escaping_the_event_is_logged_as_twisted_does(self) -> None:
        self.assert_logged_and_served(SystemExit(3))

    def assert_logged_and_served(self, error: BaseException) -> None:
        lean_dispatch(self.reactor)
        broken = _Reader(self.reactor, self.ours, lost_with=error)
        self.reactor.addReader(broken)
        other_ours, other_theirs = socket.socketpair()
        self.addCleanup(other_ours.close)
        self.addCleanup(other_theirs.close)
        self.addCleanup(self.reactor.removeAll)  # before these sockets close, too
        healthy = _Reader(self.reactor, other_ours)
        self.reactor.addReader(healthy)
        self.theirs.close()
        other_theirs.sendall(b"still served")
        self.reactor.doIteration(1.0)
        self.assertEqual(len(self.flushLoggedErrors(type(error))), 1)
        self.assertEqual(healthy.received, [b"still served"])

    def test_events_skip_the_legacy_log_context(self) -> None:
        from twisted.python import log as legacy

        wrapped = []
        self.patch(legacy, "callWithLogger", lambda *args, **kw: wrapped.append(args))
        lean_dispatch(self.reactor)
        reader = _Reader(self.reactor, self.ours)
        self.reactor.addReader(reader)
        self.theirs.sendall(b"direct")
        self.reactor.doIteration(1.0)
        self.assertEqual((reader.received, wrapped), ([b"direct"], []))
