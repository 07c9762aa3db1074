"""Do the kernels compute the right numbers? (GPU, or small sizes on the CPU.)"""

from __future__ import annotations

from typing import Any, Tuple

from .context import Context
from .deps import one_line
from .verdict import ERROR_BOUNDS, FAIL, PASS, Check, error_verdict, skip

GROUP = "numerics"

MATMUL_N = {"cuda": 2048, "cpu": 256}
# (batch, heads, tokens, head_dim)
ATTN_SHAPE = {"cuda": (2, 8, 1024, 64), "cpu": (1, 4, 128, 32)}


def rel_error(torch: Any, out: Any, ref: Any) -> Tuple[float, bool]:
    """Relative Frobenius error of `out` against float64 `ref`, and finiteness."""
    finite = bool(torch.isfinite(out).all().item())
    err = (out.double() - ref).norm() / ref.norm()
    return float(err.item()), finite


def _randn(torch: Any, shape, device: str, dtype: Any, seed: int) -> Any:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


def _error_check(torch: Any, out: Any, ref: Any, bound_key: str, device: str) -> Check:
    err, finite = rel_error(torch, out, ref)
    bound = ERROR_BOUNDS[bound_key]
    verdict, note = error_verdict(err, bound, finite)
    return Check(verdict, measured=float(f"{err:.3g}"), expected=f"<= {bound:g}",
                 unit="rel", note=f"{note} on {device}")


def _unsupported_on_cpu(ctx: Context, exc: Exception) -> bool:
    return ctx.device == "cpu" and isinstance(exc, (RuntimeError, NotImplementedError))


def _bound_text(key: str) -> str:
    return f"<= {ERROR_BOUNDS[key]:g}"


def _matmul(ctx: Context, dtype_name: str) -> Check:
    short = "fp16" if dtype_name == "float16" else "bf16"
    torch = ctx.torch
    if torch is None:
        return skip(ctx.deps.reason("torch"), expected=_bound_text(f"matmul_{short}"))
    device, dtype = ctx.device, getattr(torch, dtype_name)
    n = MATMUL_N[device]
    a = _randn(torch, (n, n), device, dtype, 1)
    b = _randn(torch, (n, n), device, dtype, 2)
    try:
        out = a @ b
    except Exception as exc:
        if _unsupported_on_cpu(ctx, exc):
            return skip(f"{dtype_name} matmul unsupported on this CPU torch: {one_line(exc)}",
                        expected=_bound_text(f"matmul_{short}"))
        raise
    ref = a.double() @ b.double()
    return _error_check(torch, out, ref, f"matmul_{short}", f"{device}, n={n}")


def check_matmul_fp16(ctx: Context) -> Check:
    return _matmul(ctx, "float16")


def check_matmul_bf16(ctx: Context) -> Check:
    return _matmul(ctx, "bfloat16")


def reference_attention(torch: Any, q: Any, k: Any, v: Any) -> Any:
    """softmax(q k^T / sqrt(d)) v in float64; layout (batch, heads, tokens, dim)."""
    q, k, v = q.double(), k.double(), v.double()
    weights = torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)
    return weights @ v


def _qkv(ctx: Context, dtype: Any) -> Tuple[Any, Any, Any]:
    shape = ATTN_SHAPE[ctx.device]
    return tuple(_randn(ctx.torch, shape, ctx.device, dtype, seed) for seed in (3, 4, 5))


def _attn_dtype(ctx: Context) -> Tuple[Any, str]:
    if ctx.has_gpu():
        return ctx.torch.float16, "fp16"
    return ctx.torch.float32, "fp32"


def check_sdpa(ctx: Context) -> Check:
    torch = ctx.torch
    if torch is None:
        return skip(ctx.deps.reason("torch"), expected=_bound_text("attention_fp16"))
    dtype, short = _attn_dtype(ctx)
    q, k, v = _qkv(ctx, dtype)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    ref = reference_attention(torch, q, k, v)
    return _error_check(torch, out, ref, f"attention_{short}", f"{ctx.device}, {tuple(q.shape)}")


_XF_BOUND = _bound_text("attention_fp16")


def check_xformers(ctx: Context) -> Check:
    torch = ctx.torch
    if torch is None:
        return skip(ctx.deps.reason("torch"), expected=_XF_BOUND)
    xops = ctx.deps.get("xformers.ops")
    if xops is None:
        return skip(ctx.deps.reason("xformers.ops"), expected=_XF_BOUND)
    if not ctx.has_gpu():
        return skip(f"xformers attention needs a GPU: {ctx.gpu_reason()}", expected=_XF_BOUND,
                    needs_gpu=True)
    q, k, v = _qkv(ctx, torch.float16)
    # xformers takes (batch, tokens, heads, dim)
    bmhk = [t.transpose(1, 2).contiguous() for t in (q, k, v)]
    out = xops.memory_efficient_attention(*bmhk).transpose(1, 2)
    ref = reference_attention(torch, q, k, v)
    return _error_check(torch, out, ref, "attention_fp16", f"cuda, {tuple(q.shape)}")


def check_numpy_interop(ctx: Context) -> Check:
    torch, np = ctx.torch, ctx.numpy
    if torch is None or np is None:
        return skip(ctx.deps.reason("torch" if torch is None else "numpy"), expected="ok")
    arr = np.arange(24, dtype=np.float32).reshape(4, 6)
    shared = torch.from_numpy(arr)
    back = (shared.to(ctx.device) * 2 + 1).cpu().numpy()
    arr[0, 0] = 42.0
    ok_values = bool(np.array_equal(back, np.arange(24, dtype=np.float32).reshape(4, 6) * 2 + 1))
    ok_shared = float(shared[0, 0].item()) == 42.0
    ok = ok_values and ok_shared
    note = f"numpy {np.__version__} <-> torch {torch.__version__} on {ctx.device}"
    if not ok:
        note += "; values differ" if not ok_values else "; from_numpy does not share memory"
    return Check(PASS if ok else FAIL, measured="ok" if ok else "mismatch", expected="ok", note=note)


CHECKS = [
    ("matmul_fp16", check_matmul_fp16),
    ("matmul_bf16", check_matmul_bf16),
    ("sdpa_attention", check_sdpa),
    ("xformers_attention", check_xformers),
    ("numpy_interop", check_numpy_interop),
]
