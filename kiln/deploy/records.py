"""What a deployment takes from earlier steps: the image reference from the build record (by digest
once `invoke publish` wrote its references there, else the local image id) and the warm-up measured
by `invoke run`."""

from __future__ import annotations

from dataclasses import dataclass

from kiln.data.records.folder import BuildFolder
from kiln.data.records.run import RunRecord
from kiln.data.subject import Subject
from kiln.errors import KilnError
from kiln.identity import image_tags


@dataclass(frozen=True)
class ImageRecord:
    reference: str          # name@sha256:... (published) or sha256:... (local image id)
    published: bool
    image_id: str
    size_bytes: int
    run: RunRecord | None   # the run record of this image id, if `invoke run` made one


def image_record(folder: BuildFolder, s: Subject, need_digest: bool, stack: str | None = None) -> ImageRecord:
    """stack: the one --stack chose at build time (that build's record), else None."""
    path = folder.build_record(s.image.name, s.gpu.name, stack=stack)
    record = folder.read_build(s.image.name, s.gpu.name, stack=stack)
    publish = f"`invoke publish --registry HOST/NS --gpu={s.gpu.name} --image {s.image.name}`"
    if record is None:
        what = "no publish record (no build record at all)" if need_digest else "no build record"
        raise KilnError(f"{what} for image '{s.image.name}' on {s.gpu.name}", str(path),
                        f"run `invoke build --gpu={s.gpu.name} --image {s.image.name}`"
                        + (f", smoke it, then {publish}" if need_digest else ""))
    if image_tags(s)[1] not in record.tags:
        raise KilnError("the build record is from another versions.lock or spec than today's", str(path),
                        f"build the image again with `invoke build --gpu={s.gpu.name} --image {s.image.name}`")
    if need_digest and not record.is_published():
        raise KilnError(f"no publish record for image '{s.image.name}' on {s.gpu.name}: this target pulls by digest",
                        str(path), f"smoke it, then {publish} (compose runs the local image id without one)")
    return ImageRecord(reference=record.reference(), published=record.is_published(), image_id=record.image_id,
                       size_bytes=record.size, run=folder.read_run(record.image_id))
