"""The fuzzing harness (tests/fuzz/fuzz_listener.py) on its seed corpus, without atheris."""

from __future__ import annotations

from twisted.trial import unittest

from tests.fuzz.fuzz_listener import Harness, status_of
from tests.hostile.http_cases import CASES
from tests.support.handshakes import upgrade_request


class HarnessTests(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.harness = Harness()
        self.addCleanup(self.harness.close)

    def test_hostile_http_catalogue_gets_its_statuses_at_every_cut(self):
        """The in-memory listener answers the catalogue as the real one does, however split."""
        found = {}
        for case in CASES:
            statuses = {
                status_of(self.harness.check(case.request, split))
                for split in range(0, len(case.request) + 1, 7)
            }
            found[case.name] = statuses
        self.assertEqual(found, {case.name: {case.status} for case in CASES})

    def test_requests_that_pass_are_forwarded_or_answered_by_the_proxy(self):
        cases = {
            b"GET /fixed HTTP/1.1\r\nHost: a\r\n\r\n": 200,
            b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n": 502,
            upgrade_request(host="a"): 502,
            upgrade_request(host="origin.test", extra=b"Origin: https://b\r\n"): 403,
            upgrade_request(version="8"): 426,
            b"": 0,
            b"\x16\x03\x01\x00\x05hello": 408,
            # Found by the fuzzer: a handshake with a broken chunked body logged a traceback.
            upgrade_request(host="a", extra=b"Transfer-Encoding: chunked\r\n")
            + b"3\r\nabcX\r\n0\r\n\r\n": 400,
        }
        found = {data: status_of(self.harness.check(data)) for data in cases}
        self.assertEqual(found, cases)
