"""What `invoke run` measured, kept per image id (build/run/<id>.json): seconds from start to healthy
and the warm-up's own timings. `invoke deploy` sizes start-up probes from it."""

from __future__ import annotations

import json
from pathlib import Path

from kiln.errors import KilnError


def run_record_path(records: Path, image_id: str) -> Path:
    return records / f"{image_id.removeprefix('sha256:')[:16]}.json"


def write_run_record(records: Path, image_id: str, tag: str, seconds_to_healthy: float, warmup: dict,
                     cpu_mode: bool) -> Path:
    record = {"image_id": image_id, "tag": tag, "seconds_to_healthy": seconds_to_healthy, "warmup": warmup,
              "cpu_mode": cpu_mode}
    path = run_record_path(records, image_id)
    try:
        records.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise KilnError(f"the container is ready, but its run record could not be written ({exc.strerror})",
                        str(records), "check the build folder") from None
    return path


def read_run_record(records: Path, image_id: str) -> dict | None:
    try:
        record = json.loads(run_record_path(records, image_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("image_id") == image_id else None
