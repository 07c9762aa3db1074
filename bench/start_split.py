"""What the first seconds of a ComfyUI process are made of on a GPU host: Python, torch's import, the GPU opened.

Usage (on the GPU host): python3 bench/start_split.py --json OUT.json [--rounds 5] [--seed 1]

Each probe is a fresh Python process that stamps, against the parent's clock at its spawn, the end of
each step: the interpreter up, `import torch`, CUDA initialised (the driver and the device count), the
device's properties, the primary context (free memory read, as ComfyUI's model management does at
import), and a first kernel. `overlap` opens the GPU in a thread right after `import torch` while the
main thread imports the modules ComfyUI imports next; `serial` does the same work one after the other.
The rounds run the probes in an order drawn from --seed. One further run under python's import timer
says which modules `import torch` spends its time in. Prints a table of medians; writes every run to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import importtime  # noqa: E402

# The modules ComfyUI v0.33.0 imports after torch on its way to listening (its own aside): the part of its
# import time an open of the GPU could hide behind.
AFTER_TORCH = ("numpy", "safetensors", "PIL.Image", "transformers", "scipy.signal", "aiohttp", "sqlalchemy",
               "einops", "spandrel", "av")

STEPS = """
import json, sys, time
t0 = float(sys.argv[1]); marks = []
def mark(name): marks.append([name, round(time.time() - t0, 3)])
mark("python")
import torch; mark("import torch")
torch.cuda.init(); mark("cuda init")
torch.cuda.get_device_properties(0); mark("properties")
torch.cuda.mem_get_info(); mark("context")
torch.ones(1, device="cuda").add_(1); torch.cuda.synchronize(); mark("first kernel")
print(json.dumps(marks))
"""

AFTER = """
import importlib, json, sys, threading, time
t0 = float(sys.argv[1]); mode = sys.argv[2]; mods = sys.argv[3].split(","); marks = []
def mark(name): marks.append([name, round(time.time() - t0, 3)])
def open_gpu():
    torch.cuda.init(); torch.cuda.mem_get_info()
    torch.ones(1, device="cuda").add_(1); torch.cuda.synchronize(); mark("gpu open")
missing = []
def imports():
    for m in mods:
        try: importlib.import_module(m)
        except ImportError: missing.append(m)
    mark("imports done")
mark("python")
import torch; mark("import torch")
if mode == "overlap":
    t = threading.Thread(target=open_gpu); t.start(); imports(); t.join()
else:
    open_gpu(); imports()
mark("all")
print(json.dumps(marks))
print(json.dumps({"missing": missing}))
"""


def run_probe(code: str, *args: str) -> tuple[list[list], list[str]]:
    """The probe's marks (step, s from the spawn), its exit included, and the modules it could not import."""
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, repr(t0), *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"probe failed: {out.stderr.strip().splitlines()[-1:]}")
    lines = out.stdout.strip().splitlines()
    stamped = [line for line in lines if line.startswith('[["python"')]
    if not stamped:
        raise RuntimeError(f"probe printed no marks: {lines[-3:]}")
    marks = json.loads(stamped[-1])
    missing = next((json.loads(line)["missing"] for line in lines if line.startswith('{"missing"')), [])
    return marks + [["exit", round(time.time() - t0, 3)]], missing


PROBES = {
    "steps": lambda: run_probe(STEPS),
    "serial": lambda: run_probe(AFTER, "serial", ",".join(AFTER_TORCH)),
    "overlap": lambda: run_probe(AFTER, "overlap", ",".join(AFTER_TORCH)),
}


def import_split(top: int = 15) -> dict:
    """`import torch` under python's import timer: cumulative seconds of its heaviest modules, and own seconds
    summed by top-level package."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch"], capture_output=True, text=True)
    table = importtime.rows(out.stderr.splitlines())
    heaviest = sorted(table, key=lambda r: -r.cumulative_s)[:top]
    return {"cumulative": [{"module": r.module, "s": round(r.cumulative_s, 3)} for r in heaviest],
            "self_by_package": {k: round(v, 3) for k, v in list(importtime.own_by_package(table).items())[:top]}}


def host_facts() -> dict:
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None
    import torch  # noqa: PLC0415 - the host's torch, for its version and place only
    facts = {
        "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
        "cpu": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), None),
        "torch_dir": str(Path(torch.__file__).parent),
        "torch_fs": sh("df", "-T", str(Path(torch.__file__).parent)),
        "driver": sh("nvidia-smi", "--query-gpu=driver_version,persistence_mode,name", "--format=csv,noheader"),
        "CUDA_MODULE_LOADING": os.environ.get("CUDA_MODULE_LOADING"),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "pycache_prefix": sys.pycache_prefix,
        "criu": shutil.which("criu"), "cuda_checkpoint": shutil.which("cuda-checkpoint"),
        "cap_eff": next((ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines()
                         if ln.startswith("CapEff")), None),
    }
    try:
        import ctypes  # noqa: PLC0415
        cuda = ctypes.CDLL("libcuda.so.1")
        facts["driver_checkpoint_api"] = all(hasattr(cuda, f) for f in (
            "cuCheckpointProcessLock", "cuCheckpointProcessCheckpoint", "cuCheckpointProcessRestore"))
    except OSError:
        facts["driver_checkpoint_api"] = None
    return facts


def bytecode_coverage(packages=("torch", "sympy", "transformers", "scipy", "numpy", "sqlalchemy")) -> dict:
    """Per package: the share of its modules with bytecode for this Python, and whether Python could write
    what is missing (an environment without it compiles those modules again at every start)."""
    import importlib.util  # noqa: PLC0415
    out = {}
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        sources = list(root.rglob("*.py"))
        compiled = sum(Path(importlib.util.cache_from_source(str(src))).exists() for src in sources)
        out[name] = {"modules": len(sources), "with_bytecode": compiled, "writable": os.access(root, os.W_OK)}
    return out


def medians(runs: list[list[list]]) -> dict[str, float]:
    names = [name for name, _ in runs[0]]
    return {n: round(statistics.median(dict(r)[n] for r in runs), 3) for n in names}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    bytecode = bytecode_coverage()   # before anything here imports them (an import may write what is missing)
    record = {"facts": {**host_facts(), "bytecode": bytecode}, "seed": args.seed, "after_torch": list(AFTER_TORCH),
              "runs": {name: [] for name in PROBES}, "not_importable": []}
    for round_no in range(1, args.rounds + 1):
        order = list(PROBES)
        rng.shuffle(order)
        for name in order:
            marks, missing = PROBES[name]()
            record["runs"][name].append(marks)
            record["not_importable"] = sorted(set(record["not_importable"]) | set(missing))
            print(f"round {round_no} {name}: {record['runs'][name][-1]}", file=sys.stderr, flush=True)
    record["import_torch"] = import_split()
    record["medians"] = {name: medians(runs) for name, runs in record["runs"].items()}
    args.json.write_text(json.dumps(record, indent=1))
    print(json.dumps(record["facts"], indent=1))
    for name, marks in record["medians"].items():
        print(f"\n{name} (median of {args.rounds}, s from the spawn):")
        previous = 0.0
        for step, at in marks.items():
            print(f"  {step:<14} {at:7.3f}  (+{at - previous:.3f})")
            previous = at
    print("\nnot importable here (left out of the imports):", record["not_importable"] or "none")
    print("import torch, heaviest cumulative:", json.dumps(record["import_torch"]["cumulative"][:10]))
    print("self time by package:", json.dumps(record["import_torch"]["self_by_package"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
