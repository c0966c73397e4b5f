"""Sphinx extension: the key tables of the configuration reference, from the declarations.

``.. clbproxy-config-keys:: listener`` renders the keys of one tap.conf table
(key, default, meaning) from the metadata of the attributes that declare them
(:mod:`clbproxy.config.keys`), so the reference cannot drift from the code.  The
table names are those of ``clbproxy.config.TABLES`` (``top``, ``listener``,
``listener.rule``, ``target_group.health_check``...).

A meaning may point to a section by its title, as ```Timeouts`_``; titles that
live on other pages are turned into references to them (``LINKS``), the
others must be sections of the page that uses the directive.
"""

from __future__ import annotations

import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from clbproxy.config import TABLES
from clbproxy.config.keys import key_rows

#: Section titles named in the declarations, and where they are in these docs.
LINKS = {
    "HTTPS and TLS": ":doc:`HTTPS and TLS <tls>`",
    "HTTP/2": ":doc:`HTTP/2 <http2>`",
    "WebSocket over HTTP/2": ":ref:`websocket-over-http2`",
    "WebSocket": ":doc:`websocket`",
    "Relay modes": ":doc:`Relay modes <websocket>`",
    "Long-lived sessions": ":ref:`long-lived-sessions`",
    "Timeouts": ":ref:`timeouts`",
    "Limits": ":ref:`limits`",
    "Worker processes": ":ref:`worker-processes`",
    "Balancing": ":doc:`balancing`",
    "Headers to the backend": ":doc:`Headers to the backend <http-proxying>`",
    "Access log": ":doc:`Access log <observability>`",
    "Request IDs": ":ref:`request-ids`",
    "Trace context": ":ref:`trace-context`",
}

_SECTION_REFERENCE = re.compile(r"`([^`<>]+)`_")


def linked(text: str) -> str:
    """``text`` with each ```Title`_`` of another page made a reference to that page."""
    return _SECTION_REFERENCE.sub(lambda m: LINKS.get(m.group(1), m.group(0)), text)


def key_table(table: str) -> list[str]:
    """The reST ``list-table`` of the keys of ``table``."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 25 15 60",
        "",
        "   * - key",
        "     - default",
        "     - meaning",
    ]
    for key, default, meaning in key_rows(TABLES[table]):
        lines += [f"   * - ``{key}``", f"     - {default}", f"     - {linked(meaning)}"]
    return lines


class ConfigKeys(SphinxDirective):
    """``.. clbproxy-config-keys:: TABLE``: the key table of one tap.conf table."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        table = self.arguments[0]
        if table not in TABLES:
            known = ", ".join(TABLES)
            raise self.error(f"unknown tap.conf table {table!r}; known: {known}")
        source = self.get_source_info()[0]
        container = nodes.container()
        self.state.nested_parse(
            StringList(key_table(table), source), self.content_offset, container
        )
        return container.children


def setup(app) -> dict:
    app.add_directive("clbproxy-config-keys", ConfigKeys)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
