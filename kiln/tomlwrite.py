"""Deterministic TOML output for the lock's schema (strings, numbers, booleans, arrays, tables)."""

from __future__ import annotations

import json
from typing import Any


def value(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return repr(item)
    if isinstance(item, str):
        return json.dumps(item, ensure_ascii=False)
    if isinstance(item, (list, tuple)):
        if all(isinstance(x, (str, int, float)) for x in item) and sum(len(str(x)) for x in item) < 60:
            return "[" + ", ".join(value(x) for x in item) + "]"
        return "[\n" + "".join(f"    {value(x)},\n" for x in item) + "]"
    raise TypeError(f"cannot write {type(item).__name__} to TOML")


def table(name: str, data: dict[str, Any]) -> str:
    """One [name] table; nested mappings become [name.key] tables after the plain keys."""
    lines = [f"[{name}]"]
    nested = []
    for key, item in data.items():
        if isinstance(item, dict):
            nested.append(table(f"{name}.{_key(key)}", item))
        else:
            lines.append(f"{_key(key)} = {value(item)}")
    return "\n".join(lines) + "\n" + "".join("\n" + n for n in nested)


def _key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)
