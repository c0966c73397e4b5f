"""twistd's text log, formatted faster: same bytes, a fraction of the CPU.

twistd writes its log (``--logfile``, ``-n``) through
``twisted.logger.textFileLogObserver``, whose formatter runs every event through
``string.Formatter`` (to allow ``{f()}`` call syntax) and builds a time-zone-aware
``datetime`` and ``strftime`` for every timestamp.  Two lines per WebSocket session
made that 12-16 % of a handshake's proxy CPU.  :class:`ClassicTextFormatter`
produces exactly the text of Twisted's ``formatEventAsClassicLogText`` with
``formatTime(when, timeFormat)``, but formats the common event with
``str.format_map`` (or, for an event a worker sent as JSON, with the plan
Twisted's ``flatFormat`` follows, kept per format) and reuses the timestamp text
within one second; every other event (failures, legacy events, call syntax
outside flattened events, anything that raises)
goes to Twisted's own formatter, so the output never differs.

Why a cached timestamp is the same text: ``datetime.fromtimestamp`` rounds the
time to whole microseconds and then works on the whole second ``s`` and the
microseconds; Twisted's local offset (``FixedOffsetTimeZone.fromLocalTimeStamp``)
is a difference of two such datetimes, so depends on ``s`` only, and a format
without ``%f`` shows nothing finer than ``s``.  For a time ``t >= 0`` whose
fraction is below 0.999999 the rounding cannot carry into the next second, so
``s == int(t)``: such times share the cached text of their second.  Other times
(the last microsecond of a second, negative times, other types) and formats with
``%f`` are formatted by Twisted every time.

:func:`install_fast_text_log` swaps this formatter into twistd's own text file
observers only, recognised by the code of the function ``textFileLogObserver``
makes; JSON observers, a ``--logger`` observer and syslog are left alone.
"""

from __future__ import annotations

import io
from string import Formatter
from typing import Any, Optional

from twisted.logger import (
    FileLogObserver,
    formatEventAsClassicLogText,
    formatTime,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.logger._flatten import KeyFlattener

_parse = Formatter().parse

#: The code of the formatter ``textFileLogObserver`` gives its observer.
_TWISTED_TEXT_CODE = textFileLogObserver(io.StringIO()).formatEvent.__code__  # type: ignore[attr-defined]

#: Flattened-event plans kept per formatter (log formats are constants: a few dozen).
_MAX_PLANS = 512

#: Below this fraction of a second, rounding to microseconds stays in the same second.
_LAST_SAFE_FRACTION = 0.999999


class ClassicTextFormatter:
    """Twisted's classic text line (``TIME [SYSTEM] MESSAGE``) for one ``timeFormat``."""

    def __init__(self, timeFormat: Optional[str]) -> None:
        self.timeFormat = timeFormat
        #: Whether the format shows nothing finer than a second (so one text per second).
        self._per_second = timeFormat is not None and "%f" not in timeFormat
        self._second: Optional[int] = None
        self._stamp = ""
        #: log_format -> ((literal, flattened key or None), ...), as ``flatFormat`` reads it.
        self._plans: dict[str, tuple[tuple[str, Optional[str]], ...]] = {}

    def _twisted(self, event: dict) -> Optional[str]:
        timeFormat = self.timeFormat
        return formatEventAsClassicLogText(event, formatTime=lambda e: formatTime(e, timeFormat))

    def _time_text(self, when: Any) -> str:
        if self._per_second and (when.__class__ is float or when.__class__ is int):
            second = int(when)
            fraction = when - second
            if 0 <= fraction < _LAST_SAFE_FRACTION:
                if second != self._second:
                    self._stamp = formatTime(when, self.timeFormat)
                    self._second = second
                return self._stamp
        return formatTime(when, self.timeFormat)

    def _flat_text(self, fmt: str, fields: dict) -> str:
        """What Twisted's ``flatFormat`` makes of an event that came as JSON (from a worker)."""
        plan = self._plans.get(fmt)
        if plan is None:
            flattener = KeyFlattener()
            plan = tuple(
                (literal, None if name is None else flattener.flatKey(name, spec, conv or "s"))
                for literal, name, spec, conv in _parse(fmt)
            )
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[fmt] = plan
        parts = []
        for literal, key in plan:
            parts.append(literal)
            if key is not None:
                parts.append(str(fields[key]))
        return "".join(parts)

    def __call__(self, event: dict) -> Optional[str]:
        fmt = event.get("log_format")
        if fmt.__class__ is not str or "log_failure" in event:
            return self._twisted(event)
        flattened = event.get("log_flattened")
        if flattened is None and ("()" in fmt or "log_flattened" in event):
            return self._twisted(event)
        try:
            if flattened is None:
                text = fmt.format_map(event)
            else:
                text = self._flat_text(fmt, flattened)
            if not text:
                return self._twisted(event)
            system = event.get("log_system")
            if system is None:
                level = event.get("log_level")
                namespace = event.get("log_namespace", "-")
                system = f"{namespace}#{'-' if level is None else level.name}"
            else:
                system = str(system)
            line = f"{self._time_text(event.get('log_time'))} [{system}] {text}"
        except BaseException:
            return self._twisted(event)
        return line.replace("\n", "\n\t") + "\n"


def twisted_text_time_format(observer: object) -> tuple[bool, Optional[str]]:
    """``(True, timeFormat)`` for a ``textFileLogObserver``, else ``(False, None)``."""
    if not isinstance(observer, FileLogObserver):
        return False, None
    fn = getattr(observer, "formatEvent", None)
    if getattr(fn, "__code__", None) is not _TWISTED_TEXT_CODE:
        return False, None
    code = fn.__code__  # type: ignore[union-attr]
    cell = fn.__closure__[code.co_freevars.index("timeFormat")]  # type: ignore[union-attr]
    return True, cell.cell_contents


def install_fast_text_log(publisher=globalLogPublisher) -> int:
    """Give twistd's text file observers on ``publisher`` the fast formatter.

    Returns how many were changed (0 when twistd logs as JSON, to syslog or
    through ``--logger``, or when done already).
    """
    changed = 0
    for observer in list(getattr(publisher, "_observers", ())):
        found, timeFormat = twisted_text_time_format(observer)
        if found:
            observer.formatEvent = ClassicTextFormatter(timeFormat)
            changed += 1
    return changed
