"""Which files of the installed packages a workload reads, and the image's prune list checked against it.

Usage (on the GPU host, in the environment ComfyUI runs in):
  python3 bench/opened_files.py mark --record R.json --module torch --module nvidia ...
  ... run the workload (bench/coldstart.py) ...
  python3 bench/opened_files.py report --record R.json --label "start, warm-up, served"
  python3 bench/opened_files.py prune --record R.json --stack cuda13 --move-to DIR

mark sets every file's access time to 0 under the folders that hold the named modules. The file system
then stamps a file's access time on its first read or map (relatime does so while the access time is
not newer than the modification time), so after the workload a file read has a new access time, in
this process or any other (the C compiler torch.compile starts too). mark checks this on a probe file
first and refuses where the file system does not keep access times (noatime).

report adds a snapshot to the record: per package, the files and bytes read and unread, the largest
unread files and the shared libraries read. prune takes kiln/data/tables/prune.yaml's entries for the
stack and moves each entry's files to DIR where none of them was read; an entry with a file read is
kept and the record says which file. The record is the JSON file docs/gpu-validation keeps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "kiln" / "data" / "tables" / "prune.yaml"
LARGEST = 40


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)
    mark = sub.add_parser("mark")
    mark.add_argument("--module", action="append", required=True, help="a module whose folder is traced")
    report = sub.add_parser("report")
    report.add_argument("--label", required=True)
    prune = sub.add_parser("prune")
    prune.add_argument("--stack", required=True)
    prune.add_argument("--move-to", type=Path, required=True)
    prune.add_argument("--policy", type=Path, default=POLICY)
    for each in (mark, report, prune):
        each.add_argument("--record", type=Path, required=True)
    return p.parse_args(argv)


def module_roots(names: list[str]) -> list[Path]:
    """The site folders holding these modules (a namespace package may span several)."""
    roots: list[Path] = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise SystemExit(f"opened_files: module {name} not found; set PYTHONPATH as the workload has it")
        places = list(spec.submodule_search_locations or []) or [spec.origin]
        for place in places:
            root = Path(place).resolve().parent
            if root not in roots:
                roots.append(root)
    return roots


def files_under(roots: list[Path]):
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if not path.is_symlink() and path.is_file():
                    yield root, path


def keeps_access_times(folder: Path) -> bool:
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".kiln-atime-") as probe:
        probe.write(b"x" * 4096)
        probe.flush()
        os.utime(probe.name, ns=(0, os.stat(probe.name).st_mtime_ns))
        Path(probe.name).read_bytes()
        return os.stat(probe.name).st_atime_ns > 0


def mark(args) -> dict:
    roots = module_roots(args.module)
    for root in roots:
        if not keeps_access_times(root):
            raise SystemExit(f"opened_files: {root} is on a file system that keeps no access times (noatime)")
    count = 0
    for _, path in files_under(roots):
        os.utime(path, ns=(0, path.stat().st_mtime_ns), follow_symlinks=False)
        count += 1
    return {"what": __doc__.splitlines()[0], "roots": [str(r) for r in roots], "modules": args.module,
            "marked_at": time.time(), "files": count, "snapshots": []}


def package_of(rel: Path) -> str:
    parts = rel.parts
    return "/".join(parts[:2]) if parts[0] == "nvidia" and len(parts) > 2 else parts[0]


def was_read(info: os.stat_result) -> bool:
    return info.st_atime_ns > 0


def report(args, record: dict) -> dict:
    packages: dict[str, dict] = {}
    unread, libraries = [], []
    for root, path in files_under([Path(r) for r in record["roots"]]):
        info = path.stat()
        rel, size, read = path.relative_to(root), info.st_size, was_read(info)
        row = packages.setdefault(package_of(rel), {"files": 0, "bytes": 0, "read_files": 0, "read_bytes": 0})
        row["files"] += 1
        row["bytes"] += size
        if read:
            row["read_files"] += 1
            row["read_bytes"] += size
            if ".so" in path.name:
                libraries.append(str(rel))
        else:
            unread.append((size, str(rel)))
    unread.sort(reverse=True)
    record["snapshots"].append({"label": args.label, "at_s": round(time.time() - record["marked_at"], 1),
                                "packages": dict(sorted(packages.items(), key=lambda kv: -kv[1]["bytes"])),
                                "unread_largest": [{"path": p, "bytes": s} for s, p in unread[:LARGEST]],
                                "libraries_read": sorted(libraries)})
    return record


def entry_matches(roots: list[Path], pattern: str) -> list[tuple[Path, Path, list[Path]]]:
    """(root, what the entry names, the files in it) for every match, a folder's files included."""
    found = []
    for root in roots:
        for match in sorted(root.glob(pattern)):
            inside = [match] if match.is_file() else [p for p in match.rglob("*") if p.is_file()]
            found.append((root, match, [p for p in inside if not p.is_symlink()]))
    return found


def prune(args, record: dict) -> dict:
    """Each entry moved away whole, as the image build removes it, where none of its files was read."""
    roots = [Path(r) for r in record["roots"]]
    entries = yaml.safe_load(args.policy.read_text())["stacks"][args.stack]
    results = []
    for entry in entries:
        matches = entry_matches(roots, entry["path"])
        files = [(root, p) for root, _, inside in matches for p in inside]
        read = [str(p.relative_to(r)) for r, p in files if was_read(p.stat())]
        size = sum(p.stat().st_size for _, p in files)
        status = "absent" if not matches else "read: kept" if read else "pruned"
        if status == "pruned":
            for root, match, _ in matches:
                target = args.move_to / match.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(match, target)
        results.append({**entry, "status": status, "files": len(files), "bytes": size, "read": read[:10]})
    record["prune"] = {"stack": args.stack, "moved_to": str(args.move_to), "entries": results,
                       "pruned_bytes": sum(r["bytes"] for r in results if r["status"] == "pruned")}
    return record


def main(argv=None) -> int:
    args = parse(argv)
    if args.verb == "mark":
        record = mark(args)
    else:
        record = json.loads(args.record.read_text())
        record = report(args, record) if args.verb == "report" else prune(args, record)
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    if args.verb == "mark":
        print(f"marked {record['files']} files under {', '.join(record['roots'])}")
    elif args.verb == "report":
        snap = record["snapshots"][-1]
        read = sum(p["read_bytes"] for p in snap["packages"].values())
        total = sum(p["bytes"] for p in snap["packages"].values())
        print(f"{snap['label']}: {read / 1e9:.2f} of {total / 1e9:.2f} GB read; "
              f"{len(snap['libraries_read'])} shared libraries")
    else:
        for r in record["prune"]["entries"]:
            print(f"{r['status']:<11} {r['bytes'] / 1e6:8.1f} MB  {r['path']}  {' '.join(r['read'][:2])}")
        print(f"pruned {record['prune']['pruned_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
