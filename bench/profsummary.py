"""Summarise a py-spy raw profile (``--format raw``): self and inclusive time per function.

.venv/bin/python bench/profsummary.py bench/profile-LABEL-msg64.txt [TOP] > summary.txt
"""

from __future__ import annotations

import collections
import sys

_PREFIXES = ("/work/", "site-packages/")


def _short(frame: str) -> str:
    for prefix in _PREFIXES:
        if prefix in frame:
            head, _, rest = frame.partition(" (")
            path = rest.split(prefix, 1)[-1]
            if prefix == "/work/":
                path = path.split("/", 1)[-1]
            return f"{head} ({path}"
    return frame


def summarise(path: str, top: int = 30) -> str:
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = [_short(f) for f in stack.split(";")]
            own[frames[-1]] += n
            for function in {
                f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] + ")"
                for f in frames
                if " (" in f
            }:
                inclusive[function] += n
    out = [f"py-spy samples: {total} ({path})", "", "self time (function, line):"]
    out += [f"{n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    out += ["", "inclusive time (function):"]
    out += [f"{n / total:6.1%}  {name}" for name, n in inclusive.most_common(top * 2)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30))
