"""GPU profiles (gpus.yaml) and the lookup of a user's spelling of a card."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat

from kiln.data.files import read_yaml
from kiln.data.schema import Model, validate
from kiln.errors import KilnError

_NOISE = ("nvidia", "geforce", "rtx")
VramMode = Literal["--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram"]


class LatencyExpectation(Model):
    seconds: PositiveFloat = Field(description="steady p50, end to end through the server's HTTP API (seconds)")
    confidence: Literal["measured", "estimated"] = Field(
        description="measured on this card (over budget fails smoke) or estimated from another (over budget warns)")
    source: str = Field(min_length=1, description="the run or the formula it comes from")


class Serving(Model):
    vram_mode: VramMode = Field(description="ComfyUI's VRAM mode flag on this card")
    reserve_vram_gb: float = Field(ge=0, description="VRAM left free for the driver and other programs (GB)")
    resolution: int = Field(ge=256, le=4096, multiple_of=64,
                            description="side of the square image the warm-up renders on this card (pixels)")
    expected_latency: dict[str, LatencyExpectation] = Field(
        {}, description="per image spec name: the steady p50 of its warm-up workflow at this resolution on a "
                        "healthy card; `invoke smoke` judges a run against it plus the slack in thresholds.json")


class StackServing(Model):
    """Serving on this card from one named stack, where it differs from the profile's serving."""

    vram_mode: VramMode | None = None
    reserve_vram_gb: float | None = Field(None, ge=0)
    resolution: int | None = Field(None, ge=256, le=4096, multiple_of=64)
    expected_latency: dict[str, LatencyExpectation] | None = None


class ServingOverride(StackServing):
    stacks: dict[str, StackServing] = Field(
        {}, description="per stack name in versions.lock: what differs when the image is built from that stack")


class Pcie(Model):
    gen: int = Field(ge=1, le=7)
    width: Literal[1, 2, 4, 8, 16]


class Measured(Model):
    """What the card reaches in practice (measured): the smoke probes' reference ceilings."""

    copy_tbs: PositiveFloat | None = None
    matmul_tflops: PositiveFloat | None = None          # bf16
    matmul_fp16_tflops: PositiveFloat | None = None
    attention_tflops: PositiveFloat | None = None
    torch: str | None = Field(None, pattern=r"^\d+\.\d+$", description="the torch release (major.minor) they were "
                              "measured with; other releases are judged against the spec sheet")


class Marketplaces(Model):
    """How GPU marketplaces name this card (their own identifiers, not NVML's)."""

    runpod_gpu_id: str | None = Field(None, description="RunPod GPU type id (docs.runpod.io/references/gpu-types)")
    runpod_pool: str | None = Field(None, description="RunPod GPU pool id for Hub listings (same page, GPU pools)")
    vast_gpu_name: str | None = Field(None, description="Vast.ai offer filter value gpu_name")


class GpuEntry(Model):
    display: str = Field(description="the product name NVML reports")
    aliases: tuple[str, ...] = Field((), description="other spellings for --gpu (rtx4090, ...); not card names")
    nvml_names: tuple[str, ...] = Field((), description="other exact NVML product names of this same card")
    pci_device_id: int | None = Field(None, description="NVML pciDeviceId (device << 16 | 0x10de), when recorded")
    vram_gb: PositiveFloat
    bandwidth_gbs: PositiveFloat
    compute_capability: str = Field(pattern=r"^\d+\.\d$", description="a compute capability written major.minor, like 8.9")
    tflops_fp16: PositiveFloat = Field(description="dense fp16/bf16 tensor TFLOPS, fp32 accumulate, no sparsity")
    pcie: Pcie
    confidence: Literal["sourced", "calculated", "from-memory", "assumed"]
    serving: ServingOverride = ServingOverride()
    measured: Measured = Measured()
    product_label: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
                                      description="the nvidia.com/gpu.product node label GPU Feature Discovery sets "
                                                  "for this card (NVML name, spaces as hyphens)")
    marketplaces: Marketplaces = Marketplaces()


class Defaults(Model):
    serving: Serving


class GpusFile(Model):
    defaults: Defaults
    profiles: dict[str, GpuEntry] = Field(min_length=1)


class GpuProfile(GpuEntry):
    """One profile with its name and the serving defaults filled in."""

    name: str
    serving: Serving  # type: ignore[assignment]
    serving_stacks: dict[str, StackServing] = {}

    def on_stack(self, stack: str) -> "GpuProfile":
        """This profile with the serving values of `stack` in place of the profile's own."""
        changed = self.serving_stacks.get(stack)
        if changed is None:
            return self
        values = {**self.serving.model_dump(), **changed.model_dump(exclude_none=True)}
        # per image: an image the stack does not name keeps the profile's own figure
        values["expected_latency"] = {**self.serving.model_dump()["expected_latency"],
                                      **changed.model_dump(exclude_none=True).get("expected_latency", {})}
        return self.model_copy(update={"serving": Serving(**values)})

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")


def load_gpus(path: Path, shown: str = "") -> dict[str, GpuProfile]:
    file = validate(GpusFile, read_yaml(path), path, shown)
    profiles = {str(name): _profile(str(name), entry, file.defaults.serving) for name, entry in file.profiles.items()}
    _spellings_are_unique(profiles, shown or str(path))
    return profiles


def _spellings_are_unique(profiles: dict[str, "GpuProfile"], where: str) -> None:
    owner: dict[str, str] = {}
    for profile in profiles.values():
        for spelling in {normalize(n) for n in (profile.name, profile.display, *profile.aliases)}:
            if owner.setdefault(spelling, profile.name) != profile.name:
                raise KilnError(f"the spelling '{spelling}' names both profiles {owner[spelling]} and {profile.name}",
                                where, "keep each alias in one profile only")


def _profile(name: str, entry: GpuEntry, defaults: Serving) -> GpuProfile:
    own = entry.serving.model_dump(exclude_none=True, exclude={"stacks"})
    serving = Serving(**{**defaults.model_dump(), **own})
    return GpuProfile(**{**entry.model_dump(), "name": name, "serving": serving,
                         "serving_stacks": entry.serving.stacks})


def normalize(spelling: str) -> str:
    text = re.sub(r"[\s_\-]+", "", spelling.lower())
    for word in _NOISE:
        text = text.replace(word, "")
    return text


def find_gpu(profiles: dict[str, GpuProfile], spelling: str) -> GpuProfile:
    """The profile a user means by '4090', 'rtx4090', 'RTX 4090', 'NVIDIA GeForce RTX 4090'..."""
    wanted = normalize(spelling)
    for profile in profiles.values():
        names = (profile.name, profile.display, *profile.aliases)
        if wanted and any(normalize(n) == wanted for n in names):
            return profile
    raise KilnError(f"unknown GPU '{spelling}'", "--gpu", f"use one of: {', '.join(profiles)}")
