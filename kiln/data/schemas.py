"""JSON Schemas of the files users edit (gpus.yaml, images/*.yaml), made from the data models so that
editors validate and complete them (yaml-language-server modeline at the top of each file), and of the
records the stages hand on (build/, see kiln.data.records.folder), for tools that read them."""

from __future__ import annotations

import json
from pathlib import Path

from kiln.data.gpus import GpusFile
from kiln.data.image import ImageFile
from kiln.data.records.base import Record
from kiln.data.records.base_image import BaseImageRecord
from kiln.data.records.build import BuildRecord
from kiln.data.records.deploy import Deployment
from kiln.data.records.run import RunRecord
from kiln.data.records.smoke import SmokeRecord
from kiln.data.schema import Model
from kiln.errors import KilnError

SCHEMAS: dict[str, tuple[type[Model], str]] = {
    "gpus.schema.json": (GpusFile, "kiln GPU profiles (gpus.yaml)"),
    "image.schema.json": (ImageFile, "kiln image spec (images/*.yaml)"),
    "build-record.schema.json": (BuildRecord, "kiln build record (build/<image>-<gpu>.build.json)"),
    "smoke-record.schema.json": (SmokeRecord, "kiln smoke record (build/smoke/<image id>.json)"),
    "run-record.schema.json": (RunRecord, "kiln run record (build/run/<image id>.json)"),
    "deploy-record.schema.json": (Deployment, "kiln deployment record (deploy.json beside the rendered targets)"),
    "base-record.schema.json": (BaseImageRecord, "kiln base image record (build/bases/<name>.json)"),
}


def schema_texts() -> dict[str, str]:
    """File name -> JSON text, deterministic."""
    out = {}
    for name, (model, title) in SCHEMAS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        if issubclass(model, Record):  # kiln refuses a record without its version, so the schema does too
            schema["required"] = sorted({*schema.get("required", []), "schema"})
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(folder: Path) -> list[Path]:
    paths = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in schema_texts().items():
            (folder / name).write_text(text, encoding="utf-8")
            paths.append(folder / name)
    except OSError as exc:
        raise KilnError(f"cannot write the schemas ({exc.strerror})", str(folder), "give a writable directory") from None
    return paths
