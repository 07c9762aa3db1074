"""Stand-in records, as `invoke build`, `invoke publish` and `invoke run` write them, for tests of the
stages that read them (deploy) without building or publishing anything. Written through the real
BuildFolder, so they are exactly the shape the readers get."""

from __future__ import annotations

from pathlib import Path

from kiln.data.records.build import BakedModels, BuildRecord, Published, WheelsUsed
from kiln.data.records.folder import BuildFolder, RunWritten
from kiln.data.records.run import RunRecord, Warmup
from kiln.identity import image_tags
from kiln.project import Project

DIGEST = "sha256:" + "a" * 64
IMAGE_ID = "sha256:" + "1" * 64
REGISTRY = "registry.example:5000/team"


def build_record(root: Path, gpu: str, image: str = "comfyui", published: bool = True,
                 stack: str | None = None, registry: str = REGISTRY, digest: str = DIGEST) -> BuildRecord:
    s = Project(root).subject(gpu, image, stack)
    done = Published(references=(f"{registry}/kiln/{s.image.name}@{digest}",), artifacts={}, smoke="forced",
                     provenance_signed_by="unsigned") if published else None
    return BuildRecord(image_id=IMAGE_ID, tags=tuple(image_tags(s)), size=6_000_000_000, layers=(), durations={},
                       gpu=s.gpu.name, image=s.image.name, stack_override=stack, base="kiln-base:test", base_id="sha256:" + "b" * 64,
                       base_packages=(), wheels=WheelsUsed(downloaded=0, downloaded_bytes=0, reused=0),
                       started="2026-01-01T00:00:00+00:00", finished="2026-01-01T00:05:00+00:00",
                       models=BakedModels(baked=False), published=done)


def write_build_record(root: Path, gpu: str, image: str = "comfyui", published: bool = True,
                       stack: str | None = None, registry: str = REGISTRY, digest: str = DIGEST) -> Path:
    return BuildFolder(root / "build").write_build(build_record(root, gpu, image, published, stack, registry, digest))


def write_run_record(root: Path, tag: str, seconds: float, warmup: dict, cpu_mode: bool) -> RunWritten:
    record = RunRecord(image_id=IMAGE_ID, tag=tag, seconds_to_healthy=seconds, warmup=Warmup.from_log(warmup),
                       cpu_mode=cpu_mode)
    return BuildFolder(root / "build").write_run(record)
