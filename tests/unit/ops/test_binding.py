"""Tests for :mod:`clbproxy.ops.binding`: the one line for a socket that cannot be bound."""

from __future__ import annotations

import errno

from twisted.application.service import MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.trial import unittest

from clbproxy.ops.binding import describe_listen_error, start_children_privileged


def in_use(port: int = 80, interface: str = "") -> CannotListenError:
    return CannotListenError(interface, port, OSError(errno.EADDRINUSE, "Address in use"))


class DescribeTests(unittest.TestCase):
    def test_a_port_in_use_names_the_address_and_the_reason(self):
        self.assertEqual(
            describe_listen_error(in_use(80, "127.0.0.1")),
            "cannot listen on 127.0.0.1:80: Address in use",
        )

    def test_every_interface_is_a_star(self):
        self.assertEqual(
            describe_listen_error(in_use(8080)), "cannot listen on *:8080: Address in use"
        )

    def test_a_system_exit_carries_its_own_line(self):
        self.assertEqual(
            describe_listen_error(SystemExit("tcp:1: not inherited")), "tcp:1: not inherited"
        )


class Unbindable(Service):
    def privilegedStartService(self) -> None:
        raise in_use(443)


class StartTests(unittest.TestCase):
    def test_a_child_that_cannot_bind_stops_the_start_with_one_line(self):
        parent = MultiService()
        child = Unbindable()
        child.setName("listener:secure")
        child.setServiceParent(parent)

        with self.assertRaises(SystemExit) as raised:
            start_children_privileged(parent)

        self.assertEqual(
            raised.exception.code,
            "clbproxy: listener:secure: cannot listen on *:443: Address in use",
        )
