"""Who imports what at ComfyUI's start in an image: the heaviest packages by their own import time, each with
the chain of modules that pulled it in.

Usage: python bench/import_chain.py IMAGE [--json OUT.json] [--top 12] [--runs 3]

Runs the image's ComfyUI once, read-only, in CPU mode to where it would listen (`--cpu --quick-test-for-ci`,
plus the image's own flags), under python's import timer, and reads the timer's tree: a module's importer is
the next line below it one level up. The seconds are this host's, each package's the median of --runs starts;
the shape of the tree is the image's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from importtime import Row, importers, own_by_package, package, rows  # noqa: E402
from kiln.identity import COMFYUI_DIR, FACTS_PATH  # noqa: E402


def by_package(table: list[Row], top: int) -> list[dict]:
    """The packages by their own import time, each with the modules outside it that pulled it in, nearest first."""
    first = {}
    for i, row in enumerate(table):
        # a package's own line (the timer prints it after its children) is the one named just so
        if row.module == package(row.module):
            first.setdefault(row.module, i)
    heaviest = list(own_by_package(table).items())[:top]
    return [{"package": name, "self_s": round(seconds, 3),
             "imported_by": [r.module for r in importers(table, first[name]) if package(r.module) != name]
             if name in first else []}
            for name, seconds in heaviest]


def median_table(tables: list[list[Row]]) -> list[Row]:
    """The first run's tree with each module's times the median over the runs (a module missing from a run is
    left out of its median)."""
    times: dict[str, list[Row]] = {}
    for table in tables:
        for row in table:
            times.setdefault(row.module, []).append(row)
    return [row._replace(self_s=statistics.median(r.self_s for r in times[row.module]),
                         cumulative_s=statistics.median(r.cumulative_s for r in times[row.module]))
            for row in tables[0]]


def run_image(image: str) -> str:
    facts = json.loads(subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", image, FACTS_PATH],
                                      capture_output=True, text=True, check=True).stdout)
    flags = [f for f in facts["launch"]["flags"] if f not in ("--gpu-only", "--highvram", "--normalvram")]
    script = f"cd {COMFYUI_DIR} && exec python main.py --cpu --quick-test-for-ci {shlex.join(flags)}"
    out = subprocess.run(["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "-e", "PYTHONPROFILEIMPORTTIME=1",
                          "--entrypoint", "sh", image, "-c", script], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"import_chain: ComfyUI in {image} exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return out.stderr


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--json", type=Path)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    tables = [rows(run_image(args.image).splitlines()) for _ in range(args.runs)]
    table = median_table(tables)
    packages = by_package(table, args.top)
    total = statistics.median(sum(r.self_s for r in t) for t in tables)
    print(f"{len(table)} modules, {total:.2f} s of import time in all (this host, median of {args.runs} starts)\n")
    print("| package | own import s | imported by (nearest first) |\n|---|---|---|")
    for row in packages:
        print(f"| {row['package']} | {row['self_s']:.2f} | {' <- '.join(row['imported_by'][:8]) or '(main)'} |")
    if args.json:
        args.json.write_text(json.dumps({"image": args.image, "runs": args.runs, "modules": len(table),
                                         "import_s": round(total, 3),
                                         "packages": packages}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
