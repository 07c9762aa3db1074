"""One table from the JSON files of bench/zimage_latency.py runs (one file per run of a lever group).

Usage: python bench/zimage_report.py docs/gpu-validation/zimage/h200-zimage-g*.json
Prints the levers in run order, each lever's steady p50 against the floor of its own run (the matmul rate
is measured in every run), and the ratios the performance page quotes (first request with and without
the warm-up, each lever against the baseline).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from zimage_latency import table  # noqa: E402


def merged(paths: list[Path]) -> dict:
    runs = [json.loads(p.read_text()) for p in paths]
    levers = {}
    for path, run in zip(paths, runs):
        for name, result in run["levers"].items():
            levers[name] = {**result, "run": path.name, "floor_s": run["floor"]["seconds"]}
    return {**runs[0], "levers": levers, "runs": {p.name: run for p, run in zip(paths, runs)}}


def ratios(results: dict) -> list[str]:
    levers = results["levers"]
    base = levers["baseline"]["steady"]["p50_s"]
    lines = [f"floor ({name}): {run['floor']['formula']}" for name, run in results["runs"].items()]
    for name, r in levers.items():
        if "steady" in r:
            lines.append(f"{name}: p50 {r['steady']['p50_s']:.3f} s = {r['steady']['p50_s'] / base:.3f}x baseline, "
                         f"{r['steady']['p50_s'] / r['floor_s']:.2f}x its run's floor; first request "
                         f"{r['first']['total_s']:.3f} s = {r['first_vs_p50']:.3f}x its p50"
                         + (f"; warm-up {r['warmup']}" if "warmup" in r else ""))
    return lines


def main(argv: list[str]) -> int:
    results = merged([Path(p) for p in argv])
    print(table(results))
    print()
    print("\n".join(ratios(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
