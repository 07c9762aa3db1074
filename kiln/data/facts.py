"""The facts an image carries about itself (/opt/kiln/kiln.json): what it pins, the GPU profile it was
made for, how it launches and where its cache is. Written at render time; read back from the image by
`invoke smoke` and `invoke report`, and by the in-image payload (which re-checks the keys it uses)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kiln.data.schema import Model


class Pins(Model):
    python: str
    torch: str
    cuda: str
    cudnn: str
    xformers: str
    comfyui: str


class ProfileFacts(Model):
    name: str
    display: str
    names: tuple[str, ...]  # the exact product names NVML may report for this card
    vram_gb: float
    bandwidth_gbs: float
    compute_capability: str
    tflops_fp16: float
    pcie_gen: int
    pcie_width: int
    pci_device_id: int | None = None
    measured_copy_tbs: float | None = None
    measured_matmul_tflops: float | None = None
    measured_attention_tflops: float | None = None
    measured_matmul_fp16_tflops: float | None = None
    measured_torch: str | None = None
    expected_latency_s: float | None = None   # steady p50 of the warm-up workflow (gpus.yaml serving)
    expected_latency_source: str | None = None
    expected_latency_confidence: str | None = None


class Launch(Model):
    port: int
    flags: tuple[str, ...]


class WarmupModel(Model):
    folder: str
    file: str


class WarmupFacts(Model):
    models: tuple[WarmupModel, ...]
    baked_models: str | None = None   # the image's own models folder, when `--bake-models` put them there
    runs: int = 2                     # workflow runs before ready
    steps: int | None = None          # sampler steps of those runs (None: the workflow's own)


class ImageFacts(Model):
    format: Literal[1] = Field(1, alias="schema")
    toolkit: str
    image: str
    lock_sha256: str
    pins: Pins
    comfyui_commit: str
    driver_floor: str
    driver_recommended: str
    torch_sass: tuple[str, ...]
    profile: ProfileFacts
    launch: Launch
    cache_mount: str
    warmup: WarmupFacts

    def to_json(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
