"""The image's own warm-up code on a GPU host: provision/container/serve/warmup.py's main, run against ComfyUI
started with the flags kiln renders, with kiln.json and warmup.json as kiln renders them for the profile;
then smoke's workflow checks against the warm server (its first and steady prompts). Start to warm is the
payload's own figure, counted from the ComfyUI process start (the image counts from the container start).

Usage (on the GPU host, from the repository root):
  python3 bench/warmup_host.py --comfyui DIR --models MODELS --work WORK --json OUT.json \
      [--gpu h200] [--image z-image-turbo] [--stack cuda13] [--source-commit SHA]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "provision" / "container")]

from coldstart import install_kiln_nodes  # noqa: E402
from kiln.engine.run import warmup_in  # noqa: E402
from kiln.launch import profile_flags  # noqa: E402
from kiln.project import Project  # noqa: E402
from kiln.render.context import sized_workflow  # noqa: E402
from kiln.render.facts import image_facts  # noqa: E402
from serve import warmup  # noqa: E402
from zimage.server import ComfyServer  # noqa: E402
from zimage_latency import ensure_models, header, models_yaml, smoke_workflow  # noqa: E402


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--comfyui", "--models", "--work", "--json"):
        p.add_argument(name, type=Path, required=True)
    p.add_argument("--gpu", default="h200")
    p.add_argument("--image", default="z-image-turbo")
    p.add_argument("--stack")
    p.add_argument("--source-commit")
    p.add_argument("--port", type=int, default=8391)
    return p.parse_args(argv)


def payload_warmup(url: str, work: Path, models: Path) -> dict:
    """serve.warmup's main, its output kept: the phase lines and the JSON line it logs."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = warmup.main(["--facts", str(work / "kiln.json"), "--url", url, "--marker", str(work / "ready.json"),
                            "--workflow", str(work / "warmup.json"), "--models", str(models)])
    lines = out.getvalue().splitlines()
    logged = warmup_in(lines) or None
    return {"exit_code": code, "phases": [line for line in lines if line.startswith("kiln: phase")], "result": logged}


def main(argv=None) -> int:
    args = parse(argv)
    subject = Project(ROOT).subject(args.gpu, args.image, args.stack)
    flags = profile_flags(subject.gpu, subject.image, subject.flags) + list(subject.image.flags)
    result = {**header(subject, subject.gpu.serving.resolution, flags, args.source_commit),
              "models": ensure_models(args.models, "full")}
    install_kiln_nodes(args.comfyui)
    models_yaml(args.work, args.models)
    facts = image_facts(subject).to_json()
    (args.work / "kiln.json").write_text(json.dumps(facts))
    graph = sized_workflow(subject)
    (args.work / "warmup.json").write_text(json.dumps(graph))
    os.environ["KILN_STARTED"] = str(time.time())
    server = ComfyServer(args.comfyui, sys.executable, args.port, args.work, flags, dict(subject.image.env),
                         args.work / "comfyui.log")
    try:
        result["warmup"] = payload_warmup(server.url, args.work, args.models)
        result["smoke"] = smoke_workflow(server.url, graph, facts, args.models, args.work)
    finally:
        server.stop()
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(result["warmup"]["phases"]))
    print(json.dumps(result["warmup"]["result"]))
    print(result["smoke"]["table"])
    return 0 if result["warmup"]["exit_code"] == 0 and result["smoke"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
