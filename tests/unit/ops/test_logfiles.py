"""Tests for :mod:`clbproxy.ops.logfiles` that need no sockets: reopening log files."""

from __future__ import annotations

import os

from twisted.logger import LogPublisher, textFileLogObserver
from twisted.python.logfile import LogFile
from twisted.trial import unittest

from clbproxy.ops.logfiles import LogReopener


class LogReopenerTests(unittest.TestCase):
    def test_reopen_writes_to_a_new_file_after_logrotate_moved_the_old_one(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        log_file = LogFile("twistd.log", directory, rotateLength=None)
        self.addCleanup(log_file.close)
        publisher = LogPublisher(textFileLogObserver(log_file))
        reopener = LogReopener(publisher)
        hooked = []
        reopener.hooks.append(lambda: hooked.append(True))
        publisher({"log_format": "before", "log_time": 0})
        path = os.path.join(directory, "twistd.log")
        os.rename(path, path + ".1")

        reopener.reopen()
        publisher({"log_format": "after", "log_time": 0})

        with open(path) as new, open(path + ".1") as old:
            self.assertIn("after", new.read())
            self.assertNotIn("after", old.read())
        self.assertEqual(hooked, [True])
