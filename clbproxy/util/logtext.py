"""Client-controlled text made safe for logs: control characters escaped.

A Host, a User-Agent or an Origin may carry ESC, BEL or CSI (``\\x9b``): written
raw into twistd's log they drive the terminal of whoever reads it (colours,
a cleared screen, a forged line).  Every log event and access record field that
holds text a client sent goes through :func:`printable` on its way in, so every
observer (twistd's text log, JSON logs, the access log) gets the escaped text.
"""

from __future__ import annotations

import re
from typing import Optional

#: C0 controls (TAB, CR and LF included), DEL and the C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: Optional[str]) -> Optional[str]:
    """``text`` with each control character written as ``\\xNN``; None stays None."""
    if text is None or not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text)
