"""Preparing the host an image runs on: the cache folder on fast local disk, made by
provision/host/cache.sh (which also works without the toolkit), then checked as `invoke run` will."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import KilnError
from kiln.identity import UID
from kiln.paths import mounted_cache


@dataclass(frozen=True)
class CacheReport:
    said: str       # what the script reported (NVMe or not, folders made)
    warnings: str


def prepare_cache(script: Path, path: Path) -> CacheReport:
    try:
        result = subprocess.run(["sh", str(script), str(path), str(UID)], text=True, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KilnError(f"cannot run {script.name} ({exc})", str(path), "run it by hand: sh provision/host/cache.sh DIR")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["cache set-up failed"])[-1].removeprefix("cache: ")
        raise KilnError(last, str(path), "give a directory path on a local disk (run as root to set owners)")
    mounted_cache(str(path), "--path")
    return CacheReport(said=result.stdout, warnings=result.stderr)
