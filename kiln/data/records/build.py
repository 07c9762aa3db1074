"""The build record (build/<image>-<gpu>[-models].build.json): what `invoke build` made, from what, how
long it took; `invoke publish` adds where the image went (or why it did not)."""

from __future__ import annotations

from pydantic import Field

from kiln.data.records.base import Record
from kiln.data.schema import Model


class Layer(Model):
    created_by: str
    size: int


class Step(Model):
    step: int
    of: int
    instruction: str
    seconds: float | None = None


class WheelsUsed(Model):
    downloaded: int
    downloaded_bytes: int
    reused: int


class BakedModelFile(Model):
    folder: str
    file: str
    size: int
    sha256: str


class BakedModels(Model):
    baked: bool
    source: str | None = Field(None, alias="from", description="the cache the files were baked from")
    path: str | None = None
    files: tuple[BakedModelFile, ...] = ()


class Published(Model):
    """Written by `invoke publish` once the registry serves the image at its digest."""
    references: tuple[str, ...] = Field(description="name@sha256:... for every pushed tag")
    artifacts: dict[str, str]
    smoke: str = Field(description="what the smoke requirement found, or that it was forced")
    provenance_signed_by: str


class PublishFailure(Model):
    target: str
    error: str


class BuildRecord(Record):
    image_id: str
    tags: tuple[str, ...]
    size: int
    layers: tuple[Layer, ...]
    durations: dict[str, float]
    steps: tuple[Step, ...] = ()
    source: str = ""
    verified_source: bool = True
    gpu: str
    image: str
    stack_override: str | None = Field(None, description="the stack --stack chose instead of the spec's")
    base: str
    base_id: str
    base_packages: tuple[str, ...]
    wheels: WheelsUsed
    started: str
    finished: str
    models: BakedModels
    published: Published | None = None
    publish_failed: PublishFailure | None = None

    def is_published(self) -> bool:
        return self.published is not None and bool(self.published.references)

    def reference(self) -> str:
        """What a deployment runs: the published digest reference, else the local image id."""
        return self.published.references[0] if self.is_published() else self.image_id
