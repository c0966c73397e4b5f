"""Autobahn's debug-log arguments, formatted only when a debug line is actually written.

Autobahn builds the arguments of its debug log calls eagerly: on every
connection it pretty-prints all of its ~40 protocol options
(``pformat(configAttrLog)`` in ``_connectionMade``) and the transport details
(in ``startHandshake``), and on every read, send, open and close it colours
type names (``hltype``/``hlval``).  At clbproxy's log levels (info and above)
those strings are thrown away unread, yet in a profile of connect + one echo +
close they were about a third of the proxy's CPU time.

:func:`install` rebinds those helper names, in the two Autobahn modules that
call them in their log lines, to versions that return a small object which
formats itself only when a log observer turns the event into text.  What a
debug log shows is unchanged; only when it is computed moves.
"""

from __future__ import annotations

from pprint import pformat
from typing import Any, Callable

import txaio
from autobahn import util as _util
from autobahn.twisted import websocket as _twisted_websocket
from autobahn.websocket import protocol as _protocol


class LazyText:
    """``func(*args)`` as text, computed on ``str()``/``format()``/``repr()``."""

    __slots__ = ("_func", "_args")

    def __init__(self, func: Callable[..., str], args: tuple) -> None:
        self._func = func
        self._args = args

    def __str__(self) -> str:
        return str(self._func(*self._args))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    __repr__ = __str__


def _lazy(func: Callable[..., str]) -> Callable[..., Any]:
    def lazy(*args: Any) -> LazyText:
        return LazyText(func, args)

    lazy.__wrapped__ = func  # type: ignore[attr-defined]
    lazy.__name__ = func.__name__
    return lazy


def _pformat_when_debugging(obj: object) -> str:
    if txaio.get_global_log_level() in ("debug", "trace"):
        return pformat(obj)
    return "<not formatted: debug logging is off>"


#: (module, name, eager function): the helpers Autobahn calls only for debug log arguments.
_TARGETS = (
    (_protocol, "pformat", pformat),
    (_protocol, "hltype", _util.hltype),
    (_protocol, "hlval", _util.hlval),
    (_twisted_websocket, "hltype", _util.hltype),
    (_twisted_websocket, "hlval", _util.hlval),
)


def install() -> None:
    """Make Autobahn's debug-log arguments lazy (idempotent)."""
    for module, name, eager in _TARGETS:
        if getattr(module, name) is eager:
            setattr(module, name, _pformat_when_debugging if eager is pformat else _lazy(eager))


def installed() -> bool:
    """True when every helper is the lazy version."""
    return all(getattr(module, name) is not eager for module, name, eager in _TARGETS)
