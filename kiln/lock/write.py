"""Writing versions.lock with tomlkit: the hand-kept sections stay as written, comments included;
a stack's inputs_sha256, packages_sha256 and [packages] tables are rewritten, packages in name order."""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.items import Array, Table

from kiln.data.lock import Package, inputs_digest, packages_digest

INLINE_ARRAY_CHARS = 60  # shorter arrays stay on one line


def lock_text(text: str, stack: str, packages: dict[str, Package],
              edits: dict[str, dict[str, Any]] | None = None) -> str:
    """The lock's text with one stack's [packages] replaced (and any of its section keys in edits changed)."""
    doc = tomlkit.parse(text)
    table = doc["stacks"][stack]
    for section, values in (edits or {}).items():
        for key, value in values.items():
            table[section][key] = value
    table["inputs_sha256"] = inputs_digest(table.unwrap())
    table["packages_sha256"] = packages_digest(packages)
    if "packages" in table:
        del table["packages"]
    table.add("packages", _packages(packages))
    return tomlkit.dumps(doc)


def _packages(packages: dict[str, Package]) -> Table:
    table = tomlkit.table(is_super_table=True)
    for key, pkg in sorted(packages.items()):
        table.add(key, _package(pkg))
    return table


def _package(pkg: Package) -> Table:
    row = tomlkit.table()
    for key in ("version", "wheel", "url", "sha256"):
        row.add(key, getattr(pkg, key))
    row.add("requires", _array(pkg.requires))
    if pkg.marker:
        row.add("marker", pkg.marker)
    row.add("entry_sha256", pkg.entry_digest())
    return row


def _array(items: tuple[str, ...]) -> Array:
    array = tomlkit.array()
    array.extend(items)
    return array.multiline(sum(len(x) for x in items) >= INLINE_ARRAY_CHARS)
