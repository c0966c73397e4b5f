"""Invalid tap.conf files, each run through ``twistd -n clbproxy --config`` as a user would.

Every case must exit with status 1, print exactly the listed problems (one line
each, prefixed with the file's path), write nothing to stdout and never show a
traceback.  The twistd processes of the whole table start together (on the first
test) so the catalogue costs about one start-up, not forty.
"""

# ruff: noqa: E501  (a table of whole files and whole error lines reads best unwrapped)
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from twisted.trial import unittest

from tests.hostile.catalog import REPOSITORY

TWISTD = "from twisted.scripts.twistd import run; run()"

_MINIMAL = (
    b'[[listener]]\nname = "w"\nbind = "tcp:0:interface=127.0.0.1"\n'
    b'[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n'
)

#: (name, file content, the exact problem lines after "PATH: ")
CASES = [
    (
        "empty file",
        b"",
        ["missing required key 'listener' (at least one [[listener]])"],
    ),
    (
        "not toml",
        b"this is not toml\n",
        ["line 1, column 6: Expected '=' after a key in a key/value pair"],
    ),
    (
        "binary garbage",
        b"\x00\x01\x02\xc3\xbf",
        ["line 1, column 1: Invalid statement"],
    ),
    (
        "listener not a table",
        b"listener = 3\n",
        ["listener: expected an array of tables ([[listener]]), got an integer"],
    ),
    (
        "listener missing bind",
        b'[[listener]]\nname = "w"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0]: missing required key 'bind'"],
    ),
    (
        "listener missing rule",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0]: missing required key 'rule' (at least one [[listener.rule]])"],
    ),
    (
        "unknown top level key",
        b"listners = []\n",
        [
            "unknown key 'listners' (did you mean 'listener'?)",
            "missing required key 'listener' (at least one [[listener]])",
        ],
    ),
    (
        "unknown listener key",
        b'[[listener]]\nname = "w"\nbnd = "tcp:0"\n',
        [
            "listener[0]: unknown key 'bnd' (did you mean 'bind'?)",
            "listener[0]: missing required key 'bind'",
            "listener[0]: missing required key 'rule' (at least one [[listener.rule]])",
        ],
    ),
    (
        "bind ssl refused",
        b'[[listener]]\nname = "w"\nbind = "ssl:443"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            "listener[0].bind: 'ssl:443' is not allowed: TLS comes from the listener's own settings (protocol = \"https\"); use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint"
        ],
    ),
    (
        "bind garbage",
        b'[[listener]]\nname = "w"\nbind = "carrier-pigeon:1"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            "listener[0].bind: 'carrier-pigeon:1': unknown endpoint type 'carrier-pigeon'; use a tcp:, tcp6:, unix:, systemd: or haproxy: endpoint"
        ],
    ),
    (
        "bind port out of range",
        b'[[listener]]\nname = "w"\nbind = "tcp:70000"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].bind: 'tcp:70000': port 70000 out of range 0-65535"],
    ),
    (
        "bind not a string",
        b'[[listener]]\nname = "w"\nbind = 8080\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].bind: expected a string, got an integer"],
    ),
    (
        "protocol unknown",
        b'[[listener]]\nname = "w"\nprotocol = "gopher"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].protocol: unknown protocol 'gopher'; must be one of: 'http', 'https'"],
    ),
    (
        "duplicate listener names",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            "listener[1].name: duplicate name 'w' (also listener[0])",
            "listener[1].bind: duplicate bind string 'tcp:0' (also listener[0])",
        ],
    ),
    (
        "rule unknown group",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "nope"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].rule[0].target_group: unknown target group 'nope' (defined: g)"],
    ),
    (
        "rule host garbage",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\nhost = "a b"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].rule[0].host: 'a b' is not a valid host name"],
    ),
    (
        "rule path relative",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\npath = "api"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            "listener[0].rule[0].path: 'api' must start with '/' "
            "(or a marker: '= ', '^~ ', '~ ', '~* ')"
        ],
    ),
    (
        "allowed origins not a list",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\nallowed_origins = "https://a"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].allowed_origins: expected an array of strings, got a string"],
    ),
    (
        "allowed origin with path",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\nallowed_origins = ["https://a/x"]\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            "listener[0].allowed_origins[0]: 'https://a/x' is not an origin: it is only scheme://host[:port], without path or user"
        ],
    ),
    (
        "size garbage",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\nmax_message_size = "lots"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            'listener[0].max_message_size: \'lots\' is not a size; use bytes as an integer, or a string like "64KiB", "16MiB", "512KB" or "10MB"'
        ],
    ),
    (
        "size negative",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\nsession_buffer = -1\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].session_buffer: a size must not be negative, got -1"],
    ),
    (
        "duration garbage",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\nclient_timeout = "soon"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            'listener[0].client_timeout: \'soon\' is not a duration; use seconds as a number, or a string like "5s", "250ms", "2m" or "1h"'
        ],
    ),
    (
        "duration nan",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\nclient_timeout = nan\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].client_timeout: a duration must be a number, got nan"],
    ),
    (
        "duration infinite",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\nclient_timeout = inf\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        ["listener[0].client_timeout: inf is too large for a duration (at most 365 days)"],
    ),
    (
        "trusted proxy garbage",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\ntrusted_proxies = ["10.0.0.0/33"]\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:1"]\n',
        [
            "listener[0].trusted_proxies[0]: '10.0.0.0/33' is not a network in CIDR notation, like '10.0.0.0/8' or 'fd00::/8'"
        ],
    ),
    (
        "backends missing",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\npolicy = "round_robin"\n',
        ["target_group.g: missing required key 'backends'"],
    ),
    (
        "backend no port",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1"]\n',
        ["target_group.g.backends[0]: '127.0.0.1' has no port; expected host:port"],
    ),
    (
        "backend port zero",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["127.0.0.1:0"]\n',
        ["target_group.g.backends[0]: port 0 out of range 1-65535"],
    ),
    (
        "backend weight over 100",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = [{ address = "127.0.0.1:1", weight = 101 }]\n',
        ["target_group.g.backends[0].weight: 101 out of range 0-100"],
    ),
    (
        "backend not a string",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = [42]\n',
        [
            'target_group.g.backends[0]: expected a "host:port" string or a table { address = "host:port", weight = 10 }, got an integer'
        ],
    ),
    (
        "backend ipv6 without brackets",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nbackends = ["::1:80"]\n',
        [
            "target_group.g.backends[0]: '::1:80': put an IPv6 address in brackets, like '[::1]:8080'"
        ],
    ),
    (
        "policy unknown",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\npolicy = "random"\nbackends = ["127.0.0.1:1"]\n',
        [
            "target_group.g.policy: unknown policy 'random'; must be one of: 'round_robin', "
            "'least_conn', 'consistent_hash', 'random_two'"
        ],
    ),
    (
        "retries negative",
        b'[[listener]]\nname = "w"\nbind = "tcp:0"\n[[listener.rule]]\ntarget_group = "g"\n[target_group.g]\nretries = -1\nbackends = ["127.0.0.1:1"]\n',
        ["target_group.g.retries: -1 out of range 0-10"],
    ),
    (
        "target group not a table",
        b"target_group = 5\n",
        [
            "target_group: expected a table of target groups ([target_group.NAME]), got an integer",
            "missing required key 'listener' (at least one [[listener]])",
        ],
    ),
    (
        "demo backend without bind",
        b'[[demo_backend]]\nname = "d"\n',
        [
            "missing required key 'listener' (at least one [[listener]])",
            "demo_backend[0]: missing required key 'bind'",
        ],
    ),
    (
        "very long key",
        "x" * 5000 + " = 1\n",
        [
            "unknown key '" + "x" * 5000 + "'",
            "missing required key 'listener' (at least one [[listener]])",
        ],
    ),
    (
        "deeply nested arrays",
        "a = " + "[" * 500 + "]" * 500 + "\n",
        ["arrays or tables are nested too deeply"],
    ),
    (
        "unicode key",
        b'[[listener]]\nn\xc3\xa4me = "w"\n',
        ["line 2, column 2: Expected '=' after a key in a key/value pair"],
    ),
    (
        "duplicate toml key",
        b"a = 1\na = 2\n",
        ["line 2, column 6: Cannot overwrite a value"],
    ),
    (
        "invalid utf8 bytes",
        b'name = "\xff\xfe"\n',
        ["line 1, column 9: not valid UTF-8 (byte 0xff)"],
    ),
    (
        "bind option repeated",
        _MINIMAL.replace(b"tcp:0:interface", b"tcp:0:port=1:interface"),
        ["listener[0].bind: 'tcp:0:port=1:interface=127.0.0.1': option 'port' given twice"],
    ),
]


def _run_twistd(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "clbproxy", "--config", path],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(path),
        env=dict(os.environ, PYTHONPATH=REPOSITORY),
    )


class _Batch:
    """Every case's twistd run, started together on first use."""

    def __init__(self, cases) -> None:
        self.cases = cases
        self.results: dict[str, tuple[str, subprocess.CompletedProcess]] = {}

    def result(self, name: str) -> tuple[str, subprocess.CompletedProcess]:
        if not self.results:
            directory = tempfile.mkdtemp(prefix="clbproxy-config-catalog-")
            paths = {}
            for index, (case_name, content, _) in enumerate(self.cases):
                paths[case_name] = os.path.join(directory, f"case{index}.conf")
                with open(paths[case_name], "wb") as f:
                    f.write(content if isinstance(content, bytes) else content.encode())
            with ThreadPoolExecutor(max_workers=8) as pool:
                runs = dict(zip(paths, pool.map(_run_twistd, paths.values())))
            self.results = {case_name: (paths[case_name], runs[case_name]) for case_name in paths}
        return self.results[name]


_BATCH = _Batch(CASES)


def _test(name: str, expected: list[str]):
    def test(self):
        path, result = _BATCH.result(name)
        output = result.stdout + result.stderr
        self.assertNotIn("Traceback", output)
        self.assertEqual(result.returncode, 1, output)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.stderr.splitlines(), [f"{path}: {line}" for line in expected])

    test.__doc__ = f"tap.conf: {name}"
    return test


class InvalidConfigFileCatalog(unittest.SynchronousTestCase):
    """One test per invalid file (generated from :data:`CASES`)."""

    def test_missing_file_is_one_line(self):
        result = _run_twistd(os.path.join(tempfile.mkdtemp(), "absent.conf"))
        self.assertEqual(result.returncode, 1)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)

    def test_a_directory_as_config_is_one_line(self):
        result = _run_twistd(tempfile.mkdtemp())
        self.assertEqual(result.returncode, 1)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)


for _name, _content, _expected in CASES:
    _method = "test_" + "_".join("".join(c if c.isalnum() else " " for c in _name).split())
    setattr(InvalidConfigFileCatalog, _method, _test(_name, _expected))
