"""Where the server finds the image's model files: the cache's models/ folder, and the image's own
folder when they were baked in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List


def model_roots(facts: Dict[str, Any], models_root: Path) -> List[Path]:
    """Where the server finds model files: the cache's models/, and the image's own models folder when the
    files were baked into it (`invoke build --bake-models`)."""
    baked = facts.get("warmup", {}).get("baked_models")
    return [models_root] + ([Path(baked)] if baked else [])


def missing_models(facts: Dict[str, Any], models_root: Path) -> List[str]:
    roots = model_roots(facts, models_root)
    return [f"{m['folder']}/{m['file']}" for m in facts.get("warmup", {}).get("models", [])
            if not any((root / m["folder"] / m["file"]).is_file() for root in roots)]
