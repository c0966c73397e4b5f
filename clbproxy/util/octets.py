"""Single bytes as ints, for membership tests on ``bytes`` in the hot paths.

``CR in value`` is a plain byte search.  ``b"\\r" in value`` first tries the
needle as an int, and raises and clears a ``TypeError`` inside before searching
for it as a subsequence: about 0.15 µs per test on CPython 3.11 against 0.02 µs,
and a request's head and its response's head take a dozen such tests.
"""

from __future__ import annotations

#: NUL, line feed and carriage return.
NUL = 0x00
LF = 0x0A
CR = 0x0D
