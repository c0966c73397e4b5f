"""Sizes and durations as tap.conf writes them."""

from __future__ import annotations

import math
from typing import Any

from twisted.trial import unittest

from clbproxy.config import (
    parse_duration,
    parse_size,
)


class SizeAndDurationTests(unittest.TestCase):
    def test_sizes(self) -> None:
        cases = {
            0: 0,
            4096: 4096,
            "4096": 4096,
            "512B": 512,
            "64KiB": 64 * 1024,
            "64kib": 64 * 1024,
            "64 KiB": 64 * 1024,
            "16MiB": 16 * 1024**2,
            "1GiB": 1024**3,
            "512KB": 512_000,
            "10MB": 10_000_000,
            "2gb": 2_000_000_000,
        }
        self.assertEqual({value: parse_size(value) for value in cases}, cases)

    def test_invalid_sizes(self) -> None:
        cases: dict[Any, str] = {
            True: "expected a size",
            1.5: "expected a size",
            -1: "must not be negative",
            "1.5MiB": "is not a size",
            "10 parsecs": "is not a size",
            "16M": "is not a size",
            "": "is not a size",
            "9" * 40: "is too large",
        }
        self.assertEqual(
            {
                value: _error_fragment(parse_size, value, fragment)
                for value, fragment in cases.items()
            },
            {value: fragment for value, fragment in cases.items()},
        )

    def test_durations(self) -> None:
        cases = {
            5: 5.0,
            0.25: 0.25,
            "5s": 5.0,
            "5": 5.0,
            "1.5s": 1.5,
            "250ms": 0.25,
            "2m": 120.0,
            "1h": 3600.0,
            "2 M": 120.0,
        }
        self.assertEqual({value: parse_duration(value) for value in cases}, cases)

    def test_invalid_durations(self) -> None:
        cases: dict[Any, str] = {
            True: "expected a duration",
            0: "must be greater than 0",
            -1: "must be greater than 0",
            "0s": "must be greater than 0",
            "5d": "is not a duration",
            "s": "is not a duration",
            math.inf: "is too large",
            math.nan: "must be a number",
            10**400: "is too large",
        }
        self.assertEqual(
            {
                repr(value): _error_fragment(parse_duration, value, fragment)
                for value, fragment in cases.items()
            },
            {repr(value): fragment for value, fragment in cases.items()},
        )

    def test_toml_booleans_are_not_numbers(self) -> None:
        self.assertRaises(ValueError, parse_size, True)
        self.assertRaises(ValueError, parse_duration, True)


def _error_fragment(function: Any, value: object, fragment: str) -> str:
    """``fragment`` if ``function(value)`` raises a ValueError containing it, else what happened."""
    try:
        result = function(value)
    except ValueError as e:
        return fragment if fragment in str(e) else str(e)
    return f"returned {result!r}"
