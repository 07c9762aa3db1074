"""What one image build is about: the lock, the GPU profile, the image spec and the flag table of the
pinned ComfyUI. The gate checks it, render writes it out, the engine builds and runs it."""

from __future__ import annotations

from dataclasses import dataclass

from kiln.data.gpus import GpuProfile
from kiln.data.image import ImageSpec
from kiln.data.lock import Lock
from kiln.data.tables import FlagTable


@dataclass(frozen=True)
class Subject:
    lock: Lock
    gpu: GpuProfile
    image: ImageSpec
    flags: FlagTable | None
