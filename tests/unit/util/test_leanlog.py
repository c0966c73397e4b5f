"""LeanLogger.info: the event Twisted's Logger.info would send, built once."""

from __future__ import annotations

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial import unittest

from clbproxy.util.leanlog import LeanLogger


def one_event(logger_class, **kwargs) -> dict:
    events: list = []
    log = logger_class(namespace="clbproxy.test", source="a source", observer=events.append)
    log.info("opened {client} {backend}", client="127.0.0.1", backend="10.0.0.1:80", **kwargs)
    (event,) = events
    return event


class LeanLoggerTests(unittest.TestCase):
    def test_info_sends_the_event_twisteds_info_sends(self) -> None:
        lean, twisted = one_event(LeanLogger), one_event(Logger)
        for event in (lean, twisted):
            event.pop("log_logger")
            event.pop("log_time")
        self.assertEqual(list(lean.items()), list(twisted.items()))

    def test_the_event_is_at_info_from_this_logger_now(self) -> None:
        events: list = []
        log = LeanLogger(namespace="clbproxy.test", observer=events.append)
        log.info("x")
        (event,) = events
        self.assertIs(event["log_logger"], log)
        self.assertIs(event["log_level"], LogLevel.info)
        self.assertIsInstance(event["log_time"], float)

    def test_a_traced_event_records_the_logger_and_its_observer(self) -> None:
        publisher = LogPublisher()
        log = LeanLogger(namespace="clbproxy.test", observer=publisher)
        trace: list = []
        log.info("x", log_trace=trace)
        self.assertEqual(trace[0], (log, publisher))

    def test_a_module_logger_is_named_after_its_module(self) -> None:
        self.assertEqual(LeanLogger().namespace, __name__)
