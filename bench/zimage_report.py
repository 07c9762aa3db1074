"""One table from the JSON files of bench/zimage_latency.py runs (one file per run of a lever group).

Usage: python bench/zimage_report.py docs/gpu-validation/cuda13/h200-zimage-levers-g*.json
       python bench/zimage_report.py docs/gpu-validation/zimage/h200-zimage-g*.json
Every lever of every run is a row, labelled by its run (the file name's last part, e.g. g6), so a lever
measured in two runs (each group starts with `baseline`) keeps both rows. Each row is set against the floor
of its own run (the matmul rate is measured in every run) and, where the run compared it, against the
quality bounds of bench/zimage/quality.yaml. Then the ratios the performance page quotes: each lever
against the floor and the baseline of its own run (older runs without one: the first run's), the first
request against the steady p50, and the fastest levers within the quality bound.
Records written before a column existed (save, fetch, image bytes, quality) show "-" there.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

COLUMNS = ("run", "lever", "p50 s", "p90 s", "floor ms", "x floor", "sampling ms", "sampling x floor", "step ms",
           "text ms", "decode ms", "save ms", "fetch ms", "KB", "latent SNR dB", "image PSNR dB", "within bound")


def load(paths: list[Path]) -> dict[str, dict]:
    """{run label: record}; the label is the file name's last part unless two files share it."""
    runs: dict[str, dict] = {}
    for path in paths:
        label = next(c for c in (path.stem.rsplit("-", 1)[-1], path.stem, str(path)) if c not in runs)
        runs[label] = json.loads(path.read_text())
    return runs


def levers(runs: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(run label, lever name, result) in run order, then the run's lever order."""
    return [(label, name, result) for label, run in runs.items() for name, result in run["levers"].items()]


def floor_s(run: dict) -> float | None:
    return run.get("floor", {}).get("seconds")


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.0f}"


def times(seconds: float | None, floor: float | None, places: int = 2) -> str:
    return "-" if seconds is None or not floor else f"{seconds / floor:.{places}f}"


def db(value: float | None) -> str:
    return "-" if value is None else "inf" if math.isinf(value) else f"{value:.2f}"


def quality_cells(quality: dict) -> list[str]:
    """Latent SNR, image PSNR, within the bound: "ref" for the run's reference lever, "-" where not compared."""
    if quality.get("reference"):
        return ["ref", "ref", "-"]
    verdict = {True: "yes", False: "no"}.get(quality.get("within_bounds"), "-")
    return [db(quality.get("snr_db")), db(quality.get("image_psnr_db")), verdict]


def cells(label: str, name: str, result: dict, floor: float | None) -> list[str]:
    if "steady" not in result:
        reason = (result.get("error") or result.get("skipped", ""))[:100].replace("|", "/")
        return [label, name, reason] + [""] * (len(COLUMNS) - 3)
    s = result["steady"]
    size = f"{s['image_bytes'] / 1024:.0f}" if s.get("image_bytes") else "-"
    return [label, name, f"{s['p50_s']:.3f}", f"{s['p90_s']:.3f}", ms(floor), times(s["p50_s"], floor),
            ms(s.get("sampling_s")), times(s.get("sampling_s"), floor, 3), ms(s.get("step_s")), ms(s.get("text_s")),
            ms(s.get("decode_s")), ms(s.get("save_s")), ms(s.get("fetch_s")), size,
            *quality_cells(result.get("quality", {}))]


def table(runs: dict[str, dict]) -> str:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows += ["| " + " | ".join(cells(label, name, result, floor_s(runs[label]))) + " |"
             for label, name, result in levers(runs)]
    return "\n".join(rows)


def baseline(runs: dict[str, dict], label: str) -> tuple[str, dict] | None:
    """The run's own `baseline`; a run without one (older groups) is set against the first run's."""
    for other in (label, *runs):
        found = runs[other]["levers"].get("baseline", {})
        if "steady" in found:
            return other, found
    return None


def ratio_line(runs: dict[str, dict], label: str, name: str, result: dict) -> str:
    s, floor, base = result["steady"], floor_s(runs[label]), baseline(runs, label)
    line = f"{label}/{name}: p50 {s['p50_s']:.3f} s"
    if base:
        line += f" = {s['p50_s'] / base[1]['steady']['p50_s']:.3f}x baseline ({base[0]})"
    if floor:
        line += f", {times(s['p50_s'], floor)}x its run's floor, sampling {times(s.get('sampling_s'), floor, 3)}x"
    line += f"; first request {result['first']['total_s']:.3f} s = {result['first_vs_p50']:.3f}x its p50"
    return line + (f"; warm-up {result['warmup']}" if "warmup" in result else "")


def within_bound(result: dict) -> bool:
    """Compared in its run and within the quality bound, or the run's reference itself."""
    quality = result.get("quality", {})
    return bool(quality.get("reference") or quality.get("within_bounds"))


def best_line(runs: dict[str, dict], what: str, lever: tuple[str, str, dict]) -> str:
    label, name, result = lever
    s, floor = result["steady"], floor_s(runs[label])
    bound = {True: "within", False: "out of"}.get(result.get("quality", {}).get("within_bounds"), "reference for")
    # sampling to three places: the goal is "at most 1.2x", and 1.205x must not read as 1.20x
    return (f"{what}: {label}/{name}, p50 {s['p50_s']:.3f} s = {times(s['p50_s'], floor)}x floor, sampling "
            f"{ms(s['sampling_s'])} ms = {times(s['sampling_s'], floor, 3)}x floor ({bound} the quality bound)")


def fastest(runs: dict[str, dict]) -> list[str]:
    """The fastest lever overall, and the fastest end to end and in sampling within the quality bound; only
    for runs that compared their levers' output (older records did not)."""
    measured = [(label, name, r) for label, name, r in levers(runs) if "steady" in r and floor_s(runs[label])]
    within = [lever for lever in measured if within_bound(lever[2])]
    if not within:
        return []
    p50 = lambda lever: lever[2]["steady"]["p50_s"]  # noqa: E731
    sampling = lambda lever: lever[2]["steady"]["sampling_s"] / floor_s(runs[lever[0]])  # noqa: E731
    return [best_line(runs, "fastest measured", min(measured, key=p50)),
            best_line(runs, "fastest within the quality bound", min(within, key=p50)),
            best_line(runs, "lowest sampling within the quality bound", min(within, key=sampling))]


def ratios(runs: dict[str, dict]) -> list[str]:
    lines = [f"floor ({label}): {run['floor']['formula']}" for label, run in runs.items() if "floor" in run]
    lines += [ratio_line(runs, label, name, r) for label, name, r in levers(runs) if "steady" in r]
    return lines + fastest(runs)


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv]
    unreadable = [str(p) for p in paths if not p.is_file()]
    if not paths or unreadable:
        print(f"error: {', '.join(unreadable) or 'no record given'}: not a file; give the JSON records of "
              "bench/zimage_latency.py runs", file=sys.stderr)
        return 2
    runs = load(paths)
    print(table(runs))
    print()
    print("\n".join(ratios(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
