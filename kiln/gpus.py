"""GPU profiles from gpus.yaml and the lookup of a user's spelling of a card."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import KilnError
from .loading import Fields, read_yaml

_NOISE = ("nvidia", "geforce", "rtx")


@dataclass(frozen=True)
class Serving:
    vram_mode: str
    reserve_vram_gb: float
    resolution: int


@dataclass(frozen=True)
class GpuProfile:
    name: str
    display: str
    aliases: tuple[str, ...]
    vram_gb: float
    bandwidth_gbs: float
    compute_capability: str
    tflops_fp16: float
    pcie_gen: int
    pcie_width: int
    confidence: str
    serving: Serving
    measured: dict[str, float]

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")


def load_gpus(path: Path) -> dict[str, GpuProfile]:
    top = Fields(read_yaml(path), str(path))
    defaults = top.sub("defaults").sub("serving")
    profiles = top.sub("profiles")
    return {str(name): _profile(str(name), profiles.sub(name), defaults) for name in profiles.keys()}


def _profile(name: str, f: Fields, defaults: Fields) -> GpuProfile:
    cc = f.get("compute_capability", str)
    if not re.fullmatch(r"\d+\.\d", cc):
        raise KilnError(f"profiles.{name}.compute_capability '{cc}' is not like '8.9'", f.where, "write major.minor")
    serving = {**defaults.data, **f.sub("serving", {}).data}
    s = Fields(serving, f.where, f"profiles.{name}.serving")
    pcie = f.sub("pcie")
    return GpuProfile(
        name=name, display=f.get("display", str), aliases=f.strings("aliases", ()),
        vram_gb=f.get("vram_gb", float), bandwidth_gbs=f.get("bandwidth_gbs", float), compute_capability=cc,
        tflops_fp16=f.get("tflops_fp16", float), pcie_gen=pcie.get("gen", int), pcie_width=pcie.get("width", int),
        confidence=f.get("confidence", str),
        serving=Serving(vram_mode=s.get("vram_mode", str), reserve_vram_gb=s.get("reserve_vram_gb", float),
                        resolution=s.get("resolution", int)),
        measured={k: float(v) for k, v in f.get("measured", dict, {}).items()})


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
