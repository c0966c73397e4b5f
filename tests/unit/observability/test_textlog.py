"""The fast text formatter writes exactly what Twisted's text observer writes."""

from __future__ import annotations

import io
import os
import random
import time

from twisted.logger import (
    FileLogObserver,
    LogLevel,
    LogPublisher,
    eventAsJSON,
    eventFromJSON,
    formatEventAsClassicLogText,
    formatTime,
    jsonFileLogObserver,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.trial import unittest

from clbproxy.observability import textlog
from clbproxy.observability.textlog import ClassicTextFormatter, install_fast_text_log

T0 = 1_780_000_000.25  # a Tuesday in 2026


def twisted_text(event: dict, timeFormat=timeFormatRFC3339):
    return formatEventAsClassicLogText(event, formatTime=lambda e: formatTime(e, timeFormat))


def failure() -> Failure:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        return Failure()


class Called:
    def __call__(self):
        return "called"


def events() -> list[dict]:
    base = {"log_namespace": "clbproxy.ws.closing", "log_level": LogLevel.info, "log_time": T0}
    table = [
        {"log_format": "plain text"},
        {"log_format": "websocket: {peer} open request_id={rid}", "peer": "1.2.3.4", "rid": "ab"},
        {"log_format": "after {duration:.3f}s; {timeout:g}", "duration": 1.23456, "timeout": 30.0},
        {"log_format": "{x!r} {x!s} {x!a} {x:>8}", "x": "é"},
        {"log_format": "missing {nothere}"},
        {"log_format": "non-ASCII ünïcödé ☃ {v}", "v": "日本"},
        {"log_format": "lines {v}", "v": "one\ntwo\nthree"},
        {"log_format": "line1\nline2"},
        {"log_format": "system set", "log_system": "mysys"},
        {"log_format": "system with newline", "log_system": "a\nb"},
        {"log_format": "system None", "log_system": None},
        {"log_format": "system int", "log_system": 42},
        {"log_format": "no level", "log_level": None},
        {"log_format": "warn", "log_level": LogLevel.warn},
        {"log_format": "error", "log_level": LogLevel.error},
        {"log_format": "critical", "log_level": LogLevel.critical},
        {"log_format": "debug", "log_level": LogLevel.debug},
        {"log_format": "no namespace", "log_namespace": None},
        {"log_format": "failure {x}", "x": 1, "log_failure": failure()},
        {"log_format": "call {f()}", "f": Called()},
        {"log_format": "call {f()}", "f": Called(), "f()": "literal key"},
        {"log_format": "attr {o.real} item {d[k]} idx {l[0]}", "o": 3, "d": {"k": "v"}, "l": [9]},
        {"log_format": "positional {}"},
        {"log_format": "positional {0}"},
        {"log_format": "unbalanced {"},
        {"log_format": "bad spec {x:d}", "x": "str"},
        {"log_format": "nested {x:{w}}", "x": 5, "w": 4},
        {"log_format": "too nested {x:{w:{z}}}", "x": 5, "w": 4, "z": 1},
        {"log_format": "braces {{literal}}"},
        {"log_format": ""},
        {"log_format": "{empty}", "empty": ""},
        {"log_format": b"bytes format {x}", "x": 1},
        {"log_format": None},
        {"log_format": 42},
        {},
        {"message": ("legacy", "message"), "isError": 0, "log_format": None},
        {"log_text": "legacy log_text"},
        {"log_format": "flattened {x}", "x": 1, "log_flattened": {"x!:": "1", "x": 1}},
        {"log_format": "no time", "log_time": None},
        {"log_format": "int time", "log_time": 1_780_000_000},
        {"log_format": "negative time", "log_time": -0.5},
        {"log_format": "last microsecond", "log_time": 1_780_000_000.9999996},
        {"log_format": "tab\tand\r\n", "log_system": "\t"},
        {"log_format": "twice {x} {x} {x!r} {x:>4}", "x": "v"},
        {"log_format": "flattened None", "log_flattened": None},
    ]
    out = []
    for extra in table:
        event = dict(base)
        event.update(extra)
        if event.get("log_namespace") is None:
            del event["log_namespace"]
        out.append(event)
    return out


def worker_events() -> list[dict]:
    """The table's events as the supervisor gets them from a worker: through JSON."""
    out = []
    for event in events():
        if not isinstance(event.get("log_format"), str) or "log_flattened" in event:
            continue
        try:
            relayed = eventFromJSON(eventAsJSON(dict(event)))
        except Exception:
            continue  # the worker's JSON observer could not write it either
        relayed["log_system"] = "worker 1"
        out.append(relayed)
    bad = eventFromJSON(eventAsJSON({"log_format": "{x}", "x": 1, "log_time": T0}))
    del bad["log_flattened"]["x!s:"]
    return out + [bad]


class FormatterEqualsTwistedTests(unittest.TestCase):
    def test_every_table_event_gives_twisteds_text(self):
        for event in events():
            fast = ClassicTextFormatter(timeFormatRFC3339)
            self.assertEqual(fast(dict(event)), twisted_text(dict(event)), event)

    def test_every_event_from_a_worker_gives_twisteds_text(self):
        fast = ClassicTextFormatter(timeFormatRFC3339)
        for event in worker_events() * 2:
            self.assertEqual(fast(dict(event)), twisted_text(dict(event)), event)

    def test_a_reused_formatter_gives_twisteds_text_for_every_event(self):
        fast = ClassicTextFormatter(timeFormatRFC3339)
        for event in events() * 2:
            self.assertEqual(fast(dict(event)), twisted_text(dict(event)), event)

    def test_common_events_are_formatted_without_twisteds_formatter(self):
        fast = ClassicTextFormatter(timeFormatRFC3339)
        common = [events()[2], worker_events()[2]]
        expected = [twisted_text(dict(event)) for event in common]
        self.patch(textlog, "formatEventAsClassicLogText", self.fail)
        self.assertEqual([fast(dict(event)) for event in common], expected)

    def test_other_time_formats_give_twisteds_text(self):
        for timeFormat in (None, "%Y/%m/%d %H:%M:%S", "%H:%M:%S.%f", "%s %Z %z", "%%f %c"):
            fast = ClassicTextFormatter(timeFormat)
            for when in (T0, T0 + 0.5, T0 + 0.75, T0 + 1.1):
                event = {"log_format": "x", "log_time": when}
                self.assertEqual(fast(event), twisted_text(event, timeFormat), timeFormat)


class TimestampTests(unittest.TestCase):
    """The cached second is Twisted's text, across seconds and zone changes."""

    def setUp(self):
        old = os.environ.get("TZ")

        def restore():
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)

    def in_zone(self, zone: str) -> None:
        if zone != "UTC" and not os.path.exists(os.path.join("/usr/share/zoneinfo", zone)):
            raise unittest.SkipTest(f"no time zone data for {zone}")
        os.environ["TZ"] = zone
        time.tzset()

    def assert_times_match(self, times) -> None:
        fast = ClassicTextFormatter(timeFormatRFC3339)
        for when in times:
            event = {"log_format": "t", "log_time": when, "log_system": "s"}
            self.assertEqual(fast(event), twisted_text(event), when)

    def around(self, moment: float) -> list[float]:
        rng = random.Random(moment)
        times = [moment + step / 8 for step in range(-40, 41)]
        times += [moment + offset for offset in (-1e-7, -5e-7, -1e-6, 1e-7, 0.9999995, 0.999999)]
        times += [moment + rng.uniform(-5, 5) for _ in range(300)]
        return sorted(times)

    def test_times_across_seconds_match_in_utc(self):
        self.in_zone("UTC")
        self.assert_times_match(self.around(T0))

    def test_times_across_dst_changes_match(self):
        # Spring forward and fall back in Berlin and New York, 2026, and Lord Howe's half hour.
        for zone, moment in [
            ("Europe/Berlin", 1774746000.0),
            ("Europe/Berlin", 1792890000.0),
            ("America/New_York", 1772953200.0),
            ("America/New_York", 1793512800.0),
            ("Australia/Lord_Howe", 1775314800.0),
        ]:
            self.in_zone(zone)
            self.assert_times_match(self.around(moment))

    def test_times_in_a_zone_with_seconds_in_its_offset_match(self):
        # Amsterdam was UTC+00:19:32 until 1937 (this is 1922, in summer time: +01:19:32).
        self.in_zone("Europe/Amsterdam")
        self.assertIn("1932", formatTime(-1_500_000_000.0))
        self.assert_times_match(self.around(-1_500_000_000.0))

    def test_random_times_match_in_many_zones(self):
        rng = random.Random(20)
        for zone in ("UTC", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "EST5EDT"):
            self.in_zone(zone)
            times = sorted(rng.uniform(0, 2_000_000_000) for _ in range(200))
            self.assert_times_match(times + [t + 0.3 for t in times])


class InstallTests(unittest.TestCase):
    def test_install_swaps_twisteds_text_observer_keeping_its_time_format(self):
        publisher = LogPublisher()
        text = textFileLogObserver(io.StringIO(), timeFormat="%H:%M")
        publisher.addObserver(text)
        self.assertEqual(install_fast_text_log(publisher), 1)
        self.assertIsInstance(text.formatEvent, ClassicTextFormatter)
        self.assertEqual(text.formatEvent.timeFormat, "%H:%M")

    def test_installed_observer_writes_what_twisted_would(self):
        publisher = LogPublisher()
        before, after = io.StringIO(), io.StringIO()
        plain = textFileLogObserver(before)
        fast = textFileLogObserver(after)
        publisher.addObserver(plain)
        publisher.addObserver(fast)
        install_fast_text_log(publisher)
        plain.formatEvent = textFileLogObserver(before).formatEvent
        for event in events():
            publisher(dict(event))
        self.assertEqual(after.getvalue(), before.getvalue())

    def test_install_leaves_json_custom_and_other_observers_alone(self):
        publisher = LogPublisher()
        json = jsonFileLogObserver(io.StringIO())
        custom = FileLogObserver(io.StringIO(), lambda event: "custom\n")
        seen = []
        publisher.addObserver(json)
        publisher.addObserver(custom)
        publisher.addObserver(seen.append)
        formats = (json.formatEvent, custom.formatEvent)
        self.assertEqual(install_fast_text_log(publisher), 0)
        self.assertEqual((json.formatEvent, custom.formatEvent), formats)

    def test_install_twice_changes_nothing_the_second_time(self):
        publisher = LogPublisher()
        publisher.addObserver(textFileLogObserver(io.StringIO()))
        install_fast_text_log(publisher)
        self.assertEqual(install_fast_text_log(publisher), 0)
