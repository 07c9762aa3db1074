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


def read_record(model: type[R], path: Path, rewrite: str) -> R | None:
    """The record at path, or None when there is none. `rewrite` is the command that writes it again."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KilnError(f"cannot read the record ({exc.strerror})", str(path), f"check the file, or {rewrite}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise KilnError("damaged record (not JSON)", str(path), f"{rewrite} to write it again") from None
    version = data.get("schema") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        age = "an older kiln (no schema version)" if version is None else f"another kiln (schema {version!r}, " \
              f"this kiln reads {SCHEMA_VERSION})"
        raise KilnError(f"record written by {age}", str(path), f"{rewrite} to write it again")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise KilnError(f"damaged record: {problem(model, exc.errors()[0], path).what}", str(path),
                        f"{rewrite} to write it again") from None


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
