"""A rebuilt etcd (its revision went backwards) that holds no document yet."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.fleet.messages import Header
from tests.unit.fleet.test_watch import started


class EmptyRebuiltEtcdTests(unittest.TestCase):
    def setUp(self):
        self.clock, self.gateway, self.applier, self.status, self.watch = started()
        self.gateway.answer(40, "v1", mod_revision=38)
        self.gateway.current.send(header=Header(revision=40), created=True)

    def test_the_document_in_use_stays_and_the_next_push_is_applied_at_its_own_revision(self):
        self.gateway.current.send(header=Header(revision=1), created=True)
        self.gateway.answer(1)  # nothing in the new etcd
        self.assertEqual(self.applier.documents, ["v1"])
        self.gateway.current.put(3, "v2")
        self.assertEqual(self.applier.documents, ["v1", "v2"])
        self.assertEqual(self.status.applied_revision, 3)

    def test_a_reset_is_counted_once(self):
        self.gateway.current.send(header=Header(revision=1), created=True)
        self.gateway.answer(1)
        self.assertEqual(self.status.resyncs, {"revision reset": 1})
