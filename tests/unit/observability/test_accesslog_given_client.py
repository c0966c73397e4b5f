"""request_record with ``client``: the caller's answer is the record's, the peer not asked."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from clbproxy.http.field_headers import FieldHeaders
from clbproxy.http.forwarded import TrustedProxies
from clbproxy.observability.accesslog import request_record


class _Request:
    method = b"GET"
    uri = b"/"
    clientproto = b"HTTP/1.1"
    body = None

    def __init__(self) -> None:
        self.requestHeaders = FieldHeaders.from_pairs([(b"X-Forwarded-For", b"203.0.113.9")])

    def getClientAddress(self):
        raise AssertionError("the caller named the client")

    def on_finish(self, callback) -> None:
        pass


class GivenClientTests(unittest.TestCase):
    def test_a_client_the_caller_worked_out_is_the_records_client(self) -> None:
        trusted = TrustedProxies.from_cidrs(["0.0.0.0/0"])
        record = request_record(_Request(), "web", None, Clock(), trusted, client="198.51.100.2")
        self.assertEqual(record.client, "198.51.100.2")
