"""Reading TOML: syntax errors with positions, unreadable and undecodable files."""

from __future__ import annotations

import os

from twisted.trial import unittest

from clbproxy.config import (
    ConfigError,
    load_config,
)
from tests.unit.config.loading import LoaderMixin, document


class FileProblemTests(LoaderMixin, unittest.TestCase):
    def test_toml_syntax_error_names_line_and_column(self) -> None:
        problems = self.problems('[[listener]]\nname = "web"\nbind = tcp:8080\n')
        self.assertEqual(problems, ["tap.conf: line 3, column 8: Invalid value"])

    def test_toml_error_at_end_of_file_names_the_last_position(self) -> None:
        problems = self.problems("[[listener]]\nname = [")
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("tap.conf: line 2, column 9: "), problems[0])

    def test_redeclared_table_is_named_readably(self) -> None:
        problems = self.problems("[target_group.demo]\n[target_group.demo]\n")
        self.assertEqual(
            problems, ["tap.conf: line 2, column 19: Cannot declare target_group.demo twice"]
        )

    def test_missing_file(self) -> None:
        path = self.mktemp()
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.problems, [f"{path}: cannot read: No such file or directory"])

    def test_directory_instead_of_file(self) -> None:
        path = self.mktemp()
        os.mkdir(path)
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.problems, [f"{path}: cannot read: Is a directory"])

    def test_not_utf8(self) -> None:
        problems = self.problems(b'[[listener]]\nname = "w\xe9b"\n')
        self.assertEqual(problems, ["tap.conf: line 2, column 10: not valid UTF-8 (byte 0xe9)"])

    def test_utf8_byte_order_mark_is_accepted(self) -> None:
        config = load_config(self.write(b"\xef\xbb\xbf" + document().encode()))
        self.assertEqual(config.listeners[0].name, "web")

    def test_too_deep_nesting(self) -> None:
        problems = self.problems("a = " + "[" * 5000 + "]" * 5000 + "\n")
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("tap.conf: "))

    def test_integer_too_long_for_python(self) -> None:
        """One line naming the file, whichever interpreter reads it.

        CPython refuses a 5,000-digit integer while parsing (its int-to-string
        limit), so the TOML is invalid there; PyPy has no such limit, parses it and
        then finds the value out of range for its key.
        """
        problems = self.problems(document(listener={"max_connections": "9" * 5000}))
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("tap.conf: "), problems[0])
        self.assertNotIn("\n", problems[0])

    def test_absurdly_long_integers_are_named_by_length(self) -> None:
        huge = "9" * 200
        problems = self.problems(
            document(
                listener={
                    "max_connections": huge,
                    "max_body_size": huge,
                    "client_timeout": huge,
                    "websocket_handshake_rate": huge,
                },
                group={"health_check": f"{{ interval = {huge} }}"},
            )
        )
        self.assertEqual(
            sorted(problems),
            [
                "tap.conf: listener[0].client_timeout: an integer of 200 digits is "
                "too large for a duration (at most 365 days)",
                "tap.conf: listener[0].max_body_size: an integer of 200 digits is "
                "too large for a size (at most 9223372036854775807)",
                "tap.conf: listener[0].max_connections: an integer of 200 digits out "
                "of range 0-10000000",
                "tap.conf: listener[0].websocket_handshake_rate: an integer of 200 "
                "digits out of range 0-10000000 (0: no limit)",
                "tap.conf: target_group.demo.health_check.interval: an integer of 200 "
                "digits is too large for a duration (at most 365 days)",
            ],
        )

    def test_size_beyond_a_file_offset_is_refused(self) -> None:
        problems = self.problems(document(listener={"max_body_size": '"9999999999GiB"'}))
        self.assertEqual(
            problems,
            [
                "tap.conf: listener[0].max_body_size: '9999999999GiB' is too large for a "
                "size (at most 9223372036854775807 bytes)"
            ],
        )

    def test_error_message_is_every_problem_one_per_line(self) -> None:
        error = ConfigError(["a: x", "a: y"])
        self.assertEqual(str(error), "a: x\na: y")
