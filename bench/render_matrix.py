"""Time gate + render of the whole GPU matrix (every profile x every image the gate lets through).

Usage: python bench/render_matrix.py [--json FILE]
Prints one row per profile and the total against the 1 s goal; cold (first, imports and data
loading included) and warm (second pass in the same process) are reported as a ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_S = 1.0


def one_pass(out: Path) -> tuple[float, list[tuple[str, str, str, float]]]:
    from kiln.gate.findings import errors
    from kiln.data.gpus import load_gpus
    from kiln.project import Project
    from kiln.render.context import write_context

    project = Project(ROOT)
    rows, started = [], time.perf_counter()
    for gpu in load_gpus(project.gpus_path):
        for spec in sorted(project.images_dir.glob("*.yaml")):
            t = time.perf_counter()
            subject, findings = project.check(gpu, spec.stem)
            verdict = "refused" if errors(findings) else "rendered"
            if verdict == "rendered":
                write_context(subject, project.templates_dir, project.payload_dir, out / f"{spec.stem}-{gpu}")
            rows.append((gpu, spec.stem, verdict, time.perf_counter() - t))
    return time.perf_counter() - started, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cold, rows = one_pass(Path(tmp) / "cold")
        warm, _ = one_pass(Path(tmp) / "warm")
    print(f"{'profile':<14}{'image':<16}{'result':<10}{'ms':>8}")
    for gpu, image, verdict, seconds in rows:
        print(f"{gpu:<14}{image:<16}{verdict:<10}{seconds * 1000:>8.1f}")
    rendered = sum(1 for r in rows if r[2] == "rendered")
    print(f"\nmatrix: {len(rows)} gate runs, {rendered} contexts rendered")
    print(f"cold pass {cold:.3f} s ({cold / GOAL_S:.2f}x the {GOAL_S:g} s goal); warm pass {warm:.3f} s; "
          f"cold/warm {cold / warm:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cold_s": cold, "warm_s": warm, "goal_s": GOAL_S, "runs": len(rows),
                                         "rendered": rendered}, indent=2) + "\n")
    return 0 if cold < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
