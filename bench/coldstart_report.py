"""The start-to-warm table of bench/coldstart.py runs, and the ratios docs/cold-start.md quotes.

Usage: python bench/coldstart_report.py docs/gpu-validation/cuda13/h200-coldstart-*.json
Every lever of every run is a row (levers repeated by --repeat keep a row per round, name#2, ...), labelled by
its file's last name part. Then, for each lever measured in several rounds of one run, the median start to
warm, its ratio to the goal (bench/zimage/coldstart.yaml) and, where the run has a `before` lever, to it.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import yaml

REFERENCES = ("before", "container-before")   # what a run's other levers are compared with, the first it has
GOAL = yaml.safe_load((Path(__file__).resolve().parent / "zimage" / "coldstart.yaml").read_text())["goal"]


def table(results: dict, label: str = "") -> str:
    """One row per lever: the phases to ready, the warm-up, start to warm, and whether it was warm."""
    names = [m["phase"] for m in results["milestones"]]
    head = ["run", "lever", "cache", "preflight", "prefetch", *names, "ready", "device", "run 1", "run 2", "start to warm",
            "served first / p50"]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, r in results["levers"].items():
        if "warm_s" not in r:
            rows.append(f"| {label} | {name} | {r.get('page_cache', '')} | " + (r.get("error") or r.get("skipped", ""))
                        [:120].replace("|", "/") + " |" + " |" * (len(head) - 4))
            continue
        phase = [f"{v:.2f}" if v is not None else "-" for v in (r["phase_s"][n] for n in names)]
        runs = [f"{x['seconds']:.2f}" for x in r["warmup"]["runs"]] + ["-"] * (2 - len(r["warmup"]["runs"]))
        s = r["served"]
        rows.append(f"| {label} | {name} | {r['page_cache']} | {_preflight(r)} | {_prefetch(r)} | " + " | ".join(phase) + f" | {r['ready_s']:.2f} | "
                    f"{r['warmup']['device_s']:.2f} | {runs[0]} | {runs[1]} | **{r['warm_s']:.2f}** | "
                    f"{s['first_s']:.2f} / {s['steady_p50_s']:.2f} |")
    return "\n".join(rows)


def _preflight(r: dict) -> str:
    """The image's GPU preflight: its seconds and whether ComfyUI waited for it ('-' where not run)."""
    if "preflight" not in r:
        return "-"
    return f"{r['preflight']['seconds']:.2f} {r['preflight_mode']}"


RATE = re.compile(r"\(([\d.]+ GB/s)\)")
CACHED = re.compile(r"([\d.]+ GB) already in the page cache")


def _prefetch(r: dict) -> str:
    """The read of the model files beside the start: when it ended, from the start, and at what rate."""
    lines = r.get("prefetch", {}).get("lines", [])
    if not lines:
        return "-"
    at, line = lines[-1]
    if not r["prefetch"].get("ended"):
        return f"{at:.1f} s, not ended"
    rate, cached = RATE.search(line), CACHED.search(line)
    said = rate.group(1) if rate else line.split(": ", 2)[-1]
    return f"{at:.1f} s, {said}" + (f", {cached.group(1)} cached" if cached else "")


def medians(results: dict) -> dict[str, list[float]]:
    """Start to warm per lever across the rounds of one run."""
    rounds: dict[str, list[float]] = {}
    for name, r in results["levers"].items():
        if "warm_s" in r:
            rounds.setdefault(name.split("#")[0], []).append(r["warm_s"])
    return rounds


def _summary(name: str, warm: list[float], rounds: dict[str, list[float]], reference: str | None) -> str:
    """One lever's start to warm against the goal and its reference, saying how many rounds each rests on."""
    mid = statistics.median(warm)
    spread = f", median {mid:.2f} s" if len(warm) > 1 else " (one round)"
    said = f"start to warm {' / '.join(f'{w:.2f}' for w in warm)} s{spread}"
    said += f" = {mid / GOAL['start_to_warm_s']:.2f}x the {GOAL['start_to_warm_s']:g} s goal"
    if reference and reference != name and rounds.get(reference):
        before = statistics.median(rounds[reference])
        count = len(rounds[reference])
        said += f", {mid / before:.2f}x {reference} ({count} round{'s' if count > 1 else ''})"
    return said


def main(paths: list[str]) -> int:
    for path in map(Path, paths):
        results = json.loads(path.read_text())
        label = path.stem.rsplit("-", 1)[-1]
        print(table(results, label) + "\n")
        rounds = medians(results)
        fallback = next((n for n in REFERENCES if len(rounds.get(n, ())) > 1), None)
        for name, warm in rounds.items():
            print(f"{label} {name}: {_summary(name, warm, rounds, results['levers'][name].get('versus') or fallback)}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
