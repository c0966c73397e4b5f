"""constraints/oldest.txt, which scripts/test installs in .venv-oldest, pins setup.cfg's minimums.

If they drift apart, the "oldest allowed versions" step tests versions nobody
is promised, or misses the ones that are.
"""

from __future__ import annotations

import configparser
import os
import re

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Pinned above setup.cfg's minimum on purpose: Autobahn 26.10.2 needs cryptography 50,
#: which only pyOpenSSL 26.4 and later accept (constraints/oldest.txt says so).
RAISED_BY_AUTOBAHN = {"cryptography", "pyopenssl"}


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> tuple[int, ...]:
    """``24.11`` and ``24.11.0`` alike, for comparing."""
    parts = [int(part) for part in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def setup_minimums() -> dict[str, tuple[int, ...]]:
    """``name -> minimum`` of install_requires for Python 3.11 and later."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    minimums = {}
    for line in parser["options"]["install_requires"].strip().splitlines():
        requirement, _, marker = line.partition(";")
        if marker and 'python_version >= "3.11"' not in marker:
            continue
        match = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*>=\s*([0-9.]+)", requirement)
        if match:
            minimums[_name(match.group(1))] = _version(match.group(3))
    return minimums


def oldest_pins() -> dict[str, tuple[int, ...]]:
    pins = {}
    with open(os.path.join(ROOT, "constraints", "oldest.txt")) as stream:
        for line in stream:
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, version = line.partition("==")
                pins[_name(name)] = _version(version)
    return pins


class OldestConstraintsTests(unittest.TestCase):
    def test_every_minimum_of_setup_cfg_is_pinned_in_oldest_txt(self):
        minimums, pins = setup_minimums(), oldest_pins()
        self.assertEqual(
            {name: pins.get(name) for name in minimums if name not in RAISED_BY_AUTOBAHN},
            {name: version for name, version in minimums.items() if name not in RAISED_BY_AUTOBAHN},
        )

    def test_the_raised_pins_are_at_least_setup_cfgs_minimums(self):
        minimums, pins = setup_minimums(), oldest_pins()
        for name in RAISED_BY_AUTOBAHN:
            self.assertGreaterEqual(pins[name], minimums[name], name)
