"""What a deployment takes from earlier steps: the image reference from the build record (by digest
once `invoke publish` wrote its references there, else the local image id) and the warm-up measured
by `invoke run`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kiln.data.subject import Subject
from kiln.engine.run_record import read_run_record
from kiln.errors import KilnError
from kiln.identity import image_tags


@dataclass(frozen=True)
class ImageRecord:
    reference: str          # name@sha256:... (published) or sha256:... (local image id)
    published: bool
    image_id: str
    size_bytes: int | None
    run: dict | None        # the run record of this image id, if `invoke run` made one


def build_record_path(build_dir: Path, s: Subject) -> Path:
    return build_dir / f"{s.image.name}-{s.gpu.name}.build.json"


def image_record(build_dir: Path, s: Subject, need_digest: bool) -> ImageRecord:
    path = build_record_path(build_dir, s)
    record = _read(path)
    publish = f"`invoke publish --registry HOST/NS --gpu={s.gpu.name} --image {s.image.name}`"
    if not record.get("image_id"):
        what = "no publish record (no build record at all)" if need_digest else "no build record"
        raise KilnError(f"{what} for image '{s.image.name}' on {s.gpu.name}", str(path),
                        f"run `invoke build --gpu={s.gpu.name} --image {s.image.name}`"
                        + (f", smoke it, then {publish}" if need_digest else ""))
    if image_tags(s)[1] not in record.get("tags", []):
        raise KilnError("the build record is from another versions.lock or spec than today's", str(path),
                        f"build the image again with `invoke build --gpu={s.gpu.name} --image {s.image.name}`")
    references = (record.get("published") or {}).get("references") or []
    if need_digest and not references:
        raise KilnError(f"no publish record for image '{s.image.name}' on {s.gpu.name}: this target pulls by digest",
                        str(path), f"smoke it, then {publish} (compose runs the local image id without one)")
    size = record.get("size")
    return ImageRecord(reference=references[0] if references else record["image_id"], published=bool(references),
                       image_id=record["image_id"], size_bytes=size if isinstance(size, int) else None,
                       run=read_run_record(build_dir / "run", record["image_id"]))


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
