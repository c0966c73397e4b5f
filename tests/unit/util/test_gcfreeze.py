"""Start-up's objects frozen out of the collector's walks when the reactor runs; a reload thaws."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from twisted.trial import unittest

from clbproxy.util import gcfreeze


class FakeReactor:
    """Records what is to run when the reactor starts."""

    def __init__(self) -> None:
        self.when_running: list = []

    def callWhenRunning(self, f, *args, **kwargs) -> None:
        self.when_running.append(f)


class FakeReloader:
    def __init__(self) -> None:
        self.hooks: list = []


class FreezeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.calls: list[str] = []
        for name in ("collect", "freeze", "unfreeze"):
            self.patch(gc, name, lambda name=name: self.calls.append(name))

    def test_nothing_is_frozen_before_the_reactor_runs(self) -> None:
        reactor = FakeReactor()
        gcfreeze.freeze_after_start(reactor)
        self.assertEqual(self.calls, [])
        for f in reactor.when_running:
            f()
        self.assertEqual(self.calls, ["collect", "freeze"])

    def test_start_up_garbage_is_collected_before_the_freeze(self) -> None:
        gcfreeze.freeze()
        self.assertEqual(self.calls, ["collect", "freeze"])

    def test_a_reload_thaws_what_start_up_froze(self) -> None:
        reloader = FakeReloader()
        gcfreeze.freeze_after_start(FakeReactor(), reloader)
        for hook in reloader.hooks:
            hook(object())  # a reload hook gets the configuration
        self.assertEqual(self.calls, ["unfreeze"])

    def test_a_process_without_a_reloader_only_freezes(self) -> None:
        reactor = FakeReactor()
        gcfreeze.freeze_after_start(reactor, None)
        self.assertEqual(reactor.when_running, [gcfreeze.freeze])


class RealCollectorTests(unittest.TestCase):
    def test_the_collector_skips_frozen_objects_until_thawed(self) -> None:
        # In a child process: freezing this one would keep trial's garbage for good.
        script = textwrap.dedent(
            """
            import gc
            from clbproxy.util import gcfreeze
            gcfreeze.freeze()
            frozen = gc.get_freeze_count()
            gcfreeze.thaw()
            print(frozen > 1000, gc.get_freeze_count())
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
        self.assertEqual(out.split(), ["True", "0"])
