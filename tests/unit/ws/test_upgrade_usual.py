"""The usual spellings of ``Upgrade`` and ``Connection`` are answered without the list walk.

Each must be read exactly as the walk reads it: one valid element naming the token.
"""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.ws import upgrade
from clbproxy.ws.upgrade import _list_naming


class UsualSpellingTests(unittest.TestCase):
    def test_each_usual_upgrade_is_what_the_walk_finds(self) -> None:
        for value in upgrade._USUAL_UPGRADE:
            self.assertIs(_list_naming([value], upgrade._PROTOCOL, "websocket"), True)
            self.assertIs(
                _list_naming([value], upgrade._PROTOCOL, "websocket", upgrade._USUAL_UPGRADE),
                True,
            )

    def test_each_usual_connection_is_what_the_walk_finds(self) -> None:
        for value in upgrade._USUAL_CONNECTION:
            self.assertIs(_list_naming([value], upgrade._TOKEN, "upgrade"), True)
            self.assertIs(
                _list_naming([value], upgrade._TOKEN, "upgrade", upgrade._USUAL_CONNECTION), True
            )

    def test_anything_else_is_still_walked(self) -> None:
        usual = upgrade._USUAL_UPGRADE
        self.assertIsNone(_list_naming(["websocket, a b"], upgrade._PROTOCOL, "websocket", usual))
        self.assertIs(_list_naming(["h2c"], upgrade._PROTOCOL, "websocket", usual), False)
        self.assertIs(
            _list_naming(["websocket", "websocket"], upgrade._PROTOCOL, "websocket", usual), True
        )
        self.assertIsNone(_list_naming(["websocket", "a b"], upgrade._PROTOCOL, "websocket", usual))
