"""Run the check groups: time each check, turn exceptions into failures."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Callable, Iterable, List, Optional, Sequence

from . import (checks_comfyui, checks_compile, checks_gpu, checks_numerics, checks_perf,
               checks_versions, checks_workflow)
from .context import Context
from .deps import one_line
from .verdict import FAIL, Check

MODULES = (checks_versions, checks_gpu, checks_numerics, checks_perf, checks_compile,
           checks_comfyui, checks_workflow)
GROUPS = tuple(module.GROUP for module in MODULES)
# Groups that only mean something on a GPU: with --require-gpu and none visible they are failed
# without running (their CPU fallbacks, torch.compile above all, take minutes).
GPU_GROUPS = (checks_numerics.GROUP, checks_perf.GROUP, checks_compile.GROUP)


def selected_modules(only: Optional[Sequence[str]]) -> list:
    if not only:
        return list(MODULES)
    return [module for module in MODULES if module.GROUP in only]


def run_one(ctx: Context, group: str, name: str, fn: Callable[[Context], Check]) -> Check:
    started = time.perf_counter()
    try:
        check = fn(ctx)
    except Exception as exc:  # a crashing probe is a failed check, never a traceback
        check = Check(FAIL, measured="error", note=one_line(exc, limit=200))
    seconds = time.perf_counter() - started
    return dataclasses.replace(check, group=group, name=name, seconds=seconds)


def _release_gpu_memory(ctx: Context) -> None:
    if "torch" not in sys.modules or not ctx.has_gpu():
        return
    torch = ctx.torch
    if torch is not None:
        try:
            torch.cuda.empty_cache()
        except Exception:
            pass


def run_checks(ctx: Context, modules: Iterable) -> List[Check]:
    results = []
    for module in modules:
        for name, fn in module.CHECKS:
            results.append(run_one(ctx, module.GROUP, name, fn))
        _release_gpu_memory(ctx)
    return results


def run_requiring_gpu(ctx: Context, modules: Iterable) -> List[Check]:
    """--require-gpu: without a GPU, the GPU-only groups fail at once instead of running on the CPU."""
    if ctx.has_gpu():
        return run_checks(ctx, modules)
    modules = list(modules)
    reason = f"GPU required: {ctx.gpu_reason() or 'no GPU visible'}; not run"
    refused = [Check(FAIL, note=reason, group=m.GROUP, name=name, needs_gpu=True)
               for m in modules if m.GROUP in GPU_GROUPS for name, _ in m.CHECKS]
    return run_checks(ctx, [m for m in modules if m.GROUP not in GPU_GROUPS]) + refused
