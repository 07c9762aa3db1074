"""Container start to healthy with a cold cache vs a warm cache (ComfyUI stand-in, CPU mode).

Usage: python bench/run_bench.py [--json FILE] [--compile-s S] [--comfyui CHECKOUT]
Builds the small serving test image (tests' fixture stack) once, then starts it three times on one
cache: cold (empty cache: the first prompt "compiles"), warm, warm again. Prints the ratio.
The stand-in's compile time (STANDIN_COMPILE_S) stands for torch.compile/Triton work that a warm
cache skips; on a GPU host the same measurement applies to the real server. With --comfyui, the
real default-stack image is built from that ComfyUI checkout (unverified) and measured instead.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln.engine.job import BuildRequest, run_build  # noqa: E402
from kiln.engine.client import connect  # noqa: E402
from kiln.project import Project  # noqa: E402
from kiln.sources.wheels import default_cache  # noqa: E402
from kiln.engine.run import RunRequest, start, stop  # noqa: E402
from tests.engine.conftest import build_serve_image, serve_cache  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def standin_image(tmp: Path) -> str:
    return build_serve_image(tmp)[1]


def real_image(tmp: Path, checkout: Path) -> str:
    project = Project(ROOT)
    request = BuildRequest(templates=project.templates_dir, payload=project.payload_dir,
                           folder=project.build, wheel_cache=default_cache(), source_cache=tmp,
                           comfyui_src=checkout, allow_unverified=True)
    return run_build(project.subject("4090"), request)[0].tags[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compile-s", type=float, default=5.0)
    parser.add_argument("--comfyui", type=Path, help="a real ComfyUI 0.3.18 checkout")
    args = parser.parse_args()
    client = connect()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tag = real_image(tmp, args.comfyui) if args.comfyui else standin_image(tmp)
        cache = serve_cache(tmp)
        rows = []
        for label in ("cold cache", "warm cache", "warm cache"):
            request = RunRequest(tag=tag, name="kiln-bench-run", port=free_port(),
                                 cache=cache, cpu_mode=True, timeout_s=300,
                                 env={"STANDIN_COMPILE_S": str(args.compile_s)})
            up = start(client, request)
            stop(client, "kiln-bench-run")
            rows.append((label, up.seconds_to_healthy, up.warmup))
        if not args.comfyui:
            for tag_name in client.images.get(tag).tags:
                client.images.remove(tag_name, force=True)
    print(f"server: {'real ComfyUI from ' + str(args.comfyui) if args.comfyui else 'stand-in'}, CPU mode")
    print(f"{'start':<12}{'to healthy':>12}{'first prompt':>14}{'second':>9}")
    for label, seconds, warm in rows:
        print(f"{label:<12}{seconds:>11.2f}s{warm.first_s or 0:>13.2f}s{warm.second_s or 0:>8.2f}s")
    cold, warm = rows[0][1], min(r[1] for r in rows[1:])
    print(f"\nwarm cache reaches healthy in {warm:.2f} s vs {cold:.2f} s cold: {cold / warm:.1f}x faster")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cold_s": cold, "warm_s": warm, "ratio": cold / warm,
                                         "runs": [{"label": r[0], "to_healthy_s": r[1],
                                                   "warmup": r[2].model_dump(exclude_none=True)} for r in rows]},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
