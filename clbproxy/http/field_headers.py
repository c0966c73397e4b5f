"""twisted.web's ``Headers`` with the per-request cost taken out of its hot methods.

A listener request's request and response headers are read and written a few
dozen times per request (routing, forwarding headers, the access log, the
response copy).  Twisted's ``Headers`` canonicalizes the name through a method
call and rewrites every value through ``splitlines`` on each of them; this
subclass looks the canonical name up in one dict and leaves a value without a
line break as it is.  What it stores and returns is exactly what ``Headers``
would (same canonical names, same order, the same line-break folding, the same
``InvalidHeaderName`` for a name that is not a token), so every caller and
``isinstance(x, Headers)`` check is unchanged; names or values given as ``str``
take Twisted's own path.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union

from twisted.web.http_headers import Headers

from clbproxy.util.octets import CR, LF

_T = TypeVar("_T")

#: Bytes names to their canonical spelling (as ``Headers`` stores them).  Names
#: come from clients: the cache is bounded, as Twisted bounds its own.
_KEYS: Dict[bytes, bytes] = {}
_MAX_KEYS = 10_000


def _key(name: bytes) -> bytes:
    """The canonical name ``Headers`` stores ``name`` under (raises as ``Headers`` does)."""
    key = _KEYS.get(name)
    if key is None:
        probe = Headers()
        probe.addRawHeader(name, b"")
        ((key, _),) = probe.getAllRawHeaders()
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[name] = key
    return key


def _folded(value: bytes) -> bytes:
    """``value`` with line breaks replaced by spaces, as ``Headers`` stores values."""
    if LF in value or CR in value:
        return b" ".join(value.splitlines())
    return value


class FieldHeaders(Headers):
    """``Headers`` whose bytes-named methods skip Twisted's per-call encoding (see module)."""

    __slots__ = ()

    @classmethod
    def from_pairs(cls, pairs: Iterable[Tuple[bytes, bytes]]) -> FieldHeaders:
        """Headers holding ``pairs`` (name, value) in order, as ``addRawHeader`` each."""
        headers = cls()
        headers._rawHeaders = _grouped(pairs)
        return headers

    def copy(self) -> FieldHeaders:
        """A copy holding the same names and values (as ``Headers.copy``, without re-encoding)."""
        headers = type(self)()
        headers._rawHeaders = {key: list(values) for key, values in self._rawHeaders.items()}
        return headers

    def set_grouped(self, pairs: Iterable[Tuple[bytes, bytes]]) -> None:
        """``setRawHeaders(name, values)`` for each name among ``pairs``, in one pass.

        Each name's values are those of its pairs, in order; names are set in
        the order they first come (a name already held keeps its place, as
        ``setRawHeaders`` keeps it), bytes names only.
        """
        self._rawHeaders.update(_grouped(pairs))

    def hasHeader(self, name) -> bool:
        if type(name) is bytes:
            return (_KEYS.get(name) or _key(name)) in self._rawHeaders
        return Headers.hasHeader(self, name)

    def removeHeader(self, name) -> None:
        if type(name) is bytes:
            self._rawHeaders.pop(_KEYS.get(name) or _key(name), None)
        else:
            Headers.removeHeader(self, name)

    def setRawHeaders(self, name, values: Sequence[Union[str, bytes]]) -> None:
        if type(name) is bytes:
            if len(values) == 1:  # most calls: one value, no loop
                value = values[0]
                if type(value) is bytes:
                    if LF in value or CR in value:
                        value = b" ".join(value.splitlines())
                    self._rawHeaders[_KEYS.get(name) or _key(name)] = [value]
                    return
            stored = []
            for value in values:
                if type(value) is not bytes:
                    break
                if LF in value or CR in value:
                    value = b" ".join(value.splitlines())
                stored.append(value)
            else:
                self._rawHeaders[_KEYS.get(name) or _key(name)] = stored
                return
        Headers.setRawHeaders(self, name, values)

    def addRawHeader(self, name, value) -> None:
        if type(name) is bytes and type(value) is bytes:
            key = _KEYS.get(name) or _key(name)
            values = self._rawHeaders.get(key)
            if values is None:
                self._rawHeaders[key] = [_folded(value)]
            else:
                values.append(_folded(value))
        else:
            Headers.addRawHeader(self, name, value)

    def getRawHeaders(self, name, default: Optional[_T] = None):
        if type(name) is bytes:
            values = self._rawHeaders.get(_KEYS.get(name) or _key(name))
            return values if values else default
        return Headers.getRawHeaders(self, name, default)

    def get_field(self, key: bytes) -> Optional[List[bytes]]:
        """``getRawHeaders(name)`` for ``key = field_key(name)``: one lookup, no name to spell.

        For a name read on every request (the request-ID header), spelled once.
        """
        return self._rawHeaders.get(key) or None

    def set_field(self, key: bytes, value: bytes) -> None:
        """``setRawHeaders(name, [value])`` for ``key = field_key(name)``.

        ``value`` must hold no CR or LF (nothing is folded): the request-ID
        header, whose value is well formed (:mod:`clbproxy.http.request_id`).
        """
        self._rawHeaders[key] = [value]

    def get_fields(self, keys: Tuple[bytes, ...]) -> List[Optional[List[bytes]]]:
        """``get_field(key)`` for each of ``keys``, in one call (several fields a request needs)."""
        fields = [*map(self._rawHeaders.get, keys)]
        if [] in fields:  # a name set to no values reads as absent, as get_field reads it
            return [values or None for values in fields]
        return fields

    def with_fields(self, removed: bytes, fields: Dict[bytes, List[bytes]]) -> FieldHeaders:
        """New headers: these less the key ``removed``, then ``fields`` (key: values) set.

        ``fields`` are set as :meth:`set_grouped` sets them (a key held keeps
        its place).  This object is left as it is, for a forwarded response's
        headers as they were before the backend's (a 502 page's, should the
        backend fail before the body), and at the cost of one dict copy: the
        two share the value lists of the keys ``fields`` does not set.  So
        nothing adds to those lists in place: :meth:`add_apart` adds a value in
        a new list.
        """
        raw = self._rawHeaders.copy()
        raw.pop(removed, None)
        raw.update(fields)
        headers = object.__new__(type(self))  # __init__ would make a dict to drop
        headers._rawHeaders = raw
        return headers

    def add_apart(self, name: Union[str, bytes], value: Union[str, bytes]) -> None:
        """``addRawHeader(name, value)``, its values in a new list (see :meth:`with_fields`)."""
        if type(name) is bytes and type(value) is bytes:
            key = _KEYS.get(name) or _key(name)
            values = [_folded(value)]
        else:
            probe = Headers()
            probe.addRawHeader(name, value)  # Twisted's encoding of str names and values
            ((key, values),) = probe.getAllRawHeaders()
        known = self._rawHeaders.get(key)
        self._rawHeaders[key] = values if known is None else known + values

    def grouped(self) -> Dict[bytes, list]:
        """The fields as kept: values by canonical name, in first-set order (read, never change).

        ``getAllRawHeaders`` without the generator, and ``dict.get`` by canonical
        name (``b"X-Forwarded-For"``) for each field a caller needs.
        """
        return self._rawHeaders

    @classmethod
    def from_grouped(cls, grouped: Dict[bytes, list]) -> FieldHeaders:
        """Headers holding ``grouped``, taken as is: values by canonical name (:func:`field_key`),
        none with a CR or LF (a parser's, grouped as :meth:`from_pairs` groups them).

        ``Headers.__init__`` is not run: all it does is set the one slot to an empty dict.
        """
        headers = cls.__new__(cls)
        headers._rawHeaders = grouped
        return headers


def field_key(name: bytes) -> bytes:
    """The key :class:`FieldHeaders` keeps ``name`` under (``get_field``, ``set_field``)."""
    return _KEYS.get(name) or _key(name)


def _grouped(pairs: Iterable[Tuple[bytes, bytes]]) -> Dict[bytes, list]:
    """``pairs`` (name, value) as Headers keeps them: by lower-case name, values in order.

    A value's line breaks become spaces (as ``Headers`` sanitizes them).
    """
    grouped: Dict[bytes, list] = {}
    for name, value in pairs:
        key = _KEYS.get(name) or _key(name)
        if LF in value or CR in value:
            value = b" ".join(value.splitlines())
        values = grouped.get(key)
        if values is None:
            grouped[key] = [value]
        else:
            values.append(value)
    return grouped


#: ``dict.get`` on the canonical names worked out so far: a caller walking many names
#: looks each up without a call of :func:`field_key` (None: not yet, call it).
known_key = _KEYS.get
