"""Reading tap.conf: TOML text in, a document plus problems named by key path out.

:class:`~clbproxy.config.reader.Reader` collects every problem of a document, each as one line
``SOURCE: key.path: message``, while the table validators check values with its
typed helpers; nothing stops at the first mistake, so a broken file is fixed in
one edit.  The source is a file name or any other name a document was read
from (``etcd:/clbproxy/config``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional, Sequence, Union

from clbproxy.config.endpoints import endpoint_problem
from clbproxy.config.text import NAME, did_you_mean, show_size, shown, type_name
from clbproxy.config.units import parse_duration, parse_size

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

_TOML_POSITION = re.compile(r"(.*) \(at (?:line (\d+), column (\d+)|end of document)\)\Z", re.S)
_KEY_TUPLE = re.compile(r"\(((?:'[^']*', )*'[^']*'),?\)")


def read_file(reader: Reader, path: str) -> Optional[bytes]:
    """The bytes of the file at ``path``, or ``None`` after reporting why it cannot be read."""
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as e:
        reader.problem("", f"cannot read: {e.strerror or e}")
        return None


def parse_toml(reader: Reader, data: Union[bytes, str]) -> Optional[dict[str, Any]]:
    """The parsed document, or ``None`` after reporting why ``data`` is not TOML."""
    if isinstance(data, str):
        text = data[1:] if data.startswith("\ufeff") else data
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line, column = _position(data[: e.start].decode("utf-8-sig"))
            byte = data[e.start]
            reader.problem("", f"line {line}, column {column}: not valid UTF-8 (byte 0x{byte:02x})")
            return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        reader.problem("", _toml_error(e, text))
    except RecursionError:
        reader.problem("", "arrays or tables are nested too deeply")
    except ValueError as e:
        if "integer string conversion" in str(e):
            # CPython's int-to-string limit, whose own message suggests a Python call.
            e = ValueError("an integer has more digits than the interpreter reads (4300)")
        reader.problem("", f"not valid TOML: {e}")
    return None


def _toml_error(error: ValueError, text: str) -> str:
    """``line L, column C: message`` for a TOML syntax error."""
    message = getattr(error, "msg", None)
    line = getattr(error, "lineno", None)
    column = getattr(error, "colno", None)
    if message is None or line is None:
        match = _TOML_POSITION.match(str(error))
        if match is None:
            return f"not valid TOML: {error}"
        message = match.group(1)
        if match.group(2):
            line, column = int(match.group(2)), int(match.group(3))
        else:
            line, column = _position(text)
    message = _KEY_TUPLE.sub(lambda m: ".".join(_literal_keys(m.group(1))), message)
    return f"line {line}, column {column}: {message}"


def _literal_keys(text: str) -> list[str]:
    """The keys of a repr'd tuple of strings, as found in tomllib's messages."""
    return [part.strip("'") for part in text.split(", ")]


def _position(text: str) -> tuple[int, int]:
    """Line and column (1-based) just after ``text``."""
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


class Reader:
    """Collects problems, each named by source and key path, while values are checked.

    ``base_directory`` is where relative file names in the document (certificates,
    ``token_file``...) are taken from: the configuration file's own directory.
    """

    def __init__(self, source: str, base_directory: str) -> None:
        self.source = source
        self.base_directory = base_directory
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        self.problems.append(where + message)

    def table(self, path: str, value: object, known: Sequence[str]) -> Optional[dict[str, Any]]:
        """``value`` if it is a table, after reporting any key not in ``known``."""
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {type_name(value)}")
            return None
        for key in value:
            if key not in known:
                self.problem(path, f"unknown key {key!r}{did_you_mean(key, known)}")
        return value

    def required(self, path: str, table: dict[str, Any], key: str, hint: str = "") -> bool:
        if key in table:
            return True
        self.problem(path, f"missing required key {key!r}{hint}")
        return False

    def tables(self, path: str, value: object, header: str) -> list[tuple[str, dict[str, Any]]]:
        """The tables of an array of tables, each with its path; problems for the rest."""
        if not isinstance(value, list):
            self.problem(path, f"expected an array of tables ({header}), got {type_name(value)}")
            return []
        if not value:
            self.problem(path, f"needs at least one {header}")
        found = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if isinstance(item, dict):
                found.append((item_path, item))
            else:
                self.problem(item_path, f"expected a table, got {type_name(item)}")
        return found

    def string(self, path: str, value: object) -> Optional[str]:
        if isinstance(value, str):
            return value
        self.problem(path, f"expected a string, got {type_name(value)}")
        return None

    def strings(self, path: str, value: object) -> list[tuple[str, str]]:
        """The strings of an array, each with its path; problems for anything else."""
        if not isinstance(value, list):
            self.problem(path, f"expected an array of strings, got {type_name(value)}")
            return []
        found = []
        for index, item in enumerate(value):
            text = self.string(f"{path}[{index}]", item)
            if text is not None:
                found.append((f"{path}[{index}]", text))
        return found

    def name(self, path: str, value: object) -> Optional[str]:
        text = self.string(path, value)
        if text is not None and not NAME.match(text):
            self.problem(path, f"invalid name {text!r}: use letters, digits, '_', '.' and '-'")
            return None
        return text

    def integer(self, path: str, value: object, low: int, high: int) -> Optional[int]:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"expected an integer, got {type_name(value)}")
            return None
        if not low <= value <= high:
            self.problem(path, f"{shown(value)} out of range {low}-{high}")
            return None
        return value

    def number(self, path: str, value: object, low: float, high: float) -> Optional[float]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, f"expected a number, got {type_name(value)}")
            return None
        if not low <= value <= high:
            self.problem(path, f"{shown(value)} out of range {low:g}-{high:g}")
            return None
        return float(value)

    def choice(self, path: str, value: object, choices: Sequence[str], what: str) -> Optional[str]:
        text = self.string(path, value)
        if text is not None and text not in choices:
            allowed = ", ".join(repr(choice) for choice in choices)
            self.problem(path, f"unknown {what} {text!r}; must be one of: {allowed}")
            return None
        return text

    def size(self, path: str, value: object, minimum: int = 0) -> Optional[int]:
        try:
            size = parse_size(value)
        except ValueError as e:
            self.problem(path, str(e))
            return None
        if size < minimum:
            self.problem(path, f"must be at least {show_size(minimum)}, got {value!r}")
            return None
        return size

    def boolean(self, path: str, value: object) -> Optional[bool]:
        if isinstance(value, bool):
            return value
        self.problem(path, f"expected true or false, got {type_name(value)}")
        return None

    def duration(self, path: str, value: object) -> Optional[float]:
        try:
            return parse_duration(value)
        except ValueError as e:
            self.problem(path, str(e))
            return None

    def duration_in(self, path: str, value: object, low: float, high: float) -> Optional[float]:
        seconds = self.duration(path, value)
        if seconds is not None and not low <= seconds <= high:
            self.problem(path, f"{seconds:g} s out of range {low:g}-{high:g} s")
            return None
        return seconds

    def file(self, path: str, value: object) -> Optional[str]:
        """A file name, made absolute relative to the document's base directory."""
        text = self.string(path, value)
        if text is None:
            return None
        if not text:
            self.problem(path, "must not be empty")
            return None
        return os.path.normpath(os.path.join(self.base_directory, os.path.expanduser(text)))

    def bind(self, path: str, value: object) -> Optional[str]:
        description = self.string(path, value)
        if description is None:
            return None
        problem = endpoint_problem(description)
        if problem is not None:
            self.problem(path, problem)
            return None
        return description
