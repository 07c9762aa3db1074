"""The base of every data model, and turning a validation failure into one error naming file:line,
the key path and the fix (for an unknown key, the nearest valid one)."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kiln.data.files import Loc, line_of
from kiln.errors import KilnError

M = TypeVar("M", bound=BaseModel)


class Model(BaseModel):
    """Loaded data: immutable, and a key the model does not define is an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def validate(model: type[M], data: Any, path: Path, shown: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # an unknown key first: a misspelt key also shows up as the missing one it was meant to be
        first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        raise problem(model, first, path, shown) from None


def problem(model: type[BaseModel], error: dict, path: Path, shown: str = "") -> KilnError:
    loc = tuple(error["loc"])
    keypath = _keypath(loc)
    line = line_of(path, loc)
    where = f"{shown or path}:{line}" if line else (shown or str(path))
    kind = error["type"]
    if not loc:
        what = "the file is empty or not a mapping of keys" if kind in ("model_type", "dict_type") else _message(error)
        return KilnError(what, where, "see the file's JSON Schema (`invoke schema`) or the README")
    if kind == "extra_forbidden":
        return KilnError(f"unknown key '{keypath}'", where, _nearest(model, loc))
    if kind == "missing":
        return KilnError(f"missing key '{keypath}'", where, f"add '{loc[-1]}' there")
    value = error.get("input")
    if loc[-1] == "[key]":
        fix = "write the key in quotes" if not isinstance(value, str) else \
            "use letters, digits and _, not starting with a digit"
        return KilnError(f"'{value}' is not a valid name under '{_keypath(loc[:-2])}' ({_message(error)})", where, fix)
    described = _description(model, loc)
    if kind == "string_pattern_mismatch" and described:
        return KilnError(f"key '{keypath}': {value!r} is not {described}", where, "correct that value")
    shown_value = f" (got {value!r})" if not isinstance(value, (dict, list)) else ""
    return KilnError(f"key '{keypath}': {_message(error)}{shown_value}", where, "correct that value")


def _description(model: type[BaseModel], loc: Loc) -> str:
    owner: Any = model
    for part in loc[:-1]:
        owner = _step(owner, part)
    owner = _unwrap(owner)
    if isinstance(owner, type) and issubclass(owner, BaseModel):
        for name, f in owner.model_fields.items():
            if loc[-1] in (name, f.alias):
                return f.description or ""
    return ""


def _message(error: dict) -> str:
    text = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return text[:1].lower() + text[1:]


def _keypath(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


def _nearest(model: type[BaseModel], loc: Loc) -> str:
    names = fields_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"valid keys there: {', '.join(names)}" if names else "remove it"


def fields_at(model: Any, loc: Loc) -> list[str]:
    """The keys a model accepts at a key path (following nested models, mappings and lists)."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _step(current: Any, part: str | int) -> Any:
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        if hasattr(current, "root_type"):
            return _step(current.root_type(), part)
        for name, f in current.model_fields.items():
            if part in (name, f.alias):
                return _unwrap(f.annotation)
        return None
    args = typing.get_args(current)
    origin = typing.get_origin(current)
    if origin is dict:
        return _unwrap(args[1])
    if origin in (list, tuple):
        return _unwrap(args[0])
    return None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / X | None / Annotated[X, ...] -> X (the first model among a union's members)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return _unwrap((models or members)[0])
    return annotation
