"""Run a test case's listeners on a chosen HTTP parser back end (httptools or h11).

A listener reads ``CLBPROXY_HTTP_PARSER`` once, when it is built
(:class:`clbproxy.listener.connection.ListenerSite`); :class:`OnH11` sets it for
the duration of each test, so a subclass of an existing test case runs all of
its tests again with listeners on ``h11``.
"""

from __future__ import annotations

import os

from clbproxy.http.parsers import ENVIRONMENT


def choose_parser(test, backend: str) -> None:
    """Listeners built during ``test`` parse with ``backend``."""
    previous = os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = backend

    def restore() -> None:
        if previous is None:
            os.environ.pop(ENVIRONMENT, None)
        else:
            os.environ[ENVIRONMENT] = previous

    test.addCleanup(restore)


class OnH11:
    """Mixin, first among the bases: the test case's listeners parse with ``h11``."""

    def setUp(self):
        choose_parser(self, "h11")
        return super().setUp()
