"""setup.cfg names every package of the tree: an installed (not editable) clbproxy has them all.

A package missing from ``[options] packages`` is left out of the wheel, and the
proxy then fails at import on a fresh machine, while editable installs (the
test suite's) still find it in the tree.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parents[2]


def listed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def tree_packages() -> set[str]:
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "clbproxy").rglob("__init__.py")
    }
    return found | {"twisted.plugins"}


class PackagesTests(unittest.TestCase):
    def test_every_package_of_the_tree_is_listed(self) -> None:
        self.assertEqual(tree_packages() - listed_packages(), set())

    def test_every_listed_package_exists(self) -> None:
        self.assertEqual(listed_packages() - tree_packages(), set())
