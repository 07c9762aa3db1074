"""Warm-up before ready: python3 -m serve.warmup --facts /opt/kiln/kiln.json --url URL --marker FILE

1. wait until ComfyUI answers /system_stats;
2. warm the device inside the server: a one-node prompt with the image's KilnDeviceWarmup custom
   node creates the CUDA context, cuBLAS and cuDNN handles and primes the allocator, no models needed;
3. when every model of the image's warm-up workflow is present under the cache mount (after the end of a
   deployment's fetch running beside the server, where its marker says one runs), run that workflow
   through the HTTP API as the image plans (runs, steps);
4. log one JSON line with the timings and write the readiness marker the healthcheck reads.
Each phase starts with one line `kiln: phase <name>: ...` in the container log (`invoke run` shows them as
they come); start to warm counts from KILN_STARTED, which the start script sets.
Stdlib plus an optional torch; never imports the toolkit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

from lines import emit

from .model_files import arriving, missing_models, wait_for_fetch
from .prompt import POLL_S, http_json, submit_prompt, wait_for_prompt, with_new_seed


def say(phase: str, text: str) -> None:
    emit(f"kiln: phase {phase}: {text}")


def since_start() -> Optional[float]:
    """Seconds since the start script began (KILN_STARTED, epoch seconds), if it said."""
    try:
        return time.time() - float(os.environ["KILN_STARTED"])
    except (KeyError, ValueError):
        return None


def wait_for_server(url: str, limit_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        try:
            http_json(url + "/system_stats", timeout=2)
            return time.monotonic() - started
        except (OSError, ValueError):
            time.sleep(POLL_S)
    raise TimeoutError(f"ComfyUI did not answer {url}/system_stats within {limit_s:.0f} s")


DEVICE_PROMPT = {"1": {"class_type": "KilnDeviceWarmup", "inputs": {"size": 2048}}}


def warm_device(url: str, limit_s: float) -> Dict[str, Any]:
    """The server's own device warm-up, through its HTTP API (see comfyui_nodes/kiln_warmup)."""
    return {"device_s": round(run_prompt(url, DEVICE_PROMPT, limit_s), 3)}


def run_prompt(url: str, workflow: Dict[str, Any], limit_s: float) -> float:
    started = time.monotonic()
    wait_for_prompt(url, submit_prompt(url, workflow), started, limit_s)
    return time.monotonic() - started


def warm_workflow(url: str, facts: Dict[str, Any], workflow_path: Path, models_root: Path,
                  limit_s: float, arriving_marker: Optional[Path] = None) -> Dict[str, Any]:
    workflow = json.loads(workflow_path.read_text()) if workflow_path.is_file() else {}
    if not workflow:
        return {"workflow": "none in this image"}
    if arriving(arriving_marker):
        say("warm-up", f"waiting for the deployment's fetch of {len(facts.get('warmup', {}).get('models', []))} "
                       "model file(s)")
        wait_for_fetch(arriving_marker)
    missing = missing_models(facts, models_root)
    if missing and os.environ.get("KILN_SERVE_WITHOUT_MODELS") == "1":
        return {"workflow": f"skipped: models not in the cache: {', '.join(missing)}"}
    if missing:
        # ready without its models, the server would fail every prompt: not healthy, and say how to fix it
        raise RuntimeError(f"models not in the cache: {', '.join(missing)} (under {models_root}); fetch them "
                           "with `invoke models.fetch --to <cache>`, or set KILN_SERVE_WITHOUT_MODELS=1 to serve "
                           "without them")
    plan = facts.get("warmup", {})
    runs, steps = int(plan.get("runs") or 2), plan.get("steps")
    warm = with_steps(workflow, steps) if steps else workflow
    seconds = []
    for run in range(1, runs + 1):
        say("warm-up", f"workflow run {run} of {runs}" + (": the models to the GPU, kernels chosen" if run == 1 else
                                                           f": the steady state (run 1 took {seconds[0]:.1f} s)"))
        seconds.append(run_prompt(url, with_new_seed(warm), limit_s))
    result = {"workflow": workflow_path.name, "runs": runs, "steps": steps, "first_s": round(seconds[0], 3)}
    if runs > 1:
        result["second_s"] = round(seconds[1], 3)
    return result


def steps_nodes(workflow: Dict[str, Any]) -> list:
    """The nodes that set a sampler's step count: samplers and schedulers with a `steps` input."""
    return [node for node in workflow.values() if "steps" in node.get("inputs", {})
            and any(word in node.get("class_type", "") for word in ("Sampler", "Scheduler"))]


def with_steps(workflow: Dict[str, Any], steps: int) -> Dict[str, Any]:
    """The workflow with every sampler at `steps` steps (the warm-up's own; the served workflow keeps its)."""
    fresh = json.loads(json.dumps(workflow))
    for node in steps_nodes(fresh):
        node["inputs"]["steps"] = int(steps)
    return fresh


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="serve.warmup")
    parser.add_argument("--facts", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--failed", help="on failure, write the reason here (the healthcheck shows it)")
    parser.add_argument("--workflow", default="/opt/kiln/warmup.json")
    parser.add_argument("--models", help="model folder (default: models/ under the image's cache mount)")
    parser.add_argument("--arriving", help="a file that names this boot while a deployment fetches the models "
                                             "beside the server: wait for them")
    parser.add_argument("--limit-s", type=float, default=float(os.environ.get("KILN_WARMUP_LIMIT_S", "900")))
    args = parser.parse_args(argv)
    facts = json.loads(Path(args.facts).read_text())
    started = time.monotonic()
    result: Dict[str, Any] = {"server_s": round(wait_for_server(args.url, args.limit_s), 3)}
    answered = since_start()
    say("warm-up", (f"ComfyUI answered {answered:.1f} s after the container started" if answered is not None
                    else f"ComfyUI answered after {result['server_s']:.1f} s") + "; warming the GPU")
    result.update(warm_device(args.url, args.limit_s))
    models = Path(args.models or f"{facts['cache_mount']}/models")
    result.update(warm_workflow(args.url, facts, Path(args.workflow), models, args.limit_s,
                                Path(args.arriving) if args.arriving else None))
    result["total_s"] = round(time.monotonic() - started, 3)
    start_to_warm = since_start()
    if start_to_warm is not None:
        result["start_to_warm_s"] = round(start_to_warm, 3)
    say("ready", f"warm {start_to_warm:.1f} s after the container started" if start_to_warm is not None
        else f"warm-up done in {result['total_s']:.1f} s")
    emit(json.dumps({"kiln_warmup": result}, sort_keys=True))
    marker = Path(args.marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(result) + "\n")
    return 0


def fail(reason: str, failed_path: Optional[str]) -> int:
    """Say why on stdout (one JSON line) and where the healthcheck reads it."""
    emit(json.dumps({"kiln_warmup": {"error": reason}}))
    if failed_path:
        path = Path(failed_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"warm-up failed: {reason}\n")
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # whatever broke, the reason must reach the health log and stdout
        failed = sys.argv[sys.argv.index("--failed") + 1] if "--failed" in sys.argv[:-1] else None
        sys.exit(fail(f"{type(exc).__name__}: {exc}"[:500], failed))
