"""Sizes and durations as tap.conf writes them: ``"64KiB"``, ``"250ms"``, or plain numbers."""

from __future__ import annotations

import math
import re

from clbproxy.config.text import shown, type_name

_SIZE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*\Z")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*\Z")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}

_SIZE_HELP = 'bytes as an integer, or a string like "64KiB", "16MiB", "512KB" or "10MB"'
_DURATION_HELP = 'seconds as a number, or a string like "5s", "250ms", "2m" or "1h"'

_MAX_DURATION = 365 * 86400.0
_MAX_SIZE = 2**63 - 1  # the largest file offset: nginx's and HAProxy's bound as well


def parse_size(value: object) -> int:
    """A size in bytes from an integer or a string like ``"64KiB"`` or ``"10MB"``.

    KB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024; the unit is
    case-insensitive.  Raises ``ValueError`` with a message for the user.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size ({_SIZE_HELP}), got {type_name(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must not be negative, got {shown(value)}")
        if value > _MAX_SIZE:
            raise ValueError(f"{shown(value)} is too large for a size (at most {_MAX_SIZE})")
        return value
    match = _SIZE.match(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; use {_SIZE_HELP}")
    digits = match.group(1)
    if len(digits) > 30:
        raise ValueError(f"{value!r} is too large")
    size = int(digits) * _SIZE_UNITS[unit]
    if size > _MAX_SIZE:
        raise ValueError(f"{value!r} is too large for a size (at most {_MAX_SIZE} bytes)")
    return size


def parse_duration(value: object) -> float:
    """A positive number of seconds from a number or a string like ``"5s"``, ``"250ms"``.

    Raises ``ValueError`` with a message for the user.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration ({_DURATION_HELP}), got {type_name(value)}")
    if isinstance(value, str):
        match = _DURATION.match(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _DURATION_UNITS:
            raise ValueError(f"{value!r} is not a duration; use {_DURATION_HELP}")
        seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if math.isnan(seconds):
        raise ValueError("a duration must be a number, got nan")
    if seconds > _MAX_DURATION:
        # Also keeps timers within what the reactor's poll() accepts as a timeout.
        raise ValueError(f"{shown(value)} is too large for a duration (at most 365 days)")
    if seconds <= 0:
        raise ValueError(f"a duration must be greater than 0, got {shown(value)}")
    return seconds
