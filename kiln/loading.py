"""Reading TOML/YAML/JSON data files with errors that name the file, the line and the key."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from .errors import KilnError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


def read_toml(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KilnError(f"malformed TOML ({exc})", str(path), "fix the syntax at that line") from None


def read_yaml(path: Path) -> Any:
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "syntax error"
        raise KilnError(f"malformed YAML ({problem})", at, "fix the syntax at that line") from None


def read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KilnError(f"malformed JSON ({exc.msg})", f"{path}:{exc.lineno}", "fix the syntax at that line") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KilnError("file not found", str(path), "check the path or run from the project root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KilnError(f"cannot read ({exc})", str(path), "check the file's permissions and encoding") from None


class Fields:
    """Typed access to one mapping of a data file; every error names file and key path."""

    def __init__(self, data: Any, where: str, keypath: str = ""):
        if not isinstance(data, dict):
            raise KilnError(f"expected a table/mapping at '{keypath or '(top)'}', got {type(data).__name__}", where,
                            "see the documented layout of this file")
        self.data, self.where, self.keypath = data, where, keypath

    def _key(self, key: str) -> str:
        return f"{self.keypath}.{key}" if self.keypath else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise KilnError(f"missing key '{self._key(key)}'", self.where, f"add '{key}' to that section")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise KilnError(f"key '{self._key(key)}' must be {names}, got {type(value).__name__} {value!r}",
                            self.where, "correct its type")
        return value

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        items = self.get(key, list, default)
        for item in items:
            if not isinstance(item, str):
                raise KilnError(f"key '{self._key(key)}' must list strings, found {item!r}", self.where,
                                "quote that entry")
        return tuple(items)

    def sub(self, key: str, default: Any = ...) -> "Fields":
        return Fields(self.get(key, dict, {} if default is not ... else default), self.where, self._key(key))

    def keys(self) -> list[str]:
        return list(self.data)
