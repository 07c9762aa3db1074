"""Warm-up effect on a GPU: first request after ready vs steady state (goal: within 10%).

Usage: python3 bench/gpu_warmup_effect.py [--json FILE]
A "request" is 8 sampler steps through a small DiT-shaped stack (4 blocks of bf16 attention over
4096 image tokens + MLP, hidden 3072, 24 heads), the shape of a 1024x1024 Z-Image-Turbo step.
Each side runs in its own fresh process, as two servers would: "cold" serves its first request with
no warm-up at all; "warm" first runs what the image runs before ready (device warm-up + one full
request), then serves its first request and 20 more (the steady-state median). The parent process
starts both and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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


def cold() -> dict:
    torch.cuda.init()
    blocks = make_blocks()
    return {"first_ms": round(request(blocks) * 1000, 1)}


def warm() -> dict:
    torch.cuda.init()
    blocks = make_blocks()
    device = warm_device()                      # the image's device warm-up ...
    request(blocks)                             # ... and its one full request before ready
    first = request(blocks)
    steady = statistics.median(request(blocks) for _ in range(20))
    return {"first_ms": round(first * 1000, 1), "steady_ms": round(steady * 1000, 1), "device_warm": device}


def measure(side: str) -> dict:
    """One side in a fresh interpreter: nothing of the other side's CUDA context or caches carries over."""
    out = subprocess.run([sys.executable, __file__, "--side", side], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--side", choices=("cold", "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(cold() if args.side == "cold" else warm()))
        return 0
    t0 = time.perf_counter()
    no_warmup, warmed = measure("cold"), measure("warm")
    steady = warmed["steady_ms"]
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "cold_first_ms": no_warmup["first_ms"], "first_after_ready_ms": warmed["first_ms"],
              "steady_ms": steady, "first_after_ready_vs_steady": round(warmed["first_ms"] / steady, 3),
              "cold_first_vs_steady": round(no_warmup["first_ms"] / steady, 2),
              "device_warm": warmed["device_warm"], "processes": "separate", "total_s": round(time.perf_counter() - t0, 1)}
    print(f"{'request (fresh process each side)':<36}{'ms':>10}{'vs steady':>11}")
    print(f"{'first, no warm-up':<36}{no_warmup['first_ms']:>10.1f}{no_warmup['first_ms'] / steady:>10.2f}x")
    print(f"{'first after warm-up/ready':<36}{warmed['first_ms']:>10.1f}{warmed['first_ms'] / steady:>10.2f}x")
    print(f"{'steady state (median of 20)':<36}{steady:>10.1f}{1:>10.2f}x")
    print(f"goal: first after ready within 10% of steady: {'met' if warmed['first_ms'] / steady <= 1.10 else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
