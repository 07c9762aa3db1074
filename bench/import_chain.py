"""Who imports what at ComfyUI's start in an image: the heaviest packages by their own import time, each with
the chain of modules that pulled it in.

Usage: python bench/import_chain.py IMAGE [--json OUT.json] [--top 12]

Runs the image's ComfyUI once, read-only, in CPU mode to where it would listen (`--cpu --quick-test-for-ci`,
plus the image's own flags), under python's import timer, and reads the timer's tree: a module's importer is
the next line below it one level up. The seconds are this host's; the shape of the tree is the image's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln.identity import COMFYUI_DIR, FACTS_PATH  # noqa: E402


def timer_rows(text: str) -> list[tuple[str, int, float, float]]:
    """(module, depth, self s, cumulative s) for each line of python's import timer, in its order."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((name.strip(), depth, int(self_us) / 1e6, int(cum_us) / 1e6))
    return rows


def importers(rows, index: int) -> list[dict]:
    """The modules above rows[index] in the tree, nearest first: each is the next row one level up."""
    chain, depth = [], rows[index][1]
    for module, d, _, cumulative in rows[index + 1:]:
        if d < depth:
            chain.append({"module": module, "cumulative_s": round(cumulative, 3)})
            depth = d
        if depth == 0:
            break
    return chain


def by_package(rows, top: int) -> list[dict]:
    """Packages by the summed own time of their modules, each with the chain of its first module imported."""
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for module, _, self_s, _ in rows:
        package = module.split(".")[0]
        totals[package] = totals.get(package, 0.0) + self_s
    for i, (module, _, _, _) in enumerate(rows):
        package = module.split(".")[0]
        # the timer prints a module after its children; the package's own line is the one named just so
        if module == package:
            first.setdefault(package, i)
    heaviest = sorted(totals, key=lambda p: -totals[p])[:top]
    return [{"package": p, "self_s": round(totals[p], 3),
             "imported_by": [c["module"] for c in importers(rows, first[p])] if p in first else []}
            for p in heaviest]


def run_image(image: str) -> str:
    facts = json.loads(subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", image, FACTS_PATH],
                                      capture_output=True, text=True, check=True).stdout)
    flags = [f for f in facts["launch"]["flags"] if f not in ("--gpu-only", "--highvram", "--normalvram")]
    script = f"cd {COMFYUI_DIR} && exec python main.py --cpu --quick-test-for-ci {' '.join(flags)}"
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
    args = p.parse_args(argv)
    rows = timer_rows(run_image(args.image))
    packages = by_package(rows, args.top)
    total = sum(r[2] for r in rows)
    print(f"{len(rows)} modules, {total:.2f} s of import time in all (this host)\n")
    print("| package | own import s | imported by (nearest first) |\n|---|---|---|")
    for row in packages:
        print(f"| {row['package']} | {row['self_s']:.2f} | {' <- '.join(row['imported_by'][:8]) or '(main)'} |")
    if args.json:
        args.json.write_text(json.dumps({"image": args.image, "modules": len(rows), "import_s": round(total, 3),
                                         "packages": packages}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
