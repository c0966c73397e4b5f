"""The accept value a backend's checked 101 carries is the one the client is answered with."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.ws.upgrade import check_backend_answer
from tests.unit.ws.test_upgrade import answer, upgrade


class CheckedAcceptTests(unittest.TestCase):
    def test_the_checked_accept_is_kept_for_the_clients_answer(self):
        acceptance = check_backend_answer(upgrade(), answer())
        self.assertEqual(acceptance.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
