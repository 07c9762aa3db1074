"""Throughput of two servers behind the balancer against one, at a small CPU workload, on this host; and
on paper for one host of 8 GPUs from the measured single-H200 figures.

Usage: python bench/fleet_bench.py [--prompts N] [--concurrency C] [--prompt-s S] [--json FILE]

Each server is the ComfyUI stand-in whose every prompt keeps one CPU busy for --prompt-s seconds (a small
CPU workload standing for a GPU's), with the image's exporter beside it, behind HAProxy running the file
`invoke balancer.render` writes: the same processes a host without containers runs, no Docker involved. The
same bounded load (N prompts, C at a time, each followed through /history and /view as a client does) runs
against one server and against two; the ratio is two's prompts a second over one's. A ratio near 2 says the
balancer and the per-server queues add nothing that keeps a second server from doing its share; on a host
with fewer free cores than servers it cannot reach 2.

The paper figure: ComfyUI runs one prompt at a time per server, so a server whose queue never empties
finishes one prompt every steady p50 seconds; one server per GPU gives N / p50 with nothing shared on the
GPU side. The p50s are read from the recorded H200 runs (docs/gpu-validation/cuda13/h200-zimage-levers-g8.json
for the H200's own cuda13 stack); the host-side cost (PNG write and text encoding run on the CPU) is shown
beside it, as what 8 servers ask of the host's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fleet_load import run_load  # noqa: E402
from tests.standin.fleet import PROMPT, host_fleet  # noqa: E402

H200 = ROOT / "docs" / "gpu-validation" / "cuda13" / "h200-zimage-levers-g8.json"  # the image as rendered


def measure(servers: int, prompts: int, concurrency: int, prompt_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, host_fleet(Path(tmp), servers, prompt_s=prompt_s) as fleet:
        run_load(fleet.url, lambda i: PROMPT, concurrency, concurrency, deadline_s=60)   # warm the path once
        load = run_load(fleet.url, lambda i: PROMPT, prompts, concurrency, deadline_s=300)
        shares = {}
        for outcome in load.outcomes:
            shares[outcome.server] = shares.get(outcome.server, 0) + 1
    completed = len(load.state("completed"))
    if completed != prompts:
        raise SystemExit(f"{servers} server(s): only {completed} of {prompts} prompts completed")
    return {"servers": servers, "prompts": prompts, "seconds": round(load.seconds, 2),
            "per_second": round(load.per_second(), 3), "shares": dict(sorted(shares.items()))}


def on_paper(gpus: int) -> dict:
    levers = json.loads(H200.read_text())["levers"]
    steady = levers["serving-defaults-smoke"]["steady"]
    p50, cpu_s = steady["p50_s"], steady["save_s"] + steady["text_s"]
    return {"source": str(H200.relative_to(ROOT)) + " levers.serving-defaults-smoke.steady",
            "p50_s": p50, "per_gpu_per_second": round(1 / p50, 3), "gpus": gpus,
            "per_second": round(gpus / p50, 2), "per_hour": round(3600 * gpus / p50),
            "host_cores_busy_on_png_and_text": round(gpus * cpu_s / p50, 2)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=120)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--prompt-s", type=float, default=0.1)
    p.add_argument("--json")
    args = p.parse_args()
    one = measure(1, args.prompts, args.concurrency, args.prompt_s)
    two = measure(2, args.prompts, args.concurrency, args.prompt_s)
    result = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "host_cpus": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 2), "prompt_s": args.prompt_s,
              "concurrency": args.concurrency, "one": one, "two": two,
              "ratio": round(two["per_second"] / one["per_second"], 2), "paper_8_gpus": on_paper(8)}
    print(f"one server : {one['per_second']:.2f} prompts/s ({one['prompts']} in {one['seconds']} s)")
    print(f"two servers: {two['per_second']:.2f} prompts/s ({two['prompts']} in {two['seconds']} s), shares {two['shares']}")
    print(f"ratio two/one: {result['ratio']:.2f}  (host: {result['host_cpus']} CPUs, load {result['load_average_1m']})")
    paper = result["paper_8_gpus"]
    print(f"on paper, 8 H200s: {paper['per_second']} prompts/s ({paper['per_hour']}/h) = 8 / {paper['p50_s']} s steady "
          f"p50; the host's CPUs then write PNGs and encode text for {paper['host_cores_busy_on_png_and_text']} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
