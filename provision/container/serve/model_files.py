"""Where the server finds the image's model files: the cache's models/ folder, and the image's own
folder when they were baked in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def model_roots(facts: Dict[str, Any], models_root: Path) -> List[Path]:
    """Where the server finds model files: the cache's models/, and the image's own models folder when the
    files were baked into it (`invoke build --bake-models`)."""
    baked = facts.get("warmup", {}).get("baked_models")
    return [models_root] + ([Path(baked)] if baked else [])


def missing_models(facts: Dict[str, Any], models_root: Path) -> List[str]:
    roots = model_roots(facts, models_root)
    return [f"{m['folder']}/{m['file']}" for m in facts.get("warmup", {}).get("models", [])
            if not any((root / m["folder"] / m["file"]).is_file() for root in roots)]


def arriving(marker: Optional[Path], boot_id: Path = BOOT_ID) -> bool:
    """A deployment's fetch runs beside this server: its marker is there and names this boot (one left by an
    earlier boot, whose fetch was cut, is never waited on)."""
    try:
        return marker is not None and marker.read_text().strip() == boot_id.read_text().strip() != ""
    except OSError:
        return False


def wait_for_fetch(marker: Optional[Path], poll_s: float = 0.5) -> None:
    """Until the deployment's fetch ended (its marker gone), however long it takes: the fetch verifies every
    file, the ones already there included (an older file of the same name is replaced), and removes the
    marker after the last, so no file is read before it is the verified one."""
    while arriving(marker):
        time.sleep(poll_s)
