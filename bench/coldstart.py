"""Start to warm: from the ComfyUI process start until kiln's warm-up is done, split into phases, per lever.

Usage (on the GPU host, from the repository root; ComfyUI at the stack's commit unpacked in DIR):
  python3 bench/coldstart.py --comfyui DIR --models MODELS --work WORK --json OUT.json [--stack cuda13] [--group N]

Writes full-size synthetic weights into MODELS unless they are there (as bench/zimage_latency.py does),
then starts ComfyUI once per lever of bench/zimage/coldstart.yaml with the launch flags kiln renders for
the H200 and warms it up the way the image does (provision/container/serve: its wait for /system_stats,
its device prompt, the image's warm-up workflow with its steps set by serve.warmup.with_steps), in a loop
of its own that reads the warm-up's websocket to split each run by node.
After the warm-up, the first served request and three more show whether the server really was warm
(first served / steady p50 near 1). Results go to --json after every lever.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "provision" / "container")]

import yaml  # noqa: E402

from kiln.launch import profile_flags  # noqa: E402
from kiln.project import Project  # noqa: E402
from kiln.render.facts import image_facts  # noqa: E402
from kiln.render.context import sized_workflow  # noqa: E402
from serve.prompt import submit_prompt, wait_for_prompt, with_new_seed  # noqa: E402
from serve.warmup import DEVICE_PROMPT, wait_for_server, with_steps  # noqa: E402
from zimage.levers import insert_compile  # noqa: E402
from zimage.server import ComfyServer, Messages  # noqa: E402
from zimage.split import node_times  # noqa: E402
from coldstart_report import table  # noqa: E402
import importtime  # noqa: E402
from zimage_latency import ensure_models, header, models_yaml, request, smoke_workflow, workflow_for  # noqa: E402

GPU, IMAGE = "h200", "z-image-turbo"
LEVERS = ROOT / "bench" / "zimage" / "coldstart.yaml"
WARMUP_CLIENT = "kiln-warmup"   # the client id kiln's warm-up sends its prompts under
KILN_NODES = ("kiln_warmup", "kiln_output")
SERVED = 4


@dataclass(frozen=True)
class Lever:
    name: str
    what: str
    group: int
    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    page_cache: str = "warm"
    warmup: dict = field(default_factory=dict)
    workflow: str = ""
    inductor_cache: str = ""
    fresh_cache: bool = False
    importtime: bool = False
    smoke: bool = False
    preflight: str = ""
    bytecode: str = "compiled"
    prefetch: int = 0
    pycache: str = ""
    versus: str = ""


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--comfyui", type=Path, required=True)
    p.add_argument("--source-commit", help="the commit whose tree this is, where it was copied, not checked out")
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--levers", type=Path, default=LEVERS)
    p.add_argument("--group", type=int, action="append")
    p.add_argument("--only", action="append", help="lever names")
    p.add_argument("--stack", help="the stack of versions.lock (default: the image spec's)")
    p.add_argument("--size", choices=("small", "full"), default="full")
    p.add_argument("--cpu", action="store_true", help="plumbing check without a GPU (adds --cpu)")
    p.add_argument("--resolution", type=int, help="default: the profile's (a plumbing check on a CPU wants less)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the workflow's)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of the chosen levers, in the same order each round (keys name#2, ...)")
    p.add_argument("--shuffle", type=int, metavar="SEED",
                   help="each round in its own order, drawn from this seed (recorded with the results)")
    p.add_argument("--first-round", type=int, default=1, help="the number of the first round (a run that goes on)")
    p.add_argument("--budget-s", type=float, default=540)
    p.add_argument("--port", type=int, default=8391)
    return p.parse_args(argv)


def load(path: Path, groups: set[int], names: set[str]) -> tuple[list[dict], list[Lever]]:
    raw = yaml.safe_load(path.read_text())
    levers = [Lever(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}) for item in raw["levers"]]
    return raw["milestones"], [lv for lv in levers if (not groups or lv.group in groups) and (not names or lv.name in names)]


PAYLOAD = ROOT / "provision" / "container"


def without_bytecode(tree: Path, dest: Path) -> Path:
    """A fresh copy of `tree` with no compiled bytecode: what a read-only image without it starts from."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    return dest


def compile_tree(tree: Path) -> None:
    """Bytecode for every module, as the image's build compiles it."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", "--invalidation-mode", "checked-hash", str(tree)],
                   check=True, stdout=subprocess.DEVNULL)


class Preflight:
    """The image's GPU preflight (smoke.preflight) as its start script runs it: to its end before ComfyUI
    starts (serial), or beside ComfyUI's start with the warm-up waiting for it (beside)."""

    def __init__(self, payload: Path, expect: Path, env: dict):
        self.started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "smoke.preflight", "--expect", str(expect)],
                                        cwd=payload, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
        self.ended: list[float] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        self.stderr.extend(self.process.stderr.read().splitlines())
        self.process.wait()
        self.ended.append(time.perf_counter())

    def result(self, limit_s: float = 120) -> dict:
        code = self.process.wait(timeout=limit_s)
        deadline = time.perf_counter() + 5
        while not self.ended and time.perf_counter() < deadline:
            time.sleep(0.01)
        if code != 0:
            raise RuntimeError(f"the preflight failed ({code}): {' | '.join(self.stderr[-3:])}")
        return {"seconds": round(self.ended[0] - self.started, 3), "lines": self.stderr[-3:]}


class Prefetch:
    """The image's read of the model files beside the start (serve.prefetch), `streams` chunks in flight, niced
    as the start script runs it."""

    def __init__(self, payload: Path, facts: Path, models: Path, streams: int, env: dict):
        self.started = time.perf_counter()
        self.process = subprocess.Popen(["nice", "-n", "10", sys.executable, "-m", "serve.prefetch", "--facts", str(facts), "--models",
                                         str(models), "--streams", str(streams)], cwd=payload,
                                        env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        for line in self.process.stdout:
            self.lines.append((round(time.perf_counter() - self.started, 3), line.rstrip()))

    def result(self, origin: float) -> dict:
        """Its lines, stamped from the lever's origin; whether it had ended."""
        lag = self.started - origin
        return {"ended": self.process.poll() is not None, "exit": self.process.poll(),
                "lines": [[round(at + lag, 3), line] for at, line in self.lines]}


def pycache_prefix(work: Path, comfyui: Path) -> Path:
    """A bytecode tree for every folder on this Python's path (the standard library and every site folder),
    ComfyUI and the payload, kept apart from their own folders (PYTHONPYCACHEPREFIX, under which Python reads
    no in-tree __pycache__): every module then has bytecode, as in the image, whose venv pip compiled at the
    build with SOURCE_DATE_EPOCH set, so checked by hash as here. Compiled once per work folder; what
    compileall said (it ends 1 where a file does not compile, as some packages ship such files) is kept."""
    prefix, done = work / "pycache", work / "pycache.json"
    if not done.exists():
        roots = sorted({str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir()} - {str(Path.cwd())})
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                              "checked-hash", *roots, str(comfyui), str(PAYLOAD)],
                             env={**os.environ, "PYTHONPYCACHEPREFIX": str(prefix)}, capture_output=True, text=True)
        done.write_text(json.dumps({"roots": roots, "exit": out.returncode, "seconds": round(time.perf_counter() - started, 1),
                                    "pyc": sum(1 for _ in prefix.rglob("*.pyc")), "errors": out.stdout.splitlines()[-5:]}))
    return prefix


def install_kiln_nodes(comfyui: Path) -> None:
    """custom_nodes as the image has it: kiln's nodes only (a bench shim left by another bench removed)."""
    nodes = comfyui / "custom_nodes"
    for entry in nodes.iterdir():
        if entry.is_dir() and entry.name.startswith("kiln_") and entry.name not in KILN_NODES:
            shutil.rmtree(entry)
    for name in KILN_NODES:
        shutil.copytree(ROOT / "provision/container/comfyui_nodes" / name, nodes / name, dirs_exist_ok=True)


def drop_page_cache(files: list[Path]) -> dict:
    """Each model file out of the page cache (written back first); what fincore says is left resident."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return {"resident_after": resident(files)}


def resident(files: list[Path]) -> dict | None:
    """Bytes of each file in the page cache (util-linux fincore), or None where it is missing."""
    if not shutil.which("fincore"):
        return None
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,FILE", *map(str, files)],
                          capture_output=True, text=True)
    rows = [line.split(None, 1) for line in done.stdout.splitlines() if line.strip()]
    return {Path(name).name: int(size) for size, name in rows if size.isdigit()}


def prompt_for(graph: dict, lever: Lever, steps: int | None = None) -> dict:
    """The workflow as this lever runs it (compiled where it says), at `steps` sampler steps if given (set as
    the image's warm-up sets them, serve.warmup.with_steps)."""
    prompt = json.loads(json.dumps(graph))
    if lever.workflow == "compile":
        insert_compile(prompt, {})
    return with_steps(prompt, steps) if steps else prompt


def node_spans(timeline, graph: dict) -> dict[str, float]:
    """Seconds per node class of one run."""
    spans: dict[str, float] = {}
    for node, seconds in node_times(timeline)[1].items():
        name = graph.get(node, {}).get("class_type", node)
        spans[name] = round(spans.get(name, 0.0) + seconds, 3)
    return spans


def warm_run(server: ComfyServer, graph: dict, limit_s: float) -> dict:
    """One warm-up run the way serve.warmup does it (queue, poll /history), split by node from the websocket."""
    started = time.monotonic()
    prompt_id = submit_prompt(server.url, graph, WARMUP_CLIENT)
    wait_for_prompt(server.url, prompt_id, started, limit_s)
    seconds = time.monotonic() - started
    timeline = server.messages.prompts.get(prompt_id)
    return {"seconds": round(seconds, 3), "nodes": node_spans(timeline, graph) if timeline else None}


def phases(server: ComfyServer, milestones: list[dict]) -> dict:
    """Seconds from the process start to each milestone line, and each phase's own length."""
    at, previous, out = {}, 0.0, {}
    for m in milestones:
        stamp = server.output.first(m["line"])
        if stamp is None:   # missing, and the next phase's start unknown: neither gets the other's time
            out[m["phase"]], previous = None, None
            continue
        at[m["phase"]] = round(stamp - server.started, 3)
        out[m["phase"]] = round(at[m["phase"]] - previous, 3) if previous is not None else None
        previous = at[m["phase"]]
    return {"at_s": at, "phase_s": out}


def import_split(lines: list[tuple[float, str]], top: int = 15) -> list[dict]:
    """The slowest top-level imports."""
    return [{"module": r.module, "cumulative_s": round(r.cumulative_s, 3)}
            for r in importtime.slowest_top_level(importtime.rows(line for _, line in lines), top)]


def import_packages(lines: list[tuple[float, str]], top: int = 25) -> dict[str, float]:
    """Import time spent in each top-level package's own modules, the slowest first."""
    return {k: round(v, 3) for k, v in list(importtime.own_by_package(importtime.rows(line for _, line in lines)).items())[:top]}


def wait_alive(server: ComfyServer, limit_s: float) -> float:
    """The warm-up's own wait for /system_stats (its poll interval included), in slices, so that a server
    that exits before answering ends the lever at once."""
    started = time.perf_counter()
    while True:
        try:
            wait_for_server(server.url, 2)
            return time.perf_counter() - started
        except TimeoutError:
            if server.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {server.process.returncode} before answering") from None
            if time.perf_counter() - started > limit_s:
                raise


def warmup_plan(lever: Lever, image) -> tuple[int, int | None]:
    """Workflow runs and sampler steps of the warm-up: the lever's where it says (steps null: the workflow's
    own), else the image's (images/*.yaml warmup.runs and warmup.steps)."""
    return (lever.warmup.get("runs", image.warmup_runs),
            lever.warmup["steps"] if "steps" in lever.warmup else image.warmup_steps)


def run_lever(lever: Lever, args, baseline: list[str], subject, graph: dict, files: list[Path],
              milestones: list[dict]) -> dict:
    env, facts = dict(subject.image.env), image_facts(subject).to_json()
    flags = [f for f in baseline if f not in lever.drop] + list(lever.add)
    if args.cpu:
        flags = [f for f in flags if f not in ("--highvram", "--gpu-only", "--normalvram")] + ["--cpu"]
    lever_env = {**env, **lever.env, "PYTHONUNBUFFERED": "1", **({"KILN_CPU_MODE": "1"} if args.cpu else {})}
    if lever.importtime:
        lever_env["PYTHONPROFILEIMPORTTIME"] = "1"
    if lever.pycache == "prefix":
        lever_env["PYTHONPYCACHEPREFIX"] = str(pycache_prefix(args.work, args.comfyui))
    if lever.inductor_cache:
        cache = args.work / "inductor" / lever.inductor_cache
        if lever.fresh_cache:
            shutil.rmtree(cache, ignore_errors=True)
        lever_env.update(TORCHINDUCTOR_CACHE_DIR=str(cache), TRITON_CACHE_DIR=str(cache / "triton"))
    result: dict = {"what": lever.what, "flags": flags, "env": lever.env, "page_cache": lever.page_cache,
                    "versus": lever.versus or None}
    result["resident_before"] = resident(files)
    if lever.page_cache == "cold":
        result["dropped"] = drop_page_cache(files)
    limit = 900 if args.cpu else 300
    comfyui, payload = args.comfyui, PAYLOAD
    if lever.bytecode == "none":
        comfyui = without_bytecode(args.comfyui, args.work / "comfyui-no-bytecode")
        payload = without_bytecode(PAYLOAD, args.work / "payload-no-bytecode")
        lever_env["PYTHONDONTWRITEBYTECODE"] = "1"
    result["bytecode"], result["preflight_mode"] = lever.bytecode, lever.preflight or "none"
    origin, preflight, server, prefetch = time.perf_counter(), None, None, None
    try:
        if lever.prefetch:
            prefetch = Prefetch(payload, args.work / "kiln.json", args.models, lever.prefetch, lever_env)
        if lever.preflight:
            preflight = Preflight(payload, args.work / "kiln.json", lever_env)
            if lever.preflight == "serial":
                result["preflight"] = preflight.result()
        server = ComfyServer(comfyui, sys.executable, args.port, args.work, flags, lever_env,
                             args.work / "comfyui.log", stamp=True)
        server.client_id = WARMUP_CLIENT
        result["server_started_s"] = round(server.started - origin, 3)
        ready = wait_alive(server, 180)
        result["ready_s"] = round(time.perf_counter() - origin, 3)
        result["waited_s"] = round(ready, 3)
        if lever.preflight == "beside":
            result["preflight"] = preflight.result()
        server.messages = Messages(server.url, WARMUP_CLIENT)
        result.update(phases(server, milestones))
        runs_wanted, steps = warmup_plan(lever, subject.image)
        warm = prompt_for(graph, lever, steps)
        device = warm_run(server, DEVICE_PROMPT, limit)
        runs = [warm_run(server, with_new_seed(warm), limit) for _ in range(runs_wanted)]
        result["warm_s"] = round(time.perf_counter() - origin, 3)
        result["warmup"] = {"device_s": device["seconds"], "runs": runs, "steps": steps}
        served = [server.run(request(prompt_for(graph, lever), i), limit) for i in range(SERVED)]
        totals = [t.received - t.posted for t in served]
        result["served"] = {"first_s": round(totals[0], 3), "steady_p50_s": round(statistics.median(totals[1:]), 3),
                            "first_vs_steady": round(totals[0] / statistics.median(totals[1:]), 3)}
        if prefetch:
            result["prefetch"] = prefetch.result(origin)
        if lever.importtime:
            result["imports"] = import_split(server.output.lines)
            result["import_packages"] = import_packages(server.output.lines)
        if lever.smoke:
            result["smoke"] = smoke_workflow(server.url, prompt_for(graph, lever), facts, args.models, args.work)
    except Exception as exc:  # one lever failing must not lose the others
        result["error"] = f"{type(exc).__name__}: {exc}"[:400]
        result["log_tail"] = [line[:300] for _, line in server.output.lines[-8:]] if server and server.output else []
    finally:
        if server:
            server.stop()
        for helper in (preflight, prefetch):
            if helper and helper.process.poll() is None:
                helper.process.kill()
    return result


def main(argv=None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    milestones, levers = load(args.levers, set(args.group or ()), set(args.only or ()))
    subject = Project(ROOT).subject(GPU, IMAGE, args.stack)
    resolution = args.resolution or subject.gpu.serving.resolution
    baseline = profile_flags(subject.gpu, subject.image, subject.flags) + list(subject.image.flags)
    results = {**header(subject, resolution, baseline, args.source_commit), "milestones": milestones,
               "shuffle_seed": args.shuffle}
    if args.first_round > 1 and args.json.exists():   # a run that goes on: its earlier rounds kept
        results = json.loads(args.json.read_text())
    save = lambda: args.json.write_text(json.dumps(results, indent=1) + "\n")  # noqa: E731
    results["models"] = ensure_models(args.models, args.size)
    install_kiln_nodes(args.comfyui)
    models_yaml(args.work, args.models)
    graph = workflow_for(resolution, args.steps, sized_workflow(subject))   # what the image runs: warmup.json
    files = sorted(p for p in args.models.rglob("*.safetensors"))
    (args.work / "kiln.json").write_text(json.dumps(image_facts(subject).to_json()))   # the preflight's
    compile_tree(args.comfyui)
    compile_tree(PAYLOAD)
    results.setdefault("order", {})
    save()
    draw = random.Random(args.shuffle)
    for _ in range(1, args.first_round):   # the orders the earlier rounds drew
        draw.sample(levers, len(levers))
    for round_ in range(args.first_round, args.first_round + args.repeat):
        order = draw.sample(levers, len(levers)) if args.shuffle is not None else levers
        results["order"][str(round_)] = [lv.name for lv in order]
        for lever in order:
            key = lever.name if round_ == 1 else f"{lever.name}#{round_}"
            if time.perf_counter() - started > args.budget_s - 45:
                results["levers"][key] = {"what": lever.what, "skipped": "out of time in this run"}
                continue
            print(f"lever {key} ...", flush=True)
            results["levers"][key] = run_lever(lever, args, baseline, subject, graph, files, milestones)
            print(json.dumps({key: {k: v for k, v in results["levers"][key].items()
                                    if k not in ("resident_before", "dropped")}}), flush=True)
            save()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    save()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
