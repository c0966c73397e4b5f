"""Keys declared once: the attribute metadata drives the key check, parsing and the reference."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import attrs
from twisted.trial import unittest

from clbproxy.config import TABLES, ConfigError, load_config_text
from clbproxy.config.keys import declared_keys, key_names, key_rows
from tests.unit.config.loading import REPOSITORY, document

sys.path.insert(0, str(REPOSITORY / "docs" / "_ext"))
try:
    import clbproxy_config
    from docutils import nodes
    from sphinx.application import Sphinx
except ImportError:  # Sphinx comes with the test extras
    Sphinx = None

#: Attributes filled by the loader rather than written by a user.
NOT_KEYS = {
    ("Config", "path"),
    ("Config", "warnings"),
    ("TargetGroupConfig", "name"),
    ("FleetListenerConfig", "name"),
    ("BackendConfig", "port"),
    ("AdminConfig", "token"),
    # A fleet's previous cookie secret comes from etcd, not from a file.
    ("PersistenceConfig", "previous_secret"),
}


class DeclarationTests(unittest.TestCase):
    def test_every_declared_key_has_documentation_text_and_a_default(self) -> None:
        for table, record in TABLES.items():
            for attribute, key in declared_keys(record):
                with self.subTest(table=table, key=key.name):
                    self.assertTrue(key.doc.strip(), f"{table}.{attribute} has no doc")
                    self.assertTrue(key.default.strip(), f"{table}.{attribute} has no default")

    def test_every_attribute_a_user_writes_is_a_declared_key(self) -> None:
        for record in TABLES.values():
            declared = {attribute for attribute, _ in declared_keys(record)}
            for field in attrs.fields(record):
                # A field made from the others (``init=False``) is not written by anyone.
                if field.init and (record.__name__, field.name) not in NOT_KEYS:
                    self.assertIn(field.name, declared, f"{record.__name__}.{field.name}")

    def test_a_key_is_named_after_its_attribute_unless_declared_otherwise(self) -> None:
        self.assertIn("rule", key_names(TABLES["listener"]))
        self.assertNotIn("rules", key_names(TABLES["listener"]))
        self.assertIn("scheme", key_names(TABLES["target_group"]))
        self.assertIn("address", key_names(TABLES["target_group.backends"]))

    def test_an_unknown_key_of_a_nested_table_suggests_a_declared_one(self) -> None:
        text = document(group={"health_check": "{ intervall = 5 }"})
        error = self.assertRaises(ConfigError, load_config_text, text, "tap.conf")
        self.assertEqual(
            error.problems,
            [
                "tap.conf: target_group.demo.health_check: unknown key 'intervall' "
                "(did you mean 'interval'?)"
            ],
        )

    def test_rows_give_key_default_and_meaning_in_declaration_order(self) -> None:
        rows = key_rows(TABLES["target_group.passive"])
        self.assertEqual(
            [key for key, _, _ in rows], ["failures", "ejection", "max_ejection", "count_5xx"]
        )
        self.assertEqual(rows[0][:2], ("failures", "``3``"))


def _build_reference(directory: str) -> dict[str, Any]:
    """Build one page per table with the directive (and stand-ins for the pages it links to)."""
    source = os.path.join(directory, "source")
    os.makedirs(source)
    pages = []
    for target in clbproxy_config.LINKS.values():
        match = re.search(r":(doc|ref):`(?:[^<`]*<)?([^>`]+)>?`", target)
        kind, name = match.groups()
        if kind == "doc":
            pages.append((name, f"{name}\n{'=' * len(name)}\n"))
        else:
            pages.append((f"label-{name}", f".. _{name}:\n\n{name}\n{'=' * len(name)}\n"))
    for table in TABLES:
        text = f"{table}\n{'=' * len(table)}\n\n.. clbproxy-config-keys:: {table}\n\n"
        pages.append((table, text + "Forwarding rules\n----------------\n"))
    toctree = "\n".join(f"   {name}" for name, _ in pages)
    pages.append(("index", f"Index\n=====\n\n.. toctree::\n\n{toctree}\n"))
    for name, text in pages:
        with open(os.path.join(source, f"{name}.rst"), "w") as stream:
            stream.write(text)
    with open(os.path.join(source, "conf.py"), "w") as stream:
        stream.write("extensions = ['clbproxy_config']\n")
    output = os.path.join(directory, "build")
    app = Sphinx(
        source,
        source,
        output,
        os.path.join(output, ".doctrees"),
        "html",
        status=None,
        warning=None,
        freshenv=True,
        warningiserror=True,
    )
    app.build()
    return {table: app.env.get_and_resolve_doctree(table, app.builder) for table in TABLES}


_BUILT: dict[str, Any] = {}


class DirectiveTests(unittest.TestCase):
    """``.. clbproxy-config-keys:: TABLE`` (docs/_ext/clbproxy_config.py)."""

    skip = None if Sphinx else "Sphinx is not installed (it is in the test extras)"

    def setUp(self) -> None:
        # One build for the class: the first test makes it.
        if not _BUILT:
            _BUILT.update(_build_reference(os.path.abspath(self.mktemp())))
        self.doctrees = _BUILT

    def test_the_table_of_each_tap_conf_table_lists_every_key(self) -> None:
        for table, record in TABLES.items():
            (rendered,) = list(self.doctrees[table].findall(nodes.table))
            rows = list(rendered.findall(nodes.row))
            first_cells = [row.children[0].astext() for row in rows[1:]]
            self.assertEqual(first_cells, list(key_names(record)), table)

    def test_each_row_shows_the_default_and_the_meaning(self) -> None:
        (rendered,) = list(self.doctrees["listener"].findall(nodes.table))
        rows = {row.children[0].astext(): row for row in rendered.findall(nodes.row)}
        self.assertEqual(rows["session_buffer"].children[1].astext(), "256KiB")
        self.assertIn("flow control", rows["session_buffer"].children[2].astext())

    def test_a_section_on_another_page_becomes_a_link_to_it(self) -> None:
        (rendered,) = list(self.doctrees["listener"].findall(nodes.table))
        rows = {row.children[0].astext(): row for row in rendered.findall(nodes.row)}
        targets = [ref.get("refuri") for ref in rows["protocol"].findall(nodes.reference)]
        self.assertEqual(targets, ["tls.html"])
