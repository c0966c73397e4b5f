"""New request IDs come from a buffer of ``os.urandom`` bytes: fresh bits, never shared."""

from __future__ import annotations

import os
import re

from twisted.trial import unittest

from clbproxy.http.request_id import IDS_PER_READ, new_request_id

HEX_ID = re.compile(r"[0-9a-f]{32}\Z")


class RandomBufferTests(unittest.TestCase):
    def test_ids_across_many_buffer_reads_are_well_formed_and_unique(self):
        ids = [new_request_id() for _ in range(IDS_PER_READ * 5 + 7)]
        self.assertTrue(all(HEX_ID.match(i) for i in ids))
        self.assertEqual(len(set(ids)), len(ids))

    def test_a_forked_child_does_not_repeat_its_parents_next_ids(self):
        if not hasattr(os, "fork"):
            raise unittest.SkipTest("no fork here")
        new_request_id()  # the buffer is filled, as in a supervisor before it forks
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            try:
                os.write(write, "".join(new_request_id() for _ in range(8)).encode("ascii"))
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            text = pipe.read().decode("ascii")
        os.waitpid(child, 0)
        childs = {text[i : i + 32] for i in range(0, len(text), 32)}
        parents = {new_request_id() for _ in range(8)}
        self.assertEqual(len(childs), 8)
        self.assertEqual(childs & parents, set())
