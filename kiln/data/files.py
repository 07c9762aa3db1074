"""Reading TOML/YAML/JSON data files with errors that name the file and line, and finding the line of
a key path so that validation errors can point at it."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Sequence

import yaml

from kiln.errors import KilnError

_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
Loc = Sequence[str | int]


class _Loader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """Safe loading that refuses a key written twice in one mapping (YAML would keep the last)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is written twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
_LOADER = _Loader


def read_toml(path: Path) -> dict[str, Any]:
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KilnError(f"malformed TOML ({exc})", str(path), "fix the syntax at that line") from None


def read_yaml(path: Path) -> Any:
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "syntax error"
        raise KilnError(f"malformed YAML ({problem})", at, "fix the syntax at that line") from None


def read_json(path: Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KilnError(f"malformed JSON ({exc.msg})", f"{path}:{exc.lineno}", "fix the syntax at that line") from None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KilnError("file not found", str(path), "check the path or run from the project root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KilnError(f"cannot read ({exc})", str(path), "check the file's permissions and encoding") from None


def line_of(path: Path, loc: Loc) -> int | None:
    """The 1-based line where the key path loc is written, or the nearest enclosing key's line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if path.suffix == ".toml" or path.suffix == ".lock":
        return _toml_line(text, loc)
    if path.suffix in (".yaml", ".yml"):
        return _yaml_line(text, loc)
    return None


def _yaml_line(text: str, loc: Loc) -> int | None:
    try:
        node = yaml.compose(text, Loader=_BASE_LOADER)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        child = _yaml_child(node, part)
        if child is None:
            break
        key_node, node = child
        line = key_node.start_mark.line + 1
    return line


def _yaml_child(node: Any, part: str | int):
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


def _toml_line(text: str, loc: Loc) -> int | None:
    """Best effort for the lock's layout: the [a.b] header of the table, then the key within it."""
    lines = text.splitlines()
    keys = [str(p) for p in loc if not isinstance(p, int)]
    for depth in range(len(keys), 0, -1):
        header = _find(lines, 0, lambda s, t=".".join(keys[:depth]): _is_header(s, t))
        if header is None:
            continue
        if depth == len(keys):
            return header + 1
        key = keys[depth]
        found = _find(lines, header + 1, lambda s: re.match(rf'^"?{re.escape(key)}"?\s*=', s) is not None,
                      stop=lambda s: s.startswith("["))
        return (found if found is not None else header) + 1
    return None


def _is_header(line: str, table: str) -> bool:
    name = line.strip()
    return name.startswith("[") and name.strip("[]").replace('"', "") == table


def _find(lines: list[str], start: int, match, stop=lambda s: False) -> int | None:
    for index in range(start, len(lines)):
        if index > start and stop(lines[index]):
            return None
        if match(lines[index]):
            return index
    return None
