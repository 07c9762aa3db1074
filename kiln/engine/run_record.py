"""What `invoke run` measured, kept per image id (build/run/<id>.json): seconds from start to healthy
and the warm-up's own timings. `invoke deploy` sizes start-up probes from it.

Runs differ in how much of a real start they measured: on a GPU or in CPU mode, with the warm-up
workflow run on the image's models or skipped because the cache had none. A record is only replaced
by a run that measured at least as much, so a quick model-less or CPU-mode try never erases the
timing of a complete GPU start."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import KilnError


@dataclass(frozen=True)
class Written:
    path: Path
    kept: bool               # True: an earlier, more complete record was kept and this run not written
    kept_because: str = ""


def run_record_path(records: Path, image_id: str) -> Path:
    return records / f"{image_id.removeprefix('sha256:')[:16]}.json"


def ran_workflow(record: dict) -> bool:
    """The warm-up ran the image's workflow (so its models were loaded): it timed a first run."""
    warmup = record.get("warmup")
    first = warmup.get("first_s") if isinstance(warmup, dict) else None
    return isinstance(first, (int, float)) and not isinstance(first, bool) and first > 0


def completeness(record: dict) -> tuple[bool, bool]:
    """Ordered: a GPU run beats a CPU-mode run; then a run of the workflow beats one without it."""
    return (not record.get("cpu_mode", True), ran_workflow(record))


def describe(record: dict) -> str:
    mode = "a CPU-mode run" if record.get("cpu_mode", True) else "a GPU run"
    return mode + (" that ran the warm-up workflow" if ran_workflow(record) else " without the warm-up workflow")


def write_run_record(records: Path, image_id: str, tag: str, seconds_to_healthy: float, warmup: dict,
                     cpu_mode: bool) -> Written:
    record = {"image_id": image_id, "tag": tag, "seconds_to_healthy": seconds_to_healthy, "warmup": warmup,
              "cpu_mode": cpu_mode}
    path = run_record_path(records, image_id)
    earlier = read_run_record(records, image_id)
    if earlier and completeness(earlier) > completeness(record):
        return Written(path, kept=True, kept_because=f"the earlier record is {describe(earlier)}, this was "
                                                     f"{describe(record)}")
    staging = path.with_name(f".{path.name}.tmp")
    try:
        records.mkdir(parents=True, exist_ok=True)
        staging.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(staging, path)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise KilnError(f"the container is ready, but its run record could not be written ({exc.strerror})",
                        str(records), "check the build folder") from None
    return Written(path, kept=False)


def read_run_record(records: Path, image_id: str) -> dict | None:
    try:
        record = json.loads(run_record_path(records, image_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("image_id") == image_id else None
