"""Tests for :class:`clbproxy.config.upstream.BackendConfig` as a key (its hash is cached)."""

from __future__ import annotations

import pickle

import attrs
from twisted.trial import unittest

from clbproxy.config.upstream import BackendConfig


class BackendKeyTests(unittest.TestCase):
    def test_an_equal_backend_finds_the_same_entry(self):
        table = {BackendConfig("10.0.0.1", 80): "a"}
        self.assertEqual(table[BackendConfig("10.0.0.1", 80, weight=10)], "a")

    def test_a_changed_backend_is_another_key(self):
        backend = BackendConfig("10.0.0.1", 80)
        self.assertNotIn(attrs.evolve(backend, weight=0), {backend: "a"})

    def test_a_pickled_backend_is_the_same_key(self):
        backend = BackendConfig("10.0.0.1", 80, max_conns=3)
        self.assertEqual({backend: "a"}[pickle.loads(pickle.dumps(backend))], "a")
