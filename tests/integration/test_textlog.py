"""twistd's own log, written by the fast formatter, keeps Twisted's classic lines."""

from __future__ import annotations

import re
import signal

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.test_lifecycle import Twistd, config_text, free_port
from tests.support.network import Listening

#: ``TIME [SYSTEM] MESSAGE``, continuation lines indented with a tab, as Twisted writes them.
CLASSIC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[[^\]\n]+\] .*")


class TwistdTextLogTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_websocket_sessions_lines_are_classic_text_lines(self):
        listening = Listening(self)
        _, backend_port = listening.backend()
        backend_port = yield backend_port
        port = free_port()
        twistd = Twistd(self)
        twistd.write(config_text(backend_port, bind=f"tcp:{port}:interface=127.0.0.1"))
        yield twistd.start()
        client = listening.client(port)
        protocol = yield client.opened
        protocol.sendClose(1000)
        yield client.closed
        yield twistd.wait_for_log(" closed after ")
        twistd.kill(signal.SIGTERM)
        yield twistd.exited()

        lines = twistd.log().splitlines()
        self.assertEqual([line for line in lines if not CLASSIC.fullmatch(line)], [])
        session = [line for line in lines if "websocket: " in line]
        self.assertEqual(len(session), 2, lines)
        self.assertRegex(session[0], r"\[clbproxy\.ws\.\w+#info\] websocket: .* open request_id=")
        self.assertRegex(session[1], r"\[clbproxy\.ws\.closing#info\] websocket: .* closed after ")
