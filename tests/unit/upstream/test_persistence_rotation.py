"""A fleet rotates its cookie secret: old cookies still lead home, new ones use the new key."""

from __future__ import annotations

from twisted.trial import unittest

from clbproxy.config import BackendConfig, PersistenceConfig
from clbproxy.upstream.balancer import RequestInfo
from clbproxy.upstream.persistence import CookiePersistence

BACKENDS = tuple(BackendConfig(f"10.0.0.{i}", 8080) for i in range(1, 4))
OLD = "old secret of the fleet, 32 chars"
NEW = "new secret of the fleet, 32 chars"


def returning(set_cookie: str) -> RequestInfo:
    return RequestInfo.build("192.0.2.9", [("Cookie", set_cookie.split(";", 1)[0])], {})


class RotationTests(unittest.TestCase):
    def test_a_cookie_signed_with_the_previous_secret_is_honoured(self):
        before = CookiePersistence(PersistenceConfig(type="cookie", secret=OLD), BACKENDS)
        [(_, cookie)] = before.remember(RequestInfo(), BACKENDS[1])
        after = CookiePersistence(
            PersistenceConfig(type="cookie", secret=NEW, previous_secret=OLD), BACKENDS
        )
        self.assertEqual(after.lookup(returning(cookie)), BACKENDS[1])

    def test_new_cookies_are_signed_with_the_new_secret(self):
        rotated = CookiePersistence(
            PersistenceConfig(type="cookie", secret=NEW, previous_secret=OLD), BACKENDS
        )
        only_new = CookiePersistence(PersistenceConfig(type="cookie", secret=NEW), BACKENDS)
        [(_, cookie)] = rotated.remember(RequestInfo(), BACKENDS[2])
        self.assertEqual(only_new.lookup(returning(cookie)), BACKENDS[2])

    def test_without_the_previous_secret_old_cookies_are_balanced_normally(self):
        before = CookiePersistence(PersistenceConfig(type="cookie", secret=OLD), BACKENDS)
        [(_, cookie)] = before.remember(RequestInfo(), BACKENDS[1])
        after = CookiePersistence(PersistenceConfig(type="cookie", secret=NEW), BACKENDS)
        self.assertIsNone(after.lookup(returning(cookie)))

    def test_the_cookie_of_a_backend_does_not_change_when_its_group_changes(self):
        config = PersistenceConfig(type="cookie", secret=NEW)
        small = CookiePersistence(config, BACKENDS[:2])
        large = CookiePersistence(config, BACKENDS + (BackendConfig("10.0.0.9", 8080),))
        self.assertEqual(
            small.remember(RequestInfo(), BACKENDS[0]), large.remember(RequestInfo(), BACKENDS[0])
        )
