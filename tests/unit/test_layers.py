"""The package's shape, checked: imports go one way, bottom to top, and modules stay small.

Each clbproxy module belongs to one layer (:data:`LAYERS`); a module may import
modules of its own layer or of lower layers, never of a higher one, and no
two modules import each other, directly or through others.  Every import
counts, also one inside a function: an import moved into a function to dodge
a cycle is still a cycle (importing Twisted's reactor in a function is not
checked, as it is not a clbproxy module).
"""

from __future__ import annotations

import ast
import os
from typing import Optional

from twisted.trial import unittest

PACKAGE = "clbproxy"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Layer of each module, bottom (0) to top (7): a name covers itself and, if it is
#: a package, everything under it, unless a longer name says otherwise.
#:
#: 0. configuration and small utilities: config (the model and reader; it reads
#:    no certificate), logging helpers, endpoint strings, descriptor limits and
#:    the reactor's dispatch; the packages' ``__init__`` modules (docstrings).
#: 1. protocol code with no notion of a proxy: HTTP messages, trailers,
#:    X-Forwarded headers, the HTTP/1.1 parsers and their rules, redirects; the HTTP/2
#:    server connection and its streams (http2); WebSocket
#:    frames, close codes, handshake and upgrade checks, timers, read pauses and the fast path;
#:    TLS contexts, certificates and the backend TLS client; the HTTP client's
#:    agent and pool and the response body relay; access-log records (written
#:    by the relay and the forwarder, so below them).
#: 2. where traffic goes: routing rules and actions, target groups, balancing
#:    policies, persistence and health; and where the configuration comes from in
#:    fleet mode (etcd's gateway, the watch loop, the cache, presence).
#: 3. what moves the bytes: the HTTP forwarder (and its header rewriting, which
#:    applies the routing rule's changes) and the WebSocket relay.
#: 4. listeners: the service, its channel and its limits.
#: 5. observability: metrics, live state, the admin API and the status page
#:    (they read the layers below through public methods).
#: 6. running the proxy (ops: services, preflight, reload, drain, signals,
#:    systemd notification, workers) and the demo backends.
#: 7. the entry points: ``twistd clbproxy`` (tap) and the ``clbproxy`` command.
LAYERS: dict[str, int] = {
    "clbproxy": 0,
    "clbproxy.util": 0,
    "clbproxy.config": 0,
    "clbproxy.net": 0,
    "clbproxy.net.endpoints": 0,
    "clbproxy.net.descriptors": 0,
    "clbproxy.net.dispatch": 0,
    "clbproxy.http": 1,
    "clbproxy.http.responses": 1,
    "clbproxy.http.trailers": 1,
    "clbproxy.http.field_headers": 1,
    "clbproxy.http.forwarded": 1,
    "clbproxy.http.request_id": 1,
    "clbproxy.http.tracecontext": 1,
    "clbproxy.http.server": 1,
    "clbproxy.http.parse_rules": 1,
    "clbproxy.http.response_head": 1,
    "clbproxy.http.parsing": 1,
    "clbproxy.http.parse_httptools": 1,
    "clbproxy.http.parse_h11": 1,
    "clbproxy.http.parsers": 1,
    "clbproxy.http.upstream_client": 1,
    "clbproxy.http.redirect": 1,
    "clbproxy.http2": 1,
    "clbproxy.ws": 1,
    "clbproxy.ws.frames": 1,
    "clbproxy.ws.closecodes": 1,
    "clbproxy.ws.handshake": 1,
    "clbproxy.ws.timers": 1,
    "clbproxy.ws.livecount": 1,
    "clbproxy.ws.pauses": 1,
    "clbproxy.ws.controls": 1,
    "clbproxy.ws.fastpath": 1,
    "clbproxy.ws.compaction": 1,
    "clbproxy.ws.upgrade": 1,
    "clbproxy.net.tls": 1,
    "clbproxy.net.tls_client": 1,
    "clbproxy.net.certificates": 1,
    "clbproxy.observability.accesslog": 1,
    "clbproxy.observability.textlog": 1,
    "clbproxy.routing": 2,
    "clbproxy.fleet": 2,
    "clbproxy.upstream": 2,
    "clbproxy.http.forwarder": 3,
    "clbproxy.http.proxy_headers": 3,
    "clbproxy.ws.relay": 3,
    "clbproxy.ws.handshake_stage": 3,
    "clbproxy.ws.session": 3,
    "clbproxy.ws.closing": 3,
    "clbproxy.ws.passthrough": 3,
    "clbproxy.listener": 4,
    "clbproxy.observability": 5,
    "clbproxy.ops": 6,
    "clbproxy.demo": 6,
    "clbproxy.tap": 7,
    "clbproxy.cli": 7,
}

#: Modules that may be longer than :data:`MAX_LINES` for now.
KNOWN_LONG: set[str] = set()
MAX_LINES = 800


def modules() -> dict[str, str]:
    """Every module of the package: dotted name -> path."""
    found = {}
    for directory, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def layer(module: str) -> Optional[int]:
    """The layer of ``module`` (see :data:`LAYERS`), None if the table does not name it."""
    parts = module.split(".")
    while parts:
        found = LAYERS.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None


def imports(module: str, path: str, known: dict[str, str]) -> set[str]:
    """The clbproxy modules ``module`` imports anywhere in its file (functions included)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` imports that module; otherwise the names
            # are attributes of ``base``.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                # ``import a.b.c`` without a module of that name: its longest known prefix.
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name != module:
                    found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports(module, path, known) for module, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: strongly connected components of two modules or more."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


class LayerTests(unittest.TestCase):
    def test_every_module_has_a_layer(self):
        unplaced = sorted(module for module in modules() if layer(module) is None)
        self.assertEqual(unplaced, [], "add these modules to LAYERS")

    def test_no_module_imports_a_higher_layer(self):
        upward = [
            f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
            for module, targets in sorted(import_graph().items())
            for target in sorted(targets)
            if layer(target) > layer(module)
        ]
        self.assertEqual(upward, [])

    def test_no_import_cycle(self):
        self.assertEqual(cycles(import_graph()), [])

    def test_the_checks_see_imports_inside_functions(self):
        graph = import_graph()
        # clbproxy.tap imports the supervisor at the top; the walk must also see
        # imports that only a function makes, such as the reactor's (not ours).
        self.assertIn("clbproxy.ops.supervisor", graph["clbproxy.tap"])
        source = "def f():\n    from clbproxy.ops import services\n"
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(source)
        found = imports("clbproxy.example", path, {"clbproxy.ops.services": ""})
        self.assertEqual(found, {"clbproxy.ops.services"})

    def test_a_cycle_is_found(self):
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        self.assertEqual(cycles(graph), [["a", "b", "c"]])


class ModuleSizeTests(unittest.TestCase):
    def test_no_module_is_longer_than_800_lines(self):
        long = []
        for path in sorted(modules().values()):
            relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
            with open(path, encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            if lines > MAX_LINES and relative not in KNOWN_LONG:
                long.append(f"{relative}: {lines} lines")
        self.assertEqual(long, [])
