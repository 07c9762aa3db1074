"""The image's own workflow through the running ComfyUI, as a user would run it: the warm-up workflow (at
the profile's serving resolution) queued over HTTP, finished without error in /history, its image fetched
through /view at the requested size; first and steady timings (from the POST until the image bytes are in
hand), and the steady p50 against the profile's expected latency.
Needs --comfyui-url, the workflow file and the workflow's models in the cache (or baked into the image)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from serve.model_files import missing_models, model_roots
from serve.prompt import submit_prompt, wait_for_prompt, with_new_seed

from .context import Context
from .verdict import FAIL, LATENCY, PASS, SKIP, Check, latency_verdict, p50, image_size, skip

GROUP = "workflow"
LIMIT_S = 900.0
POLL_S = 0.02      # the warm-up polls every 0.25 s; a latency figure needs finer steps
LATENT_NODES = ("EmptySD3LatentImage", "EmptyLatentImage")


def _workflow(ctx: Context) -> Dict[str, Any]:
    if "workflow" not in ctx.memo:
        path = ctx.options.workflow_path
        ctx.memo["workflow"] = json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}
    return ctx.memo["workflow"]


def _models_root(ctx: Context) -> Path:
    return Path(ctx.options.cache_dir or ctx.expect.get("cache_mount", "/cache")) / "models"


def _missing(ctx: Context) -> List[str]:
    return missing_models(ctx.expect, _models_root(ctx))


def fetch_hint(ctx: Context) -> str:
    image, gpu = ctx.expect.get("image", "IMAGE"), ctx.profile["name"]
    return (f"fetch them with `invoke models.fetch --gpu={gpu} --image {image} --to CACHE` and pass "
            "`invoke smoke --cache CACHE`")


def check_models(ctx: Context) -> Check:
    if not ctx.options.workflow_path:
        return skip("no --workflow given")
    if not _workflow(ctx):
        return skip("this image has no warm-up workflow")
    wanted = ctx.expect.get("warmup", {}).get("models", [])
    missing = _missing(ctx)
    if missing:
        note = f"not in {_models_root(ctx)}: {', '.join(missing)}; {fetch_hint(ctx)}"
        if ctx.options.require_models:
            return Check(FAIL, measured=f"{len(wanted) - len(missing)}/{len(wanted)}", expected=len(wanted),
                         note=f"--require-models: {note}")
        return Check(SKIP, measured=f"{len(wanted) - len(missing)}/{len(wanted)}", expected=len(wanted), note=note)
    where = " or ".join(str(root) for root in model_roots(ctx.expect, _models_root(ctx)))
    return Check(PASS, measured=f"{len(wanted)}/{len(wanted)}", expected=len(wanted), note=f"found in {where}")


def requested_size(workflow: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    for node in workflow.values():
        inputs = node.get("inputs", {})
        if node.get("class_type") in LATENT_NODES and "width" in inputs and "height" in inputs:
            return int(inputs["width"]), int(inputs["height"])
    return None


def _output_image(url: str, entry: Dict[str, Any]) -> Tuple[str, bytes]:
    images = [image for output in (entry.get("outputs") or {}).values() for image in output.get("images", [])]
    if not images:
        raise RuntimeError("the prompt finished without an output image in /history")
    image = images[-1]
    query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                                    "type": image.get("type", "output")})
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=30) as response:
        return image["filename"], response.read()


def run_once(url: str, workflow: Dict[str, Any]) -> Tuple[float, str, Optional[Tuple[int, int]]]:
    """One prompt as a user sends it: seconds from submit until the image bytes are fetched, the output file
    and its picture size."""
    started = time.monotonic()
    entry = wait_for_prompt(url, submit_prompt(url, with_new_seed(workflow), "kiln-smoke"), started, LIMIT_S, POLL_S)
    status = entry.get("status", {}).get("status_str")
    if status not in (None, "success"):
        raise RuntimeError(f"the prompt ended with status {status!r} in /history")
    name, data = _output_image(url, entry)
    return time.monotonic() - started, name, image_size(data)


def check_prompt(ctx: Context) -> Check:
    workflow = _workflow(ctx)
    want = requested_size(workflow)
    expected = f"{want[0]}x{want[1]}" if want else "an image"
    if not ctx.options.comfyui_url:
        return skip("no --comfyui-url given", expected=expected)
    if not workflow:
        return skip("this image has no warm-up workflow")
    if _missing(ctx):
        return skip("models not in the cache (see workflow.models)", expected=expected)
    url = ctx.options.comfyui_url.rstrip("/")
    runs = [run_once(url, workflow) for _ in range(1 + int(LATENCY["steady_runs"]))]
    timings = {"first_s": round(runs[0][0], 3), "steady_s": [round(r[0], 3) for r in runs[1:]],
               "steady_p50_s": round(p50([r[0] for r in runs[1:]]), 3)}
    ctx.memo["workflow_timings"] = timings
    wrong = [(name, size) for _, name, size in runs if size is None or (want and size != want)]
    sizes = f"{runs[-1][2][0]}x{runs[-1][2][1]}" if runs[-1][2] else "not an image"
    timing = f"first {timings['first_s']:.3f} s, steady p50 {timings['steady_p50_s']:.3f} s ({len(runs) - 1} runs)"
    if wrong:
        name, size = wrong[0]
        got = f"{size[0]}x{size[1]}" if size else "not an image"
        return Check(FAIL, measured=got, expected=expected, note=f"{name}: {got}, requested {expected}; {timing}")
    return Check(PASS, measured=sizes, expected=expected, note=f"{len(runs)} prompts, image {runs[-1][1]}; {timing}")


def check_latency(ctx: Context) -> Check:
    profile = ctx.profile
    expected = profile.get("expected_latency_s")
    shown = f"<= {expected:g} s +{LATENCY['slack']:.0%}" if expected else None
    timings = ctx.memo.get("workflow_timings")
    if not timings:
        return skip("no steady runs (see workflow.prompt)", expected=shown)
    verdict, note = latency_verdict(timings["steady_p50_s"], expected, ctx.has_gpu(), ctx.gpu_reason() or "",
                                    profile["name"], confidence=profile.get("expected_latency_confidence", "measured"))
    if expected:
        note += (f"; expectation {profile.get('expected_latency_confidence', '?')}: "
                 f"{profile.get('expected_latency_source', '?')}")
    # three decimals: the table's number format would show a sub-10 ms p50 as 0.0
    return Check(verdict, measured=f"{timings['steady_p50_s']:.3f}", expected=shown, unit="s", note=note,
                 needs_gpu=not ctx.has_gpu())


CHECKS = [
    ("models", check_models),
    ("prompt", check_prompt),
    ("latency", check_latency),
]
