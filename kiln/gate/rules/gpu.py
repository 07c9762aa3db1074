"""Rules on the GPU profile: kernels the torch build carries, driver floor, VRAM for the models."""

from __future__ import annotations

from typing import Iterator

from packaging.version import Version

from kiln.data.subject import Subject
from kiln.data.tables import cuda_driver
from kiln.gate.findings import ERROR, NOTE, WARNING, Finding
from kiln.gate.kernels import COMPATIBLE, runs_as, stacks_running

FP8_FACTOR = 0.5  # fp8 weights are half the bytes of bf16/fp16 ones
STAGED_ROLES = ("diffusion_model", "text_encoder")  # ComfyUI can hold one of these at a time


def compute_capability_covered(s: Subject) -> Iterator[Finding]:
    st, where = s.lock.stack, f"gpus.yaml profiles.{s.gpu.name}"
    found = runs_as(st, s.gpu.compute_capability)
    if found and found[0] == COMPATIBLE:
        yield Finding(NOTE, "compute-capability", where,
                      f"{s.gpu.display} is {s.gpu.sm}; torch {st.torch} has no {s.gpu.sm} kernels and runs "
                      f"its {found[1]} code (binary compatible within a major version)")
    if found:
        return
    ptx = "PTX " + ", ".join(st.torch_ptx) if st.torch_ptx else "no PTX"
    yield Finding(ERROR, "compute-capability", where,
                  f"{s.gpu.display} is {s.gpu.sm}; torch {st.torch} (stack '{s.lock.name}') carries SASS for "
                  f"{', '.join(st.torch_sass)} and {ptx}, no {s.gpu.sm}, so every kernel fails with 'no kernel image "
                  "is available for execution on the device'", _kernel_fix(s))


def _kernel_fix(s: Subject) -> str:
    others = [name for name in stacks_running(s.lock.stacks, s.gpu.compute_capability) if name != s.lock.name]
    if not others:
        return f"add a stack to versions.lock whose torch build lists {s.gpu.sm} (newer torch and CUDA)"
    entry = s.lock.stacks[others[0]]
    return (f"pass --stack {others[0]} (torch {entry.stack.torch}, CUDA {entry.stack.cuda}, ComfyUI "
            f"{entry.comfyui.version}: its torch lists {s.gpu.sm})")


def driver_floor(s: Subject) -> Iterator[Finding]:
    st = s.lock.stack
    yield Finding(NOTE, "driver", f"versions.lock {s.lock.table('stack')}",
                  f"hosts need NVIDIA driver >= {st.driver_floor} for CUDA {st.cuda} (>= {st.driver_recommended} "
                  f"without minor-version compatibility); the image sets NVIDIA_REQUIRE_CUDA=\"{st.nvidia_require_cuda}\"")


def driver_floor_runs_cuda(s: Subject) -> Iterator[Finding]:
    st = s.lock.stack
    need = cuda_driver(st.cuda)
    if need is None:
        yield Finding(WARNING, "driver", f"versions.lock {s.lock.table('stack')}.cuda",
                      f"no driver table entry for CUDA {st.cuda}; the driver floor is not checked",
                      "add its major to kiln/data/tables/cuda_drivers.yaml")
    elif Version(st.driver_floor) < Version(need.driver):
        yield Finding(ERROR, "driver", f"versions.lock {s.lock.table('stack')}.driver_floor",
                      f"driver_floor {st.driver_floor} is below what the CUDA {st.cuda} runtime needs: NVIDIA driver "
                      f">= {need.driver} ({need.branch}); hosts between the two would start the image and fail at "
                      "the first CUDA call", f"set driver_floor to {need.driver} or later")


def vram_fits_models(s: Subject) -> Iterator[Finding]:
    if not s.image.models:
        return
    usable = s.gpu.vram_gb - s.gpu.serving.reserve_vram_gb
    resident = s.image.weights_gb + s.image.working_gb
    staged = _staged(s, 1.0)
    where = f"{s.image.where} models"
    need = f"{s.image.title} needs {resident:.1f} GB with every model resident, {staged:.1f} GB with the text " \
           f"encoder swapped out after encoding; {s.gpu.display} has {usable:.1f} GB usable"
    if resident <= usable:
        return
    if staged <= usable:
        yield Finding(WARNING, "vram", where, need + "; ComfyUI will swap models each request (slower than resident)",
                      f"accept it, or use a card with at least {resident + s.gpu.serving.reserve_vram_gb:.0f} GB")
        return
    yield Finding(ERROR, "vram", where, need, _what_fits(s, usable, resident))


def _staged(s: Subject, factor: float) -> float:
    staged = [m.size_gb * factor for m in s.image.models if m.role in STAGED_ROLES]
    rest = [m.size_gb for m in s.image.models if m.role not in STAGED_ROLES]
    return max(staged, default=0.0) + sum(rest) + s.image.working_gb


def _what_fits(s: Subject, usable: float, resident: float) -> str:
    fp8 = _staged(s, FP8_FACTOR)
    options = []
    if fp8 <= usable:
        options.append(f"fp8 weights (--fp8_e4m3fn-unet --fp8_e4m3fn-text-enc) with the text encoder swapped "
                       f"out need about {fp8:.1f} GB and fit, at some quality cost")
    staged_card = _staged(s, 1.0) + s.gpu.serving.reserve_vram_gb
    options.append(f"a card with at least {staged_card:.0f} GB runs bf16 with swapping, "
                   f"{resident + s.gpu.serving.reserve_vram_gb:.0f} GB keeps everything resident")
    return "; ".join(options)
