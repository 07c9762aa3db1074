"""The ComfyUI launch line an image runs: toolkit-managed flags, then the profile's, then the spec's."""

from __future__ import annotations

from kiln.data.gpus import GpuProfile
from kiln.data.image import ImageSpec
from kiln.data.tables import FlagTable
from kiln.identity import EXTRA_MODEL_PATHS
MANAGED = ("--listen", "--port")  # derived from server.port; a spec may not set them itself


def managed_flags(image: ImageSpec) -> list[str]:
    return ["--listen", "0.0.0.0", "--port", str(image.port), "--extra-model-paths-config", EXTRA_MODEL_PATHS]


def profile_flags(gpu: GpuProfile, image: ImageSpec, table: FlagTable | None) -> list[str]:
    """VRAM mode and reserve from the profile, unless the spec picks from the same exclusive group."""
    group = table.group_of(gpu.serving.vram_mode) if table else ()
    chosen = [] if any(flag in group for flag in image.flags) else [gpu.serving.vram_mode]
    if "--reserve-vram" not in image.flags and gpu.serving.reserve_vram_gb > 0:
        chosen += ["--reserve-vram", f"{gpu.serving.reserve_vram_gb:g}"]
    return chosen


def launch_flags(gpu: GpuProfile, image: ImageSpec, table: FlagTable | None) -> list[str]:
    return managed_flags(image) + profile_flags(gpu, image, table) + list(image.flags)
