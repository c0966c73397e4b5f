"""Run a test case's listeners on a chosen HTTP parser back end (httptools or h11).

A listener reads ``CLBPROXY_HTTP_PARSER`` once, when it is built
(:class:`clbproxy.listener.connection.ListenerSite`); :class:`OnH11` sets it for
the duration of each test, so a subclass of an existing test case runs all of
its tests again with listeners on ``h11``.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SkipTest

from clbproxy.http.parsers import ENVIRONMENT, available


def choose_parser(test, backend: str) -> None:
    """Listeners built during ``test`` parse with ``backend`` (skipped if it is not installed)."""
    if backend not in available():
        raise SkipTest(f"the {backend} HTTP parser is not installed here")
    previous = os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = backend

    def restore() -> None:
        if previous is None:
            os.environ.pop(ENVIRONMENT, None)
        else:
            os.environ[ENVIRONMENT] = previous

    test.addCleanup(restore)


class NeedsH11:
    """Mixin, first among the bases: skip the test case where ``h11`` is not installed."""

    def setUp(self):
        if "h11" not in available():
            raise SkipTest("the h11 HTTP parser is not installed here")
        return super().setUp()


class OnH11:
    """Mixin, first among the bases: the test case's listeners parse with ``h11``."""

    def setUp(self):
        choose_parser(self, "h11")
        return super().setUp()
