"""torch.compile works and, with --cache-dir, persists its caches there."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from typing import Any, Dict, Optional

from .context import Context
from .verdict import ERROR_BOUNDS, PASS, WARN, Check, error_verdict, skip

GROUP = "compile"

CACHE_SUBDIRS = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}


def cache_env(cache_dir: str) -> Dict[str, str]:
    return {var: os.path.join(cache_dir, sub) for var, sub in CACHE_SUBDIRS.items()}


def apply_cache_env(cache_dir: str) -> Dict[str, str]:
    """Point inductor and Triton at `cache_dir`; must run before torch is imported."""
    env = cache_env(os.path.abspath(cache_dir))
    for var, path in env.items():
        os.makedirs(path, exist_ok=True)
        os.environ[var] = path
    return env


def count_files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def c_compiler() -> Optional[str]:
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return name
    return None


def _why_not(ctx: Context) -> Optional[Check]:
    if ctx.torch is None:
        return skip(ctx.deps.reason("torch"))
    if ctx.has_gpu():
        if ctx.deps.get("triton") is None:
            return skip(f"inductor's GPU backend needs Triton: {ctx.deps.reason('triton')}")
        return None
    if c_compiler() is None:
        return skip(f"no GPU ({ctx.gpu_reason()}) and no C++ compiler for inductor's CPU backend",
                    needs_gpu=True)
    return None


def _mlp(torch: Any, device: str) -> Any:
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256)).to(device)


def _cache_note(ctx: Context) -> tuple:
    if not ctx.options.cache_dir:
        return PASS, "no --cache-dir given"
    env = cache_env(os.path.abspath(ctx.options.cache_dir))
    counts = {var: count_files(path) for var, path in env.items()}
    wanted = ["TORCHINDUCTOR_CACHE_DIR"] + (["TRITON_CACHE_DIR"] if ctx.has_gpu() else [])
    empty = [var for var in wanted if counts[var] == 0]
    note = ", ".join(f"{CACHE_SUBDIRS[var]} {n} files" for var, n in counts.items())
    if empty:
        return WARN, f"cache not written for {', '.join(empty)} ({note})"
    return PASS, f"cache under --cache-dir: {note}"


def check_torch_compile(ctx: Context) -> Check:
    skipped = _why_not(ctx)
    if skipped:
        skipped.expected = "matches eager"
        return skipped
    torch, device = ctx.torch, ctx.device
    model = _mlp(torch, device)
    x = torch.randn(64, 256, device=device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inductor's TF32 advice is not a finding here
        eager = model(x)
        started = time.perf_counter()
        out = torch.compile(model)(x)
        first_s = time.perf_counter() - started
    err, finite = _rel(torch, out, eager)
    err_verdict, err_note = error_verdict(err, ERROR_BOUNDS["mlp_fp32"], finite)
    cache_verdict, cache_note = _cache_note(ctx)
    verdict = err_verdict if err_verdict != PASS else cache_verdict
    note = f"{err_note} vs eager; first call {first_s:.1f} s on {device}; {cache_note}"
    return Check(verdict, measured="ok" if err_verdict == PASS else err_verdict,
                 expected="matches eager", note=note)


def _rel(torch: Any, out: Any, ref: Any) -> tuple:
    finite = bool(torch.isfinite(out).all().item())
    err = float(((out.double() - ref.double()).norm() / ref.double().norm()).item())
    return err, finite


CHECKS = [
    ("torch_compile", check_torch_compile),
]
