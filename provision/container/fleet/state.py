"""The server's own state, from the files the container's start-up and shutdown write: the warm-up's ready
marker (its timings inside) or failure reason, and the drain marker a shutdown writes first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict


@dataclass(frozen=True)
class Markers:
    ready: Path
    failed: Path
    drain: Path

    def warmed(self) -> bool:
        return self.ready.is_file()

    def draining(self) -> bool:
        return self.drain.exists()

    def failure(self) -> str:
        try:
            return self.failed.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def warmup_seconds(self) -> Dict[str, float]:
        """The warm-up's timings by phase (its *_s numbers, without the suffix), once it is done."""
        try:
            result = json.loads(self.ready.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(result, dict):
            return {}
        return {key[:-2]: float(value) for key, value in result.items()
                if key.endswith("_s") and isinstance(value, (int, float)) and not isinstance(value, bool)}

    def not_ready_because(self) -> str:
        """'' when the server should take new prompts, else why not."""
        if self.draining():
            return "draining: finishing the prompts it has, taking no new ones"
        if not self.warmed():
            return self.failure() or "warming up"
        return ""
