"""Writing versions.lock: input sections as given, [packages] as resolved, in a fixed order."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .lockfile import INPUT_SECTIONS, Package, inputs_digest
from .tomlwrite import table

HEADER = """\
# versions.lock: the single source of every pin an image carries.
# Edit [stack], [comfyui], [resolve] and [bases] by hand; [packages] is written by `invoke lock`
# (resolved as of [resolve].as_of, one wheel per package for the stack's Python and platform).
# `invoke lock --check` fails when this file is stale against its inputs or disagrees with itself.
"""


def lock_text(raw: dict[str, Any], packages: dict[str, Package]) -> str:
    meta = dict(raw.get("lock", {}))
    meta["inputs_sha256"] = inputs_digest(raw)
    parts = [HEADER, table("lock", meta)]
    parts += [table(section, raw[section]) for section in INPUT_SECTIONS]
    parts += [table(f"bases.{name}", base) for name, base in raw.get("bases", {}).items()]
    parts += [table(f"packages.{key}", _package_row(pkg)) for key, pkg in sorted(packages.items())]
    return "\n".join(parts)


def _package_row(pkg: Package) -> dict[str, Any]:
    row = asdict(pkg)
    row.pop("name")
    row["requires"] = list(pkg.requires)
    if not pkg.marker:
        row.pop("marker")
    return row
