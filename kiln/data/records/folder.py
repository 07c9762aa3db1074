"""The build/ folder: the one place that knows where every rendered context and record lives, and reads
and writes the records as their models.

    build/<image>-<gpu>/                   rendered build context (`invoke render`, `invoke build`)
    build/<image>-<gpu>.build.json         build record (+ `published` from `invoke publish`)
    build/<image>-<gpu>-models/ , .build.json   the same with the model files baked in (--bake-models)
    build/<image>-<gpu>-<stack>/ , .build.json  the same built from another stack (--stack)
    build/smoke/<image id>.json            smoke record (`invoke smoke`), read by `invoke publish`
    build/run/<image id>.json              run record (`invoke run`), read by `invoke deploy`
    build/deploy/<image>-<gpu>[-cpu]/deploy.json   deployment record beside its targets (`invoke deploy`)
    build/<image>-<gpu>-portable/          a portable context (`invoke render --portable`)
    build/portable/<image>/                every profile's, with docker-bake.json (`... --all-gpus`)
    build/bases/<name>.json                base image record: its Debian packages (`invoke base`), read by `invoke build`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kiln.data.records.base import read_record, write_record
from kiln.data.records.base_image import BaseImageRecord
from kiln.data.records.build import BuildRecord, PublishFailure, Published
from kiln.data.records.run import RunRecord
from kiln.data.records.smoke import SmokeRecord
from kiln.errors import KilnError

BAKED_SUFFIX = "-models"    # folder and tag suffix of an image with its models baked in


@dataclass(frozen=True)
class RunWritten:
    path: Path
    kept: bool               # True: an earlier, more complete record was kept and this run not written
    kept_because: str = ""


def _by_id(image_id: str) -> str:
    return f"{image_id.removeprefix('sha256:')[:16]}.json"


@dataclass(frozen=True)
class BuildFolder:
    root: Path

    # -- where things are
    def context(self, image: str, gpu: str, baked: bool = False, stack: str | None = None) -> Path:
        """stack: the one `--stack` chose instead of the spec's (its context and record stand apart)."""
        return self.root / f"{image}-{gpu}{f'-{stack}' if stack else ''}{BAKED_SUFFIX if baked else ''}"

    def build_record(self, image: str, gpu: str, baked: bool = False, stack: str | None = None) -> Path:
        return self.root / f"{self.context(image, gpu, baked, stack).name}.build.json"

    def smoke_record(self, image_id: str) -> Path:
        return self.root / "smoke" / _by_id(image_id)

    def run_record(self, image_id: str) -> Path:
        return self.root / "run" / _by_id(image_id)

    def deploy_out(self, image: str, gpu: str, cpu_mode: bool = False, stack: str | None = None, gpus: int = 1) -> Path:
        """The CPU-mode compose file (and a --stack build's, and a --gpus N one's) gets its own folder, never
        replacing the single-GPU one."""
        many = f"-{gpus}gpus" if gpus > 1 else ""
        return self.root / "deploy" / f"{image}-{gpu}{f'-{stack}' if stack else ''}{many}{'-cpu' if cpu_mode else ''}"

    @property
    def balancer(self) -> Path:
        """`invoke balancer.render`'s default folder."""
        return self.root / "balancer"

    def portable(self, image: str, gpu: str | None = None) -> Path:
        """One profile's portable context, or (gpu None) the folder of every profile's with the build matrix."""
        return self.root / f"{image}-{gpu}-portable" if gpu else self.root / "portable" / image

    def base_record(self, name: str) -> Path:
        return self.root / "bases" / f"{name}.json"

    # -- build records
    def read_build(self, image: str, gpu: str, baked: bool = False, stack: str | None = None) -> BuildRecord | None:
        again = f"run `invoke build --gpu={gpu} --image {image}{f' --stack {stack}' if stack else ''}`"
        return read_record(BuildRecord, self.build_record(image, gpu, baked, stack), again)

    def _own_path(self, record: BuildRecord) -> Path:
        return self.build_record(record.image, record.gpu, stack=record.stack_override)

    def write_build(self, record: BuildRecord, baked: bool = False) -> Path:
        return write_record(record, self.build_record(record.image, record.gpu, baked, record.stack_override),
                            "the image is built, but its build record could not be written")

    def record_published(self, record: BuildRecord, published: Published) -> Path:
        done = record.model_copy(update={"published": published, "publish_failed": None})
        return write_record(done, self._own_path(record),
                            "published, but the build record could not be updated; note the references printed above")

    def record_publish_failure(self, record: BuildRecord, failure: PublishFailure) -> None:
        """The build record says this publish did not happen (an earlier one elsewhere stays recorded)."""
        write_record(record.model_copy(update={"publish_failed": failure}), self._own_path(record),
                     "the publish failed, and the build record could not say so")

    # -- base image records
    def read_base(self, name: str) -> BaseImageRecord | None:
        return read_record(BaseImageRecord, self.base_record(name), f"run `invoke base --name {name}`")

    def write_base(self, name: str, record: BaseImageRecord) -> Path:
        return write_record(record, self.base_record(name), "cannot write the base record")

    # -- smoke records
    def read_smoke(self, image_id: str, gpu: str, image: str) -> SmokeRecord | None:
        """The smoke record of this very image id, or None (a record of an earlier image of that name is not it)."""
        path = self.smoke_record(image_id)
        record = read_record(SmokeRecord, path, f"run `invoke smoke --gpu={gpu} --image {image}`", optional=True)
        return record if record and record.image_id == image_id else None

    def write_smoke(self, record: SmokeRecord) -> Path:
        return write_record(record, self.smoke_record(record.image_id), "cannot write the smoke record")

    # -- run records
    def read_run(self, image_id: str) -> RunRecord | None:
        path = self.run_record(image_id)
        record = read_record(RunRecord, path, "start the image again with `invoke run`", optional=True)
        return record if record and record.image_id == image_id else None

    def write_run(self, record: RunRecord) -> RunWritten:
        """A record is only replaced by a run that measured at least as much; a damaged one is replaced."""
        path = self.run_record(record.image_id)
        try:
            earlier = self.read_run(record.image_id)
        except KilnError:  # a damaged or older record is what this run writes again
            earlier = None
        if earlier and earlier.completeness() > record.completeness():
            return RunWritten(path, kept=True, kept_because=f"the earlier record is {earlier.describe()}, this was "
                                                            f"{record.describe()}")
        write_record(record, path, "the container is ready, but its run record could not be written")
        return RunWritten(path, kept=False)
