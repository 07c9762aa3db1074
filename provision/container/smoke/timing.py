"""GPU timing with CUDA events: warm up by wall time, then best of N runs."""

from __future__ import annotations

import time
from typing import Any, Callable, List


def warm_up(torch: Any, fn: Callable[[], Any], seconds: float, minimum: int = 3) -> int:
    """Run `fn` until `seconds` have passed (clocks ramp up from idle)."""
    start, count = time.perf_counter(), 0
    while count < minimum or time.perf_counter() - start < seconds:
        fn()
        torch.cuda.synchronize()
        count += 1
    return count


def time_runs(torch: Any, fn: Callable[[], Any], iters: int, runs: int) -> List[float]:
    """Milliseconds per call of `fn`, one figure per run of `iters` calls."""
    results = []
    for _ in range(runs):
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        results.append(begin.elapsed_time(end) / iters)
    return results


def best_ms(torch: Any, fn: Callable[[], Any], iters: int, runs: int,
            warmup_s: float = 0.25) -> float:
    warm_up(torch, fn, warmup_s)
    return min(time_runs(torch, fn, iters, runs))
