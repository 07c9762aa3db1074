"""Z-Image-Turbo latency through the real ComfyUI server on a GPU host, against the compute floor.

Usage (on the GPU host, from the repository root; ComfyUI at the zimage stack's commit unpacked in DIR):
  python3 bench/zimage_latency.py --comfyui DIR --models MODELS --work WORK --json OUT.json [--group 1|2]

Writes full-size synthetic weights (kiln.models.synthetic, the real shapes) into MODELS unless they are
there, measures the bf16 matmul rate with the smoke suite's own probe, computes the DiT floor
(bench/zimage/floor.py), then starts ComfyUI once per lever (bench/zimage/levers.yaml) and sends the
image's workflow (images/workflows/z-image-turbo.json) at the profile's resolution through /prompt,
each request with a new prompt text and seed: first request after ready, then --prompts more for
p50/p90 and the split (text encode, per sampling step, VAE decode) read from the server's websocket.
A request ends when the client holds the image bytes: over the websocket from kiln's output node, else
read through /history and /view. Then one request with a fixed seed and prompt keeps the sampled latent
and the received image, compared with the reference lever's against bench/zimage/quality.yaml.
Results go to --json after every lever, so a run cut short keeps what it measured; --group picks
one group of levers, so the whole set can be measured in several shorter runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "provision" / "container")]

from kiln.launch import profile_flags  # noqa: E402
from kiln.events import ignore  # noqa: E402
from kiln.models.synthetic import planned_sizes, write_synthetic  # noqa: E402
from kiln.project import Project  # noqa: E402
from kiln.render.context import sized_workflow  # noqa: E402
from kiln.render.facts import image_facts  # noqa: E402
from serve.prompt import with_new_seed  # noqa: E402
from zimage.floor import compute_floor  # noqa: E402
from zimage.levers import LEVERS, Lever, load_levers  # noqa: E402
from zimage.quality import BOUNDS, compare, keep, with_latent_saved  # noqa: E402
from zimage.server import ComfyServer  # noqa: E402
from zimage.split import node_ids, split, summary  # noqa: E402

GPU, IMAGE = "h200", "z-image-turbo"
TEXT = "a red bicycle leaning on a white wall, morning light, photo {i:03d}"
LEVER_ESTIMATE_S = 60


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--comfyui", type=Path, required=True)
    p.add_argument("--source-commit", help="the commit whose tree this is, where the tree was copied rather than "
                   "checked out (git here would name a stale commit); recorded as given")
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--levers", type=Path, default=LEVERS, help="the lever file (default: %(default)s)")
    p.add_argument("--group", type=int, action="append")
    p.add_argument("--only", action="append", help="lever names")
    p.add_argument("--prompts", type=int, default=10)
    p.add_argument("--resolution", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--size", choices=("small", "full"), default="full")
    p.add_argument("--cpu", action="store_true", help="plumbing check without a GPU (adds --cpu)")
    p.add_argument("--budget-s", type=float, default=540)
    p.add_argument("--port", type=int, default=8390)
    p.add_argument("--stack", help="build the launch line and facts from this stack of versions.lock "
                                   "(default: the one the image spec names)")
    p.add_argument("--extra-site", type=Path, help="packages a lever with extra_site puts first on PYTHONPATH")
    return p.parse_args(argv)


def ensure_models(models: Path, size: str) -> dict:
    wanted = planned_sizes(size)
    present = all((models / path).is_file() and (models / path).stat().st_size == n for path, n in wanted.items())
    started = time.perf_counter()
    if not present:
        # one process per file: the generator is single-threaded and the diffusion model is 12 GB
        roles = ("diffusion_model", "text_encoder", "vae")
        with ProcessPoolExecutor(len(roles)) as pool:
            list(pool.map(write_synthetic, [models] * 3, [size] * 3, [0] * 3, [ignore] * 3, [(r,) for r in roles]))
    return {"size": size, "bytes": sum(wanted.values()), "written_s": None if present else
            round(time.perf_counter() - started, 1)}


def install_nodes(comfyui: Path) -> None:
    nodes = comfyui / "custom_nodes"
    shims = ROOT / "bench/zimage/shims"
    for source in (ROOT / "provision/container/comfyui_nodes/kiln_warmup", ROOT / "provision/container/comfyui_nodes/kiln_output",
                   shims / "kiln_card_rmsnorm", shims / "kiln_bench_compile", shims / "kiln_bench_sdpa"):
        shutil.copytree(source, nodes / source.name, dirs_exist_ok=True)


def models_yaml(work: Path, models: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "models.yaml").write_text(json.dumps({"kiln": {"base_path": str(models), "diffusion_models": "diffusion_models",
                                                          "text_encoders": "text_encoders", "vae": "vae"}}))


def matmul_tflops(gpu_profile: dict) -> tuple[float, str]:
    """The smoke suite's bf16 matmul probe, as `invoke smoke` runs it on this card."""
    from smoke.checks_perf import check_matmul_bf16
    from smoke.context import Context, Options
    check = check_matmul_bf16(Context({"profile": gpu_profile, "pins": {}}, Options(expect_path="")))
    if check.measured is None:
        raise RuntimeError(f"the smoke matmul probe measured nothing: {check.note}")
    return float(check.measured), check.note


def caption_tokens(comfyui: Path) -> int:
    from transformers import Qwen2Tokenizer
    tokenizer = Qwen2Tokenizer.from_pretrained(str(comfyui / "comfy/text_encoders/qwen25_tokenizer"))
    text = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n".format(TEXT.format(i=0))
    return len(tokenizer(text)["input_ids"])


class PeakMemory:
    """Highest GPU memory in use on the card while a lever runs (nvidia-smi, MiB, every 0.2 s), in GiB."""

    def __init__(self):
        self.peak_mib, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.2):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.peak_mib = max(self.peak_mib, max(int(x) for x in out.split()))
            except (OSError, ValueError, subprocess.SubprocessError):
                return

    def stop(self) -> float | None:
        self._stop.set()
        return round(self.peak_mib / 1024, 2) if self.peak_mib else None


def workflow_for(resolution: int, steps: int | None, graph: dict | None = None) -> dict:
    """The image's workflow file (the levers' common ground), or `graph` (kiln's rendering of it), at this size."""
    graph = json.loads(json.dumps(graph)) if graph else json.loads((ROOT / "images/workflows/z-image-turbo.json").read_text())
    for node in graph.values():
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"].update(width=resolution, height=resolution)
        if node["class_type"] == "KSampler" and steps:
            node["inputs"]["steps"] = steps
    return graph


def request(graph: dict, i: int) -> dict:
    """A user's request: the warm-up's fresh seed, and a new prompt text so the text encoder runs too."""
    fresh = with_new_seed(graph)
    for node in fresh.values():
        if node["class_type"] == "CLIPTextEncode":
            node["inputs"]["text"] = TEXT.format(i=i)
    return fresh


def kiln_warmup(url: str, graph: dict, models: Path, manifest: list[dict], work: Path) -> dict:
    """What the image runs before it reports ready (provision/container/serve/warmup.py)."""
    from serve.warmup import warm_device, warm_workflow
    path = work / "warmup.json"
    path.write_text(json.dumps(graph))
    return {**warm_device(url, 300), **warm_workflow(url, {"warmup": {"models": manifest}}, path, models, 600)}


def smoke_workflow(url: str, graph: dict, facts: dict, models: Path, work: Path) -> dict:
    """`invoke smoke`'s workflow checks (provision/container/smoke), host mode, against this server."""
    (work / "smoke-cache").mkdir(parents=True, exist_ok=True)
    link = work / "smoke-cache" / "models"
    if not link.exists():
        link.symlink_to(models)
    (work / "smoke-expect.json").write_text(json.dumps(facts))
    (work / "smoke-workflow.json").write_text(json.dumps(graph))
    report = work / "smoke-report.json"
    done = subprocess.run([sys.executable, "-m", "smoke", "--host", "--expect", str(work / "smoke-expect.json"),
                           "--comfyui-url", url, "--workflow", str(work / "smoke-workflow.json"), "--cache-dir",
                           str(work / "smoke-cache"), "--require-models", "--require-gpu", "--only", "workflow",
                           "--json", str(report)], cwd=ROOT / "provision" / "container", capture_output=True,
                          text=True, timeout=300)
    checks = json.loads(report.read_text()).get("checks", []) if report.is_file() else []
    return {"exit_code": done.returncode, "table": done.stdout[-3000:], "checks": checks}


def run_lever(lever: Lever, args, baseline: list[str], env: dict, graph: dict, manifest: list[dict],
              prompt_limit: float, facts: dict) -> dict:
    flags = lever.flags(baseline)
    if args.cpu:  # --cpu shares the VRAM modes' exclusive group
        flags = [f for f in flags if f not in ("--highvram", "--gpu-only", "--normalvram")] + ["--cpu"]
    lever_env = {**env, **lever.env}
    if lever.extra_site and args.extra_site:
        lever_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.extra_site), os.environ.get("PYTHONPATH")]))
    if lever.inductor_cache:
        cache = args.work / "inductor" / lever.inductor_cache
        if lever.fresh_cache:
            shutil.rmtree(cache, ignore_errors=True)
        lever_env.update(TORCHINDUCTOR_CACHE_DIR=str(cache), TRITON_CACHE_DIR=str(cache / "triton"))
    peak = PeakMemory()
    server = ComfyServer(args.comfyui, sys.executable, args.port, args.work, flags, lever_env, args.work / "comfyui.log")
    result = {"what": lever.what, "flags": flags, "env": lever.env}
    try:
        result["ready_s"] = round(server.wait_ready(120), 2)
        if lever.warmup:
            result["warmup"] = kiln_warmup(server.url, lever.prompt(graph), args.models, manifest, args.work)
        prompt = lever.prompt(graph)
        ids = node_ids(prompt)
        first = split(server.run(request(prompt, 0), prompt_limit), ids)
        result["first"] = first.row()
        result["steady"] = summary([split(server.run(request(prompt, i), prompt_limit), ids)
                                    for i in range(1, args.prompts + 1)])
        result["first_vs_p50"] = round(first.total_s / result["steady"]["p50_s"], 3)
        result["quality"] = quality_run(server, lever, prompt, args.work, prompt_limit)
        if lever.smoke:
            result["smoke"] = smoke_workflow(server.url, prompt, facts, args.models, args.work)
    except Exception as exc:  # one lever failing must not lose the others
        result["error"] = f"{type(exc).__name__}: {exc}"[:400]
        result["log_tail"] = log_errors(args.work / "comfyui.log")
    finally:
        server.stop()
        result["peak_vram_gib"] = peak.stop()
    return result


def quality_run(server: ComfyServer, lever: Lever, prompt: dict, work: Path, limit_s: float) -> dict:
    """One request with the fixed seed and prompt; its latent and image kept for the comparison."""
    prefix = f"kiln_quality/{lever.name}"
    timeline = server.run(with_latent_saved(prompt, prefix), limit_s)
    keep(work / "output", prefix, timeline.image, work / "quality", lever.name)
    if lever.name == BOUNDS["reference"]:
        return {"reference": True, "image_bytes": timeline.image_bytes}
    return {**compare(work / "quality", lever.name), "lossy": lever.lossy}


def log_errors(log: Path, keep: int = 6) -> list[str]:
    """The server's last exception lines: a failed prompt's reason is in its log, not in /history's cut text."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return [line[:300] for line in lines if "Error" in line or "Exception" in line][-keep:]


def source_state() -> dict:
    """Which commit of this repository ran, and whether the tree differed from it."""
    def git(*cmd):
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def peak(result: dict):
    # records before 2026-11-29's fifth run named it peak_vram_gb; the value was GiB there too
    return result.get("peak_vram_gib", result.get("peak_vram_gb"))


def table(results: dict) -> str:
    """p50 is to the image bytes in the client's hands (records before that change end at execution_success)."""
    run_floor = results.get("floor", {}).get("seconds")
    rows = ["| lever | ready s | first s | p50 s | p90 s | text ms | step ms | decode ms | save ms | fetch ms | KB | "
            "x floor | latent dB | image dB | peak GiB |", "|---" * 15 + "|"]
    for name, r in results["levers"].items():
        if "steady" not in r:
            reason = (r.get("error") or r.get("skipped", ""))[:120].replace("|", "/")
            rows.append(f"| {name} | {r.get('ready_s', '')} | {reason} |" + "|" * 12)
            continue
        s = r["steady"]
        ms = lambda v: f"{v * 1e3:.0f}" if v is not None else "-"  # noqa: E731
        floor_s = r.get("floor_s", run_floor)   # merged records carry the floor of their own run
        ratio = f"{s['p50_s'] / floor_s:.2f}" if floor_s else "-"
        quality = r.get("quality", {})
        size = f"{s['image_bytes'] / 1024:.0f}" if s.get("image_bytes") else "-"
        rows.append(f"| {name} | {r['ready_s']} | {r['first']['total_s']:.3f} | {s['p50_s']:.3f} | {s['p90_s']:.3f} | "
                    f"{ms(s['text_s'])} | {ms(s['step_s'])} | {ms(s['decode_s'])} | {ms(s.get('save_s'))} | "
                    f"{ms(s.get('fetch_s'))} | {size} | {ratio} | {quality.get('snr_db', '-')} | "
                    f"{quality.get('image_psnr_db', '-')} | {peak(r)} |")
    return "\n".join(rows)


def header(subject, resolution: int, baseline: list[str], source_commit: str | None) -> dict:
    """What a bench record starts with: what ran (stack, versions, flags, this repository's commit) and where."""
    import torch
    return {"gpu": GPU, "image": IMAGE, "stack": subject.lock.name, "comfyui": subject.lock.comfyui.version,
            "resolution": resolution, "baseline_flags": baseline,
            "source": {"commit": source_commit, "given": True} if source_commit else source_state(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "levers": {}}


def main(argv=None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    project = Project(ROOT)
    subject = project.subject(GPU, IMAGE, args.stack)
    resolution = args.resolution or subject.gpu.serving.resolution
    baseline = profile_flags(subject.gpu, subject.image, subject.flags) + list(subject.image.flags)
    results = header(subject, resolution, baseline, args.source_commit)
    save = lambda: args.json.write_text(json.dumps(results, indent=1) + "\n")  # noqa: E731
    results["models"] = ensure_models(args.models, args.size)
    install_nodes(args.comfyui)
    models_yaml(args.work, args.models)
    graph = workflow_for(resolution, args.steps)
    rendered = workflow_for(resolution, args.steps, sized_workflow(subject))  # what the image runs: its output node
    manifest = [{"folder": m.folder, "file": m.file} for m in subject.image.models]
    steps = next(n["inputs"]["steps"] for n in graph.values() if n["class_type"] == "KSampler")
    if not args.cpu:
        rate, note = matmul_tflops(subject.gpu.model_dump(mode="json"))
        floor = compute_floor(resolution, resolution, caption_tokens(args.comfyui), steps, rate)
        results["floor"] = {"seconds": floor.seconds, "formula": floor.formula(), "matmul_note": note,
                            "tflop_per_step": floor.tflop_per_step, "matmul_tflops": rate}
        print("floor:", floor.formula(), flush=True)
    save()
    prompt_limit = 600 if args.cpu else 180
    shutil.rmtree(args.work / "quality", ignore_errors=True)  # a comparison uses this run's reference only
    for lever in load_levers(set(args.group or ()), set(args.only or ()), args.levers):
        if time.perf_counter() - started > args.budget_s - LEVER_ESTIMATE_S:
            results["levers"][lever.name] = {"what": lever.what, "skipped": "out of time in this run"}
            continue
        print(f"lever {lever.name} ...", flush=True)
        results["levers"][lever.name] = run_lever(lever, args, baseline, dict(subject.image.env),
                                                  rendered if lever.workflow == "rendered" else graph, manifest,
                                                  prompt_limit, image_facts(subject).to_json())
        print(json.dumps({lever.name: results["levers"][lever.name]}), flush=True)
        save()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    save()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
