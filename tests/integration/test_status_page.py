"""The admin status page rendered by headless Chromium: it shows listeners and backends."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger
from twisted.trial import unittest

from tests.support.observed import Observed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=3000",
)


def chromium(*args: str) -> defer.Deferred:
    """Run headless Chromium with a throw-away profile; fires with (out, err, code)."""
    profile = tempfile.mkdtemp(prefix="clbproxy-chromium-")
    d = getProcessOutputAndValue(
        CHROMIUM,
        (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args),
        env={"HOME": profile, "PATH": os.environ.get("PATH", "")},
        reactor=reactor,
    )
    d.addTimeout(60, reactor)
    d.addBoth(lambda result: (shutil.rmtree(profile, ignore_errors=True), result)[1])
    return d


class StatusPageTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def setUp(self):
        if CHROMIUM is None:
            raise unittest.SkipTest("chromium is not installed (apt-get install chromium)")
        self.net = Observed(self)
        _, backend_port = self.net.backend()
        self.backend_port = yield backend_port
        yield self.net.start([self.backend_port], log_path=self.mktemp())

    @defer.inlineCallbacks
    def test_page_shows_listeners_rules_and_backends(self):
        self.net.groups["pool"].set_weight(f"127.0.0.1:{self.backend_port}", 25)
        out, err, code = yield chromium("--dump-dom", self.net.admin_url("/"))
        dom = out.decode("utf-8", "replace")
        self.assertEqual(code, 0, err.decode("utf-8", "replace")[-2000:])
        self.assertIn('class="card listener" data-name="web"', dom)
        self.assertIn('class="card group" data-name="pool"', dom)
        self.assertIn(f'data-key="pool/127.0.0.1:{self.backend_port}"', dom)
        self.assertIn("tcp:0:interface=127.0.0.1", dom)
        self.assertIn('value="25"', dom)
        self.assertIn("(conf 10)", dom)
        self.assertIn('<span class="badge b-unknown">unknown</span>', dom)
        self.assertIn('<span class="badge b-ready">ready</span>', dom)
        self.assertIn("updated ", dom)
        self.assertIn("<button>Drain</button><button>Disable</button>", dom)
        self.assertIn('<button disabled="">Enable</button>', dom)

    @defer.inlineCallbacks
    def test_a_recent_error_shows_its_request_id(self):
        Logger().warn(
            "backend {backend} of {group}: {reason}",
            backend=f"127.0.0.1:{self.backend_port}",
            group="pool",
            reason="connection refused",
            outcome="502",
            request_id="4bf92f3577b34da6a3ce929d0e0e4736",
        )
        out, err, code = yield chromium("--dump-dom", self.net.admin_url("/"))
        dom = out.decode("utf-8", "replace")
        self.assertEqual(code, 0, err.decode("utf-8", "replace")[-2000:])
        self.assertIn("connection refused (502)", dom)
        self.assertIn("(request 4bf92f3577b34da6a3ce929d0e0e4736)", dom)

    @defer.inlineCallbacks
    def test_page_can_be_screenshotted(self):
        path = os.path.abspath(self.mktemp() + ".png")
        out, err, code = yield chromium(
            f"--screenshot={path}", "--window-size=1280,800", self.net.admin_url("/")
        )
        self.assertEqual(code, 0, err.decode("utf-8", "replace")[-2000:])
        with open(path, "rb") as image:
            self.assertEqual(image.read(8), b"\x89PNG\r\n\x1a\n")
        keep = os.environ.get("CLBPROXY_SCREENSHOT")
        if keep:
            shutil.copyfile(path, keep)
