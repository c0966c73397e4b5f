"""Tests for :mod:`clbproxy.ops.notify`: what systemd reads on its notification socket."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from clbproxy.ops.notify import Notifier, socket_address


class NotifySocket:
    """A unix datagram socket in a temporary directory, as systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, testcase: unittest.TestCase, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        testcase.addCleanup(self.sock.close)
        if abstract:
            name = f"clbproxy-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            #: What systemd would put in ``$NOTIFY_SOCKET``.
            self.value = "@" + name
        else:
            # Not under trial's directory: a unix socket's path has at most 107 bytes.
            directory = tempfile.mkdtemp(prefix="clbproxy-notify-")
            testcase.addCleanup(shutil.rmtree, directory, True)
            self.value = os.path.join(directory, "notify")
            self.sock.bind(self.value)
        self.sock.settimeout(5)

    def notifier(self) -> Notifier:
        return Notifier.from_environment({"NOTIFY_SOCKET": self.value})

    def receive(self) -> list[str]:
        """The fields of the next datagram."""
        return self.sock.recv(4096).decode("utf-8").split("\n")

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(5)
        return True


class NotifierTests(unittest.TestCase):
    def test_ready_is_one_datagram_on_the_socket_notify_socket_names(self):
        systemd = NotifySocket(self)

        self.assertTrue(systemd.notifier().ready("serving on 2 listener(s)"))

        self.assertEqual(systemd.receive(), ["READY=1", "STATUS=serving on 2 listener(s)"])

    def test_an_abstract_socket_is_named_with_an_at_sign(self):
        systemd = NotifySocket(self, abstract=True)

        systemd.notifier().ready()

        self.assertEqual(systemd.receive(), ["READY=1"])

    def test_reloading_carries_the_monotonic_clock_in_microseconds(self):
        systemd = NotifySocket(self)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

        systemd.notifier().reloading("reloading tap.conf")

        reloading, stamp, status = systemd.receive()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.assertEqual((reloading, status), ("RELOADING=1", "STATUS=reloading tap.conf"))
        self.assertTrue(stamp.startswith("MONOTONIC_USEC="))
        self.assertTrue(before <= int(stamp.split("=")[1]) <= after)

    def test_stopping_is_sent_when_the_drain_begins(self):
        systemd = NotifySocket(self)

        systemd.notifier().stopping("draining")

        self.assertEqual(systemd.receive(), ["STOPPING=1", "STATUS=draining"])

    def test_a_status_stays_on_one_line(self):
        systemd = NotifySocket(self)

        systemd.notifier().status("refused:\nsee the log")

        self.assertEqual(systemd.receive(), ["STATUS=refused: see the log"])

    def test_nothing_is_sent_without_notify_socket(self):
        notifier = Notifier.from_environment({})

        self.assertFalse(notifier.enabled)
        self.assertFalse(notifier.ready())

    def test_a_socket_that_is_gone_is_logged_once_and_otherwise_ignored(self):
        systemd = NotifySocket(self)
        notifier = systemd.notifier()
        systemd.sock.close()
        os.unlink(systemd.value)
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        self.assertFalse(notifier.ready())
        self.assertFalse(notifier.ready())

        warnings = [e for e in events if "cannot notify" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)

    def test_only_paths_and_abstract_names_are_addresses(self):
        self.assertEqual(socket_address("/run/systemd/notify"), "/run/systemd/notify")
        self.assertEqual(socket_address("@name"), "\0name")
        self.assertIsNone(socket_address("vsock:2:1234"))
