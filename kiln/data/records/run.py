"""The run record (build/run/<image id>.json): what `invoke run` measured from start to healthy, with the
warm-up's own timings. `invoke deploy` sizes start-up probes from it.

Runs differ in how much of a real start they measured: on a GPU or in CPU mode, with the warm-up
workflow run on the image's models or skipped because the cache had none. A record is only replaced
by a run that measured at least as much, so a quick model-less or CPU-mode try never erases the
timing of a complete GPU start."""

from __future__ import annotations

from pydantic import Field

from kiln.data.records.base import Record
from kiln.data.schema import Model


class Warmup(Model):
    """The JSON line the image's warm-up logs (provision/container/serve/warmup.py)."""
    server_s: float | None = None
    device_s: float | None = None
    workflow: str | None = None
    first_s: float | None = Field(None, description="first run of the warm-up workflow; absent when it did not run")
    second_s: float | None = Field(None, description="second run, where the image's warm-up runs the workflow twice")
    runs: int | None = Field(None, description="workflow runs the warm-up made")
    steps: int | None = Field(None, description="sampler steps of the warm-up's runs (absent: the workflow's own)")
    total_s: float | None = None
    start_to_warm_s: float | None = Field(None, description="from the start script's first line to ready")

    @classmethod
    def from_log(cls, line: dict) -> "Warmup":
        """From the warm-up's log line: the timings this kiln knows (an image may log more)."""
        return cls.model_validate({k: v for k, v in line.items() if k in cls.model_fields})


class RunRecord(Record):
    image_id: str
    tag: str
    seconds_to_healthy: float
    warmup: Warmup
    cpu_mode: bool

    def ran_workflow(self) -> bool:
        """The warm-up ran the image's workflow (so its models were loaded): it timed a first run."""
        return self.warmup.first_s is not None and self.warmup.first_s > 0

    def completeness(self) -> tuple[bool, bool]:
        """Ordered: a GPU run beats a CPU-mode run; then a run of the workflow beats one without it."""
        return (not self.cpu_mode, self.ran_workflow())

    def describe(self) -> str:
        mode = "a CPU-mode run" if self.cpu_mode else "a GPU run"
        return mode + (" that ran the warm-up workflow" if self.ran_workflow() else " without the warm-up workflow")
