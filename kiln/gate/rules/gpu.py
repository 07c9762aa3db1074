"""Rules on the GPU profile: kernels the torch build carries, driver floor, VRAM for the models."""

from __future__ import annotations

from typing import Iterator

from kiln.data.subject import Subject
from kiln.gate.findings import ERROR, NOTE, WARNING, Finding

FP8_FACTOR = 0.5  # fp8 weights are half the bytes of bf16/fp16 ones
STAGED_ROLES = ("diffusion_model", "text_encoder")  # ComfyUI can hold one of these at a time


def _cc(text: str) -> tuple[int, int]:
    digits = text.replace("sm_", "").replace(".", "")
    return int(digits[:-1]), int(digits[-1])


def compute_capability_covered(s: Subject) -> Iterator[Finding]:
    cc = _cc(s.gpu.compute_capability)
    sass = sorted(_cc(x) for x in s.lock.stack.torch_sass)
    where = f"gpus.yaml profiles.{s.gpu.name}"
    if cc in sass:
        return
    same_major = [x for x in sass if x[0] == cc[0] and x[1] <= cc[1]]
    if same_major and not _newer_than(cc, sass):
        code = "sm_%d%d" % same_major[-1]
        yield Finding(NOTE, "compute-capability", where,
                      f"{s.gpu.display} is {s.gpu.sm}; torch {s.lock.stack.torch} has no {s.gpu.sm} kernels and runs "
                      f"its {code} code (binary compatible within a major version)")
        return
    yield Finding(ERROR, "compute-capability", where,
                  f"{s.gpu.display} is {s.gpu.sm}; torch {s.lock.stack.torch} carries SASS for "
                  f"{', '.join(s.lock.stack.torch_sass)} and {'PTX ' + ', '.join(s.lock.stack.torch_ptx) if s.lock.stack.torch_ptx else 'no PTX'}, "
                  "so every kernel fails with 'no kernel image is available for execution on the device'",
                  f"use a stack whose torch build lists {s.gpu.sm} (newer torch and CUDA)")


def _newer_than(cc: tuple[int, int], sass: list[tuple[int, int]]) -> bool:
    return cc[0] > sass[-1][0]


def driver_floor(s: Subject) -> Iterator[Finding]:
    st = s.lock.stack
    yield Finding(NOTE, "driver", f"versions.lock {s.lock.table('stack')}",
                  f"hosts need NVIDIA driver >= {st.driver_floor} for CUDA {st.cuda} (>= {st.driver_recommended} "
                  f"without minor-version compatibility); the image sets NVIDIA_REQUIRE_CUDA=\"{st.nvidia_require_cuda}\"")


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
