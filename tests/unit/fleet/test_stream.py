"""The watch stream parser, fed what etcd 3.4.23's JSON gateway really sent.

The files in ``recorded/`` were captured with curl from local etcd members:
``watch_events.out`` (created, PUT events without ``type``, a DELETE),
``watch_compacted.out`` (a watch from a compacted revision: ``canceled`` with
``compact_revision``, a header without ``revision``), ``watch_quorum_lost.out``
(progress notifications, then the final error without a newline when two of
three members stopped).
"""

from __future__ import annotations

import os

from twisted.trial import unittest

from clbproxy.fleet.messages import FleetKeys
from clbproxy.fleet.stream import MAX_LINE, WatchStream

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorded")
KEYS = FleetKeys("t")


def recorded(name: str) -> bytes:
    with open(os.path.join(HERE, name), "rb") as f:
        return f.read()


def parse(data: bytes, chunk: int = 0) -> list:
    stream = WatchStream()
    responses = []
    if chunk:
        for start in range(0, len(data), chunk):
            responses.extend(stream.feed(data[start : start + chunk]))
    else:
        responses.extend(stream.feed(data))
    responses.extend(stream.end())
    return responses


class RecordedStreamTests(unittest.TestCase):
    def test_the_first_line_says_the_watch_was_created(self):
        first = parse(recorded("watch_events.out"))[0]
        self.assertTrue(first.created)
        self.assertEqual(first.header.revision, 2)
        self.assertFalse(first.progress)

    def test_an_event_without_a_type_is_a_put_with_decoded_key_value_and_revision(self):
        event = parse(recorded("watch_events.out"))[1].events[0]
        self.assertEqual(event.type, "PUT")
        self.assertEqual(event.kv.key, KEYS.config)
        self.assertEqual(event.kv.value, b"a = 1\n")
        self.assertEqual(event.kv.mod_revision, 3)

    def test_a_delete_event_has_its_type_and_no_value(self):
        responses = parse(recorded("watch_events.out"))
        deletes = [e for r in responses for e in r.events if e.type == "DELETE"]
        self.assertEqual(len(deletes), 1)
        self.assertEqual(deletes[0].kv.key, KEYS.config)
        self.assertEqual(deletes[0].kv.value, b"")
        self.assertEqual(deletes[0].kv.mod_revision, 6)

    def test_every_line_is_found_whatever_the_chunks(self):
        data = recorded("watch_events.out")
        self.assertEqual(parse(data, chunk=7), parse(data))
        self.assertEqual(len(parse(data)), 5)

    def test_a_compacted_watch_is_canceled_with_the_compact_revision(self):
        responses = parse(recorded("watch_compacted.out"))
        self.assertTrue(responses[1].canceled)
        self.assertEqual(responses[1].compact_revision, 7)
        # The gateway leaves the header's revision out there.
        self.assertEqual(responses[1].header.revision, 0)

    def test_progress_notifications_carry_only_a_header(self):
        responses = parse(recorded("watch_quorum_lost.out"))
        progress = [r for r in responses if r.progress]
        self.assertEqual(len(progress), 3)
        self.assertEqual({r.header.revision for r in progress}, {2})

    def test_the_final_error_without_a_newline_is_read_when_the_body_ends(self):
        data = recorded("watch_quorum_lost.out")
        self.assertFalse(data.endswith(b"\n"))
        stream = WatchStream()
        before = stream.feed(data)
        self.assertTrue(all(r.error is None for r in before))
        after = stream.end()
        self.assertEqual([r.error for r in after], ["etcdserver: no leader"])


class BrokenStreamTests(unittest.TestCase):
    def test_a_line_that_is_not_json_ends_the_stream_with_an_error(self):
        stream = WatchStream()
        responses = stream.feed(b'{"result":{"created":true}}\nnot json\n{"result":{}}\n')
        self.assertTrue(responses[0].created)
        self.assertIn("unreadable watch line", responses[1].error)
        self.assertEqual(len(responses), 2)
        self.assertEqual(stream.feed(b'{"result":{}}\n'), [])

    def test_a_line_longer_than_the_limit_ends_the_stream_with_an_error(self):
        stream = WatchStream()
        responses = stream.feed(b"x" * (MAX_LINE + 1))
        self.assertIn("over", responses[0].error)

    def test_a_key_that_is_not_base64_is_an_error(self):
        responses = parse(b'{"result":{"events":[{"kv":{"key":"%%%"}}]}}\n')
        self.assertIn("not base64", responses[0].error)
