"""Render results: a plain-text table, a one-line summary, the JSON document."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Sequence

from .verdict import Check

SCHEMA = 1
HEADERS = ("check", "verdict", "measured", "expected", "note")
MAX_CELL = 34


def format_value(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 0.01 else f"{value:,.1f}".replace(",", "")
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit and unit != "rel" else text


def _clip(text: str, width: int = MAX_CELL) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def table_rows(checks: Sequence[Check]) -> List[tuple]:
    return [(
        f"{c.group}.{c.name}",
        c.verdict.upper(),
        _clip(format_value(c.measured, c.unit)),
        _clip(format_value(c.expected)),
        c.note,
    ) for c in checks]


def render_table(checks: Sequence[Check]) -> str:
    rows = [HEADERS] + table_rows(checks)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths + [len(HEADERS[-1])]))
    return "\n".join(lines)


def summary_line(summary: Dict[str, Any]) -> str:
    verdict = "FAILED" if summary["fail"] else "OK"
    return (f"smoke {verdict}: {summary['pass']} pass, {summary['warn']} warn, "
            f"{summary['fail']} fail, {summary['skip']} skip in {summary['seconds']:.1f} s")


def document(checks: Sequence[Check], summary: Dict[str, Any], env: Dict[str, Any]) -> dict:
    return {
        "schema": SCHEMA,
        "summary": summary,
        "env": env,
        "checks": [check.to_json() for check in checks],
    }


def check_writable(path: str) -> None:
    """Raise OSError now (before minutes of probes) if `path` cannot be written."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory {directory} does not exist")
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".smoke-", delete=True):
        pass


def write_json(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")
    os.replace(tmp, path)
