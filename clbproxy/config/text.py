"""How configuration problems name things: key paths, values, types and suggestions.

Every message a user reads about tap.conf is built from these helpers, so a key
path or a value is spelled the same way whichever table reports it.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from typing import Sequence

#: What a listener, demo backend or target group may be called.
NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def key_path(path: str, key: str) -> str:
    """``path.key``, quoting ``key`` as TOML would when it is not a bare key."""
    if not _BARE_KEY.match(key):
        key = '"' + "".join(_toml_escape(char) for char in key) + '"'
    return f"{path}.{key}" if path else key


def _toml_escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char


def show_name(name: str) -> str:
    """A name as written in the file, quoted only when it is not a plain name."""
    return name if NAME.match(name) else repr(name)


def tail(path: str) -> str:
    """The last component of a key path, to refer to a sibling: ``rule[0]``, ``backends[1]``."""
    return path.rsplit(".", 1)[-1]


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def type_name(value: object) -> str:
    """How a TOML value's type is called in messages: ``a string``, ``an integer``..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return type(value).__name__


def shown(value: object) -> str:
    """``value`` as the user wrote it, or its length when it is an absurdly long integer.

    Printing an integer of thousands of digits is refused by the interpreter (its
    int-to-string limit) and would not help anyone reading the message anyway.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        magnitude = abs(value)
        digits = math.floor(magnitude.bit_length() * math.log10(2))
        while 10**digits <= magnitude:
            digits += 1
        while 10 ** (digits - 1) > magnitude:
            digits -= 1
        return f"an integer of {digits} digits"
    return repr(value)


def show_size(size: int) -> str:
    """A byte count in the largest binary unit that divides it, with the bytes."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit} ({size} bytes)"
    return f"{size} bytes"
