"""Throughput probes against the profile: copy bandwidth, matmul, attention."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from .context import Context
from .nvml import clock_state
from .timing import best_ms
from .verdict import XFORMERS_SLOWDOWN_WARN, Check, probe_expected, probe_verdict, skip, speed_ratio_verdict

GROUP = "perf"

GIB = 1 << 30
COPY_BYTES = 2 * GIB          # per buffer; a copy reads and writes this much
COPY_ITERS, COPY_RUNS = 20, 7
MATMUL_N = 8192               # 2*n^3 = 1.1 TFLOP per product
MATMUL_ITERS, MATMUL_RUNS = 10, 10
# DiT at 1024x1024: 64x64 latent patches = 4096 tokens, 24 heads of 128
DIT_SHAPE = (1, 24, 4096, 128)
ATTN_ITERS, ATTN_RUNS = 20, 5
WARMUP_S = 0.3


def _gpu_torch(ctx: Context, expected: Any = None) -> Tuple[Optional[Any], Optional[Check]]:
    if not ctx.has_gpu():
        return None, skip(ctx.gpu_reason() or "no GPU", expected=expected, needs_gpu=True)
    return ctx.torch, None


def ceiling(ctx: Context, key: str, scale: float = 1.0) -> Tuple[Optional[float], str]:
    """The profile's measured ceiling for a probe, when it was measured with this torch release; kernels
    differ between releases, so another release is judged against the spec sheet (and says so)."""
    value = ctx.profile.get(key)
    if not value:
        return None, ""
    measured_with = ctx.profile.get("measured_torch")
    running = release(getattr(ctx.torch, "__version__", "")) if ctx.has_gpu() else ""
    if measured_with and running and running != measured_with:
        return None, f"ceiling measured with torch {measured_with}, this is {running}: judged against the spec sheet"
    return float(value) * scale, ""


def release(version: str) -> str:
    """'2.3.1+cu121' -> '2.3'."""
    return ".".join(version.split("+")[0].split(".")[:2])


def copy_buffer_bytes(free_bytes: int, wanted: int = COPY_BYTES) -> int:
    """Two buffers must fit in half the free memory."""
    size = min(wanted, free_bytes // 4)
    return max(size - size % (1 << 20), 1 << 20)


def check_copy_bandwidth(ctx: Context) -> Check:
    spec, (top, why) = float(ctx.profile["bandwidth_gbs"]), ceiling(ctx, "measured_copy_tbs", 1000.0)
    expected = probe_expected(spec, top, "copy")
    torch, skipped = _gpu_torch(ctx, expected)
    if skipped:
        return skipped
    free, _ = torch.cuda.mem_get_info()
    nbytes = copy_buffer_bytes(free)
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms = best_ms(torch, lambda: dst.copy_(src), COPY_ITERS, COPY_RUNS, WARMUP_S)
    gbs = 2 * nbytes / (ms * 1e-3) / 1e9
    verdict, note = probe_verdict(gbs, spec, top, "copy")
    note = _joined(note, why, f"{nbytes / GIB:.2f} GiB buffers, read+write counted")
    return Check(verdict, measured=round(gbs, 1), expected=expected, unit="GB/s", note=note)


CEILING_KEYS = {"bfloat16": "measured_matmul_tflops", "float16": "measured_matmul_fp16_tflops"}


def _joined(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _matmul(ctx: Context, dtype_name: str) -> Check:
    spec, (top, why) = float(ctx.profile["tflops_fp16"]), ceiling(ctx, CEILING_KEYS[dtype_name])
    expected = probe_expected(spec, top, "matmul")
    torch, skipped = _gpu_torch(ctx, expected)
    if skipped:
        return skipped
    dtype, n = getattr(torch, dtype_name), MATMUL_N
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    c = torch.empty(n, n, device="cuda", dtype=dtype)
    ms = best_ms(torch, lambda: torch.matmul(a, b, out=c), MATMUL_ITERS, MATMUL_RUNS, WARMUP_S)
    clocks = _clock_note(ctx)
    tflops = 2 * n ** 3 / (ms * 1e-3) / 1e12
    verdict, note = probe_verdict(tflops, spec, top, "matmul")
    note = _joined(note, why, f"{n}^3 random, best of {MATMUL_RUNS}x{MATMUL_ITERS}, {ms:.3f} ms{clocks}")
    return Check(verdict, measured=round(tflops, 1), expected=expected, unit="TFLOPS", note=note)


def _clock_note(ctx: Context) -> str:
    try:
        state = clock_state(ctx.deps.get("pynvml"), ctx.torch_uuid())
    except Exception:
        return ""
    return f"; after: {state}" if state else ""


def check_matmul_fp16(ctx: Context) -> Check:
    return _matmul(ctx, "float16")


def check_matmul_bf16(ctx: Context) -> Check:
    return _matmul(ctx, "bfloat16")


def attention_flops(batch: int, heads: int, tokens: int, dim: int) -> float:
    """QK^T and PV: two (tokens x tokens x dim) products per head."""
    return 4.0 * batch * heads * tokens * tokens * dim


def _dit_qkv(torch: Any, layout: str = "bhsd") -> Tuple[Any, Any, Any]:
    batch, heads, tokens, dim = DIT_SHAPE
    shape = (batch, heads, tokens, dim) if layout == "bhsd" else (batch, tokens, heads, dim)
    return tuple(torch.randn(*shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))


def _sdpa_ms(torch: Any) -> float:
    q, k, v = _dit_qkv(torch)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return best_ms(torch, lambda: sdpa(q, k, v), ATTN_ITERS, ATTN_RUNS, WARMUP_S)


def check_attention_dit(ctx: Context) -> Check:
    spec, (top, why) = float(ctx.profile["tflops_fp16"]), ceiling(ctx, "measured_attention_tflops")
    expected = probe_expected(spec, top, "attention")
    torch, skipped = _gpu_torch(ctx, expected)
    if skipped:
        return skipped
    ms = _sdpa_ms(torch)
    tflops = attention_flops(*DIT_SHAPE) / (ms * 1e-3) / 1e12
    verdict, note = probe_verdict(tflops, spec, top, "attention")
    note = _joined(f"SDPA bf16 {DIT_SHAPE} (B,H,S,D) in {ms:.3f} ms", note, why)
    return Check(verdict, measured=round(tflops, 1), expected=expected, unit="TFLOPS", note=note)


def check_xformers_vs_sdpa(ctx: Context) -> Check:
    expected = f">= {1 / XFORMERS_SLOWDOWN_WARN:.2f}"
    torch, skipped = _gpu_torch(ctx, expected)
    if skipped:
        return skipped
    xops = ctx.deps.get("xformers.ops")
    if xops is None:
        return skip(ctx.deps.reason("xformers.ops"), expected=expected)
    q, k, v = _dit_qkv(torch, layout="bshd")
    attn = xops.memory_efficient_attention
    x_ms = best_ms(torch, lambda: attn(q, k, v), ATTN_ITERS, ATTN_RUNS, WARMUP_S)
    s_ms = _sdpa_ms(torch)
    verdict, note = speed_ratio_verdict(x_ms, s_ms)
    return Check(verdict, measured=round(s_ms / x_ms, 2), expected=expected, unit="x", note=note)


CHECKS = [
    ("copy_bandwidth", check_copy_bandwidth),
    ("matmul_bf16", check_matmul_bf16),
    ("matmul_fp16", check_matmul_fp16),
    ("attention_dit", check_attention_dit),
    ("xformers_vs_sdpa", check_xformers_vs_sdpa),
]
