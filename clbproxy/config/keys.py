"""Declaring a tap.conf key once, on the model attribute it fills.

Each attribute of a configuration record that a user can write is a
:func:`~clbproxy.config.keys.setting`: its metadata holds the TOML key, how its
value is checked, its default as the documentation shows it, and the sentence
that documents it.  From
that one declaration come the table's known keys (and the "did you mean"
suggestion for an unknown one), the parsing of every plain value, and the key
table of the configuration reference (``docs/_ext/clbproxy_config.py``).

Keys whose value is a table of its own, or that are checked together with
others, have no ``parse``: their table's validator reads them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import attrs

from clbproxy.config.reader import Reader
from clbproxy.config.text import key_path

#: Checks one value: ``parse(reader, key path, value)`` returns the model value,
#: or ``None`` after reporting a problem to the reader.
Parse = Callable[[Reader, str, Any], Any]

_METADATA = "clbproxy.config.key"


@attrs.frozen
class Key:
    """How one attribute is written in tap.conf, checked, and documented."""

    #: The TOML key; ``None`` until :func:`~clbproxy.config.keys.declared_keys`
    #: fills in the attribute's name.
    name: Optional[str]
    #: What the key means, as reStructuredText for the configuration reference.
    doc: str
    #: The default as the reference shows it: ``"http"``, ``256KiB``, (required)...
    default: str
    #: How a plain value is checked; ``None``: the table's validator reads the key.
    parse: Optional[Parse] = None
    #: Whether the table must have the key (only read here with a ``parse``).
    required: bool = False


def setting(
    default: Any = attrs.NOTHING,
    *,
    doc: str,
    parse: Optional[Parse] = None,
    key: Optional[str] = None,
    shown: Optional[str] = None,
    required: bool = False,
    repr: bool = True,
) -> Any:
    """An attrs field that is also the declaration of a tap.conf key."""
    declared = Key(
        name=key,
        doc=doc,
        default=_written(default, required) if shown is None else shown,
        parse=parse,
        required=required,
    )
    return attrs.field(default=default, repr=repr, metadata={_METADATA: declared})


def _written(default: Any, required: bool) -> str:
    """A default as tap.conf would spell it, for the reference table."""
    if default is attrs.NOTHING or required:
        return "(required)"
    if default is None:
        return "(none)"
    if isinstance(default, bool):
        return "``true``" if default else "``false``"
    if isinstance(default, str):
        return f'``"{default}"``'
    if isinstance(default, (int, float)):
        return f"``{default:g}``"
    if default == ():
        return "``[]``"
    raise ValueError(f"give shown= for the default {default!r}")


def declared_keys(record: type) -> list[tuple[str, Key]]:
    """``(attribute, key)`` for each attribute of ``record`` that is a tap.conf key."""
    found = []
    for field in attrs.fields(record):
        declared = field.metadata.get(_METADATA)
        if declared is not None:
            found.append((field.name, attrs.evolve(declared, name=declared.name or field.name)))
    return found


def key_names(record: type) -> Sequence[str]:
    """The tap.conf keys of ``record``'s table: anything else there is an unknown key."""
    return [declared.name for _, declared in declared_keys(record)]


def key_rows(record: type) -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` for each key of ``record``, as the reference lists them."""
    return [
        (declared.name, declared.default, declared.doc) for _, declared in declared_keys(record)
    ]


def read_keys(
    reader: Reader,
    path: str,
    table: dict[str, Any],
    record: type,
    fields: dict[str, Any],
    parsers: Optional[Mapping[str, Parse]] = None,
) -> None:
    """Check each key of ``record`` found in ``table`` into ``fields``, by attribute.

    A key is read with its declared ``parse``, or with ``parsers[attribute]`` when
    its check needs more than the value (a validator above the model); keys with
    neither are left to the caller.  Keys are read in declaration order, so
    problems come in the order of the reference; a missing required key is a problem.
    """
    parsers = parsers or {}
    for attribute, declared in declared_keys(record):
        parse = parsers.get(attribute, declared.parse)
        if parse is None:
            continue
        if declared.name in table:
            value = table[declared.name]
            fields[attribute] = parse(reader, key_path(path, declared.name), value)
        elif declared.required:
            reader.required(path, table, declared.name)


# Checks for the declarations: each calls the reader's typed helper of that name.


def string() -> Parse:
    return lambda reader, path, value: reader.string(path, value)


def name() -> Parse:
    return lambda reader, path, value: reader.name(path, value)


def boolean() -> Parse:
    return lambda reader, path, value: reader.boolean(path, value)


def integer(low: int, high: int) -> Parse:
    return lambda reader, path, value: reader.integer(path, value, low, high)


def number(low: float, high: float) -> Parse:
    return lambda reader, path, value: reader.number(path, value, low, high)


def size(minimum: int = 0) -> Parse:
    return lambda reader, path, value: reader.size(path, value, minimum)


def duration() -> Parse:
    return lambda reader, path, value: reader.duration(path, value)


def duration_in(low: float, high: float) -> Parse:
    return lambda reader, path, value: reader.duration_in(path, value, low, high)


def choice(choices: Sequence[str], what: str) -> Parse:
    return lambda reader, path, value: reader.choice(path, value, choices, what)


def file() -> Parse:
    return lambda reader, path, value: reader.file(path, value)


def bind() -> Parse:
    return lambda reader, path, value: reader.bind(path, value)


def read_record(reader: Reader, path: str, value: object, record: type) -> Any:
    """The ``record`` a table whose keys all check themselves makes, or ``None``.

    For tables with no check across keys and no key read by a validator above
    the model: the table itself, each declared key, and the record built only
    when none of that reported a problem.
    """
    before = len(reader.problems)
    table = reader.table(path, value, key_names(record))
    if table is None:
        return None
    fields: dict[str, Any] = {}
    read_keys(reader, path, table, record, fields)
    if len(reader.problems) > before:
        return None
    return record(**fields)
