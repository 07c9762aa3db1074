"""Build benchmarks on the real default stack, all ratios from one run.

Usage: python bench/build_bench.py [--json FILE]

1. cold build (builder cache pruned, wheels already in the host cache) for one GPU profile;
2. rebuild after editing only the start script template;
3. the same stack for two more profiles (3 profiles vs 1);
4. size overhead: the final image against a naive single-stage build of the same pins (the same base,
   the same wheels, ComfyUI copied in), the way most Dockerfiles in the field are written.
Uses the ComfyUI stand-in as an unverified source (the real one needs the git host). Needs root,
a Docker Engine and the local base (`invoke base`). Removes the images it made when done.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln.identity import base_ref  # noqa: E402
from kiln.engine.job import BuildRequest, run_build  # noqa: E402
from kiln.engine.client import connect  # noqa: E402
from kiln.project import Project  # noqa: E402
from kiln.sources.wheels import WheelServer, default_cache  # noqa: E402

IMAGE = "bench"
NAIVE_TAG = "kiln/bench-naive:latest"
NAIVE_DOCKERFILE = """\
FROM {build_base}
ARG KILN_WHEELS
COPY requirements.txt /tmp/requirements.txt
RUN python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --no-index --find-links "$KILN_WHEELS" -r /tmp/requirements.txt
COPY comfyui/ /opt/comfyui/
"""


def copy_project(tmp: Path) -> Project:
    for name in ("gpus.yaml", "versions.lock", "templates", "provision/container", "images"):
        src, dest = ROOT / name, tmp / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest) if src.is_dir() else shutil.copy2(src, dest)
    spec = (tmp / "images" / "comfyui.yaml").read_text().replace("name: comfyui", f"name: {IMAGE}")
    (tmp / "images" / f"{IMAGE}.yaml").write_text(spec)
    return Project(tmp)


def timed_build(project: Project, gpu: str) -> tuple[float, object]:
    subject = project.subject(gpu, IMAGE)
    request = BuildRequest(templates=project.templates_dir, payload=project.payload_dir,
                           folder=project.build, wheel_cache=default_cache(),
                           source_cache=project.root / "sources", comfyui_src=ROOT / "tests/standin/comfyui",
                           allow_unverified=True)
    started = time.monotonic()
    result, _ = run_build(subject, request)
    return time.monotonic() - started, result


def prune(client) -> None:
    for image in client.images.list(name=f"kiln/{IMAGE}") + client.images.list(name="kiln/bench-naive"):
        for tag in image.tags:
            client.images.remove(tag, force=True)
    client.images.prune(filters={"dangling": True})


def layer_parts(client, image_id: str) -> dict[str, int]:
    parts = {"venv": 0, "comfyui": 0, "payload": 0, "other": 0}
    for h in client.api.history(image_id):
        created = h.get("CreatedBy", "")
        key = next((k for k, probe in (("venv", "/opt/venv"), ("comfyui", "in /opt/comfyui/ "),
                                       ("payload", "/opt/kiln/payload")) if probe in created), "other")
        parts[key] += h.get("Size", 0)
    return parts


def naive_build(client, project: Project, comfyui: Path) -> tuple[float, int]:
    lock = project.lock
    reqs = "".join(f"{p.name}=={p.version}\n" for p in lock.packages.values())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "Dockerfile", NAIVE_DOCKERFILE.format(build_base=base_ref(lock, lock.default_base, "build")).encode())
        _add(tar, "requirements.txt", reqs.encode())
        for path in sorted(comfyui.rglob("*")):
            if path.is_file():
                _add(tar, f"comfyui/{path.relative_to(comfyui)}", path.read_bytes())
    buf.seek(0)
    started = time.monotonic()
    with WheelServer(lock, default_cache()) as server:
        for _ in client.api.build(fileobj=buf, custom_context=True, tag=NAIVE_TAG, rm=True, forcerm=True,
                                  decode=True, network_mode="host", buildargs={"KILN_WHEELS": server.url}):
            pass
    return time.monotonic() - started, client.images.get(NAIVE_TAG).attrs["Size"]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    client = connect()
    prune(client)
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp))
        print("cold build (builder cache pruned, wheels cached) ...", flush=True)
        cold, first = timed_build(project, "4090")
        template = project.templates_dir / "start.sh.j2"
        template.write_text(template.read_text().replace("set -eu", "set -eu\n# benchmark edit"))
        edit, _ = timed_build(project, "4090")
        extra = [timed_build(project, gpu)[0] for gpu in ("l4", "h200")]
        parts = layer_parts(client, first.image_id)
        base_size = client.images.get(base_ref(project.lock, project.lock.default_base)).attrs["Size"]
        print("naive single-stage build of the same pins ...", flush=True)
        naive_s, naive_size = naive_build(client, project, ROOT / "tests/standin/comfyui")
    prune(client)
    size = first.size
    overhead = size / naive_size - 1
    results = {
        "cold_s": round(cold, 1), "start_script_rebuild_s": round(edit, 1),
        "rebuild_vs_cold": round(edit / cold, 4), "three_profiles_s": round(cold + sum(extra), 1),
        "three_vs_one": round((cold + sum(extra)) / cold, 3), "image_bytes": size,
        "naive_bytes": naive_size, "naive_s": round(naive_s, 1), "overhead_vs_naive": round(overhead, 4),
        "parts": {"base": base_size, **{k: v for k, v in parts.items() if k != "other"}},
    }
    rows = [("cold build", f"{cold:.1f} s", ""),
            ("rebuild after start-script edit", f"{edit:.1f} s", f"{edit / cold:.1%} of cold (goal <= 5 s, <= 3%)"),
            ("3 profiles vs 1", f"{cold + sum(extra):.1f} s", f"{(cold + sum(extra)) / cold:.3f}x (goal <= 1.15x)"),
            ("image size", f"{size / 1e9:.3f} GB", f"overhead {overhead:+.2%} against the naive build (goal <= 3%)"),
            ("naive single-stage", f"{naive_size / 1e9:.3f} GB", f"built in {naive_s:.0f} s")]
    report(rows, results, args.json)
    return 0


def report(rows: list[tuple[str, str, str]], results: dict, json_path: Path | None) -> None:
    """The table of one run, and its figures as JSON when asked."""
    width = max(len(name) for name, _, _ in rows) + 2
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}{value:>12}  {note}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
