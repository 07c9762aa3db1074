"""What every record shares: a schema version, and reading one back as its model or as one line saying
which file is wrong, how, and which command writes it again."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError

from kiln.data.schema import Model, problem
from kiln.errors import KilnError

SCHEMA_VERSION = 1
R = TypeVar("R", bound="Record")


class Record(Model):
    """A record kiln wrote; `schema` changes when a field changes meaning or goes away."""

    format: Literal[1] = Field(SCHEMA_VERSION, alias="schema", description="record schema version")

    def text(self) -> str:
        """JSON with what is absent left out (a build not yet published has no `published` key)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2,
                          sort_keys=True) + "\n"


def read_record(model: type[R], path: Path, rewrite: str, optional: bool = False) -> R | None:
    """The record at path, or None when there is none. `rewrite` is the command that writes it again; an
    optional record (the reader does without one) may also be deleted."""
    again = f"{rewrite} to write it again" + (f", or delete {path} (the record is optional)" if optional else "")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KilnError(f"cannot read the record ({exc.strerror})", str(path), f"check the file, or {again}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise KilnError("damaged record (not JSON)", str(path), again) from None
    if not isinstance(data, dict):
        raise KilnError("damaged record (not a JSON object)", str(path), again)
    if "schema" not in data:  # the kiln before versioned records wrote the same fields without one
        try:
            return model.model_validate({**data, "schema": SCHEMA_VERSION})
        except ValidationError:
            raise KilnError("record written by an older kiln (no schema version) lacks what this kiln needs",
                            str(path), again) from None
    if data["schema"] != SCHEMA_VERSION or isinstance(data["schema"], bool):
        raise KilnError(f"record written by another kiln (schema {data['schema']!r}; this kiln reads the integer "
                        f"{SCHEMA_VERSION})", str(path), again)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise KilnError(f"damaged record: {problem(model, exc.errors()[0], path).what}", str(path),
                        again) from None


def write_record(record: Record, path: Path, failed: str) -> Path:
    """Written whole or not at all (a temporary file renamed into place); `failed` says what the error means."""
    staging = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.write_text(record.text(), encoding="utf-8")
        os.replace(staging, path)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise KilnError(f"{failed} ({exc.strerror})", str(path.parent), "check the build folder") from None
    return path
