"""Warm-up effect on a GPU: first request after ready vs steady state (goal: within 10%).

Usage: python3 bench/gpu_warmup_effect.py [--json FILE]
A "request" is 8 sampler steps through a small DiT-shaped stack (4 blocks of bf16 attention over
4096 image tokens + MLP, hidden 3072, 24 heads), the shape of a 1024x1024 Z-Image-Turbo step.
Measured in one fresh process: the first request with no warm-up at all (what a server without
warm-up serves first), then the warm-up the image runs before ready (device warm + one full
request), then the first request after that and the steady-state median of 20 more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def warm_device() -> dict:
    """What the image's KilnDeviceWarmup node does inside the server (cuBLAS, cuDNN, allocator)."""
    started = time.perf_counter()
    x = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
    (x @ x).sum().item()
    image = torch.randn(1, 16, 128, 128, device="cuda", dtype=torch.float16)
    F.conv2d(image, torch.randn(16, 16, 3, 3, device="cuda", dtype=torch.float16)).sum().item()
    torch.cuda.synchronize()
    return {"device_s": round(time.perf_counter() - started, 3)}

HIDDEN, HEADS, TOKENS, BLOCKS, STEPS = 3072, 24, 4096, 4, 8


def make_blocks():
    g = torch.Generator(device="cuda").manual_seed(0)
    def w(*shape):
        return (torch.randn(*shape, device="cuda", generator=g) * 0.02).to(torch.bfloat16)
    return [{"qkv": w(3 * HIDDEN, HIDDEN), "out": w(HIDDEN, HIDDEN), "up": w(4 * HIDDEN, HIDDEN),
             "down": w(HIDDEN, 4 * HIDDEN)} for _ in range(BLOCKS)]


def block(x, p):
    b, t, _ = x.shape
    q, k, v = F.linear(F.layer_norm(x, (HIDDEN,)), p["qkv"]).view(b, t, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
    x = x + F.linear(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, HIDDEN), p["out"])
    return x + F.linear(F.gelu(F.linear(F.layer_norm(x, (HIDDEN,)), p["up"])), p["down"])


def request(blocks) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    x = torch.randn(1, TOKENS, HIDDEN, device="cuda", dtype=torch.bfloat16)
    for _ in range(STEPS):
        for p in blocks:
            x = block(x, p)
    x.float().sum().item()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    t0 = time.perf_counter()
    torch.cuda.init()
    blocks = make_blocks()
    cold_first = request(blocks)                # what the first user would get without warm-up
    torch.cuda.empty_cache()
    warm = warm_device()                        # the image's device warm-up ...
    request(blocks)                             # ... and its one full request before ready
    first_after_ready = request(blocks)
    steady = statistics.median(request(blocks) for _ in range(20))
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cold_first_ms": round(cold_first * 1000, 1), "first_after_ready_ms": round(first_after_ready * 1000, 1),
              "steady_ms": round(steady * 1000, 1), "first_after_ready_vs_steady": round(first_after_ready / steady, 3),
              "cold_first_vs_steady": round(cold_first / steady, 2), "device_warm": warm,
              "total_s": round(time.perf_counter() - t0, 1)}
    print(f"{'request':<28}{'ms':>10}{'vs steady':>11}")
    print(f"{'first, no warm-up':<28}{cold_first * 1000:>10.1f}{cold_first / steady:>10.2f}x")
    print(f"{'first after warm-up/ready':<28}{first_after_ready * 1000:>10.1f}{first_after_ready / steady:>10.2f}x")
    print(f"{'steady state (median of 20)':<28}{steady * 1000:>10.1f}{1:>10.2f}x")
    print(f"goal: first after ready within 10% of steady: {'met' if first_after_ready / steady <= 1.10 else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
