"""Sphinx configuration for clbproxy's documentation.

Built by ``scripts/test`` with warnings as errors and nitpicky references:
``sphinx-build -W -n --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docstrings import prepare_docstring
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles
from zope.interface.interface import InterfaceClass

HERE = os.path.dirname(os.path.abspath(__file__))
# The clbproxy of this checkout, not an installed copy.
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.abspath("_ext"))

project = "clbproxy"
author = "clbproxy contributors"
copyright = "clbproxy contributors"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc"]
# The configuration reference is generated from the config declarations by an
# extension of our own, once it exists.
if os.path.exists(os.path.join(os.path.dirname(__file__), "_ext", "clbproxy_config.py")):
    extensions.append("clbproxy_config")

exclude_patterns = ["_build"]
html_theme = "alabaster"
# Documentation pages are reST; nothing in them should be read as Python by default.
default_role = None

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
# A method without a docstring would show the docstring of the Twisted or Autobahn
# method it overrides, which is epytext, not reST, and says nothing of ours.
autodoc_inherit_docstrings = False

# Nitpicky mode (-n) checks every cross-reference.  The docstrings and type hints
# name Twisted, Autobahn, pyOpenSSL, h2, attrs, prometheus_client, zope.interface and
# standard-library types; intersphinx would resolve them but needs the network at
# build time, which the suite does not have.  So those targets are ignored by
# name; a broken reference to clbproxy's own code is still an error.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(twisted|autobahn|OpenSSL|attr|attrs|prometheus_client|treq|zope|"
        r"cryptography|service_identity|hyperlink|tomli|tomllib|incremental|h2|hpack|hyperframe)(\..*)?",
    ),
    (
        r"py:.*",
        r"(typing|collections|collections\.abc|abc|enum|socket|ssl|os|io|re|"
        r"ipaddress|datetime|pathlib|random|zlib|signal|subprocess|asyncio|logging|"
        r"json|types|weakref|functools|itertools|dataclasses|email|http|urllib|"
        r"hashlib|hmac|struct|array|selectors|errno|time|math)\..*",
    ),
    # Builtins and typing names as they appear in string annotations.
    (
        r"py:.*",
        r"(None|NoneType|bool|int|float|str|bytes|bytearray|memoryview|object|"
        r"type|list|dict|set|frozenset|tuple|Exception|BaseException|ValueError|KeyError|"
        r"OSError|RuntimeError|TypeError|Ellipsis|callable|"
        r"Any|Optional|Union|Callable|Iterable|Iterator|Sequence|Mapping|MutableMapping|"
        r"Generator|Awaitable|Coroutine|ClassVar|Final|Literal|Protocol|TypeVar|NamedTuple|"
        r"Deque|Dict|List|Set|FrozenSet|Tuple|Type|IO|BinaryIO|TextIO|Pattern|Match)",
    ),
    # Older Sphinx (7.x) leaves some attribute annotations unqualified, as written:
    # Autobahn's classes by their bare names.
    (
        r"py:.*",
        r"(ConnectingRequest|ConnectionRequest|ConnectionResponse|ConnectionDeny|"
        r"PerMessageDeflate\w*|WebSocket\w*(Protocol|Factory))",
    ),
    # Overrides of Twisted's and Autobahn's protocol, factory, resource and service
    # methods: what they do is documented there.
    (
        r"py:meth",
        r"(.*\.)?(buildProtocol|makeConnection|connectionMade|dataReceived|"
        r"connectionLost|connectionFailed|clientConnectionFailed|clientConnectionLost|"
        r"onConnect|onConnecting|onOpen|onClose|onMessage\w*|onPing|onPong|sendData|"
        r"render|render_\w+|getChild|startService|stopService|privilegedStartService|"
        r"pauseProducing|resumeProducing|stopProducing|startFactory|stopFactory)",
    ),
    # Private helpers, named in docstrings for readers of the code, are not in the
    # API pages.
    (r"py:.*", r"(.*\.)?_[A-Za-z].*"),
]


def interfaces(module_name: str) -> list[str]:
    """``py:class`` directives for the interfaces defined in ``module_name``."""
    module = importlib.import_module(module_name)
    lines = []
    for name, value in vars(module).items():
        if not isinstance(value, InterfaceClass) or value.__module__ != module_name:
            continue
        lines += [f".. py:class:: {name}", f"   :module: {module_name}", ""]
        lines += [f"   {line}".rstrip() for line in prepare_docstring(value.__doc__ or "")]
        for member, description in sorted(value.namesAndDescriptions()):
            signature = getattr(description, "getSignatureString", lambda: "")()
            doc = " ".join((description.getDoc() or "").split()) or "(no description)"
            lines += [f"   ``{member}{signature}``", f"      {doc}", ""]
    return lines


_INTERFACE_REPR = re.compile(r"<InterfaceClass ([\w.]+)>")


def interface_names(app, what, name, obj, options, signature, return_annotation):
    """Write an interface in a signature as its dotted name, not its ``repr``."""
    if signature:
        signature = _INTERFACE_REPR.sub(r"\1", signature)
    if return_annotation:
        return_annotation = _INTERFACE_REPR.sub(r"\1", return_annotation)
    return signature, return_annotation


class ClbproxyModules(SphinxDirective):
    """``.. clbproxy-modules:: PACKAGE``: an ``automodule`` with ``:members:`` for
    the package and each of its modules, found at build time.

    Listing them here rather than by hand means a module that is added, moved or
    split is documented without editing the API pages.  ``:recursive:`` includes
    subpackages.  autodoc skips ``zope.interface`` interfaces (they are not
    classes), yet they are the API docstrings point to (``IHealthState``,
    ``IBalancingPolicy``...), so each is written out as a class with its methods.
    """

    required_arguments = 1
    option_spec = {"recursive": lambda argument: True}

    def modules(self, package: str, recursive: bool) -> list[str]:
        found = [package]
        path = importlib.import_module(package).__path__
        for info in sorted(pkgutil.iter_modules(path), key=lambda i: (i.ispkg, i.name)):
            name = f"{package}.{info.name}"
            if not info.ispkg:
                found.append(name)
            elif recursive:
                found.extend(self.modules(name, recursive))
        return found

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        lines = StringList()
        source = self.get_source_info()[0]
        for name in self.modules(package, "recursive" in self.options):
            title = f"``{name}``"
            for line in (title, "-" * len(title), "", f".. automodule:: {name}", ""):
                lines.append(line, source)
            for line in interfaces(name):
                lines.append(line, source)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, lines, container)
        return container.children


def check_api_pages(app) -> None:
    """Warn (an error under ``-W``) when a subpackage of clbproxy has no API page."""
    package = importlib.import_module("clbproxy")
    pages = os.path.join(app.srcdir, "api")
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and not os.path.exists(os.path.join(pages, f"{info.name}.rst")):
            logging.getLogger(__name__).warning(
                "docs/api/%s.rst is missing: every subpackage of clbproxy has an API page "
                "(and a line in docs/api/index.rst)",
                info.name,
            )


def setup(app) -> dict:
    app.add_directive("clbproxy-modules", ClbproxyModules)
    app.connect("autodoc-process-signature", interface_names)
    app.connect("builder-inited", check_api_pages)
    return {"parallel_read_safe": True}
