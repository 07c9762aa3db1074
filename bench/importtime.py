"""Python's import timer (`-X importtime`, PYTHONPROFILEIMPORTTIME) read back: one row per module, in the
timer's order (a module after the modules it imported), with its depth in the tree."""

from __future__ import annotations

from typing import Iterable, NamedTuple


class Row(NamedTuple):
    module: str
    depth: int
    self_s: float
    cumulative_s: float


def rows(lines: Iterable[str]) -> list[Row]:
    """The timer's lines ('import time: self [us] | cumulative | name', two spaces a level) among any others."""
    out = []
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit() or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        out.append(Row(name.strip(), depth, int(parts[0]) / 1e6, int(parts[1]) / 1e6))
    return out


def package(module: str) -> str:
    return module.split(".")[0]


def own_by_package(table: list[Row]) -> dict[str, float]:
    """Seconds each top-level package spent in its own modules (self times summed), the slowest first."""
    totals: dict[str, float] = {}
    for row in table:
        totals[package(row.module)] = totals.get(package(row.module), 0.0) + row.self_s
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def slowest_top_level(table: list[Row], top: int) -> list[Row]:
    """The imports made by the program itself (depth 0), by cumulative time."""
    return sorted((r for r in table if r.depth == 0), key=lambda r: -r.cumulative_s)[:top]


def importers(table: list[Row], index: int) -> list[Row]:
    """The modules above table[index] in the tree, nearest first: each is the next row one level up."""
    chain, depth = [], table[index].depth
    for row in table[index + 1:]:
        if row.depth < depth:
            chain.append(row)
            depth = row.depth
        if depth == 0:
            break
    return chain
