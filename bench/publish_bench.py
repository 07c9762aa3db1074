"""Publish benchmarks on the real default stack, all ratios from one run.

Usage: python bench/publish_bench.py [--json FILE]

1. publish the 4090 image to a fresh loopback registry (Debian's docker-registry, htpasswd auth);
2. edit only the start-script template, rebuild, publish again (--overwrite): bytes the engine uploaded
   against the size of the one changed layer (goal <= 1.05x);
3. publish the l4 and h200 profiles of the same stack: bytes uploaded for three profiles against one
   (goal <= 1.1x);
4. the same image with plain `docker push` to another fresh registry: our push time against it
   (throughput ratio, goal >= 0.9x). Ours is the whole publish: push, digest read-back, SBOM and
   provenance made, validated, attached and pulled back.
Bytes uploaded are what the engine reported pushing (layers it skipped as existing count nothing).
Publishing uses --force's path (no smoke run in a benchmark). Needs root, an engine, the local base,
docker-registry and htpasswd. Removes what it made.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.build_bench import IMAGE, copy_project, prune, report, timed_build  # noqa: E402
from kiln.engine.client import connect  # noqa: E402
from kiln.events import Event  # noqa: E402
from kiln.publish.job import PublishRequest, publish  # noqa: E402
from kiln.publish.push import Target  # noqa: E402
from kiln.publish.registry import Credentials  # noqa: E402
from tests.engine.registry import PASSWORD, USER, LocalRegistry, free_port  # noqa: E402

CREDENTIALS = Credentials(USER, PASSWORD)


class Uploads:
    """Sums, per layer, the bytes the engine reported pushing."""

    def __init__(self):
        self.layers: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "download" and event.text.startswith("layer "):
            self.layers[event.text] = max(self.layers.get(event.text, 0), event.current)

    @property
    def total(self) -> int:
        return sum(self.layers.values())


def timed_publish(client, project, gpu: str, registry: LocalRegistry, overwrite: bool = False) -> tuple[float, int]:
    subject = project.subject(gpu, IMAGE)
    build = project.root / "build"
    request = PublishRequest(target=Target(registry.host, "bench"), credentials=CREDENTIALS,
                             smoke_records=build / "smoke", build_record=build / f"{IMAGE}-{gpu}.build.json", force=True,
                             overwrite=overwrite)
    uploads = Uploads()
    started = time.monotonic()
    publish(client, subject, request, uploads)
    return time.monotonic() - started, uploads.total


def last_layer_size(client, image_id: str) -> int:
    return next(h["Size"] for h in client.api.history(image_id) if h.get("Size"))


def docker_push_s(client, image_id: str, registry: LocalRegistry) -> float:
    ref = f"{registry.host}/plain/{IMAGE}:push"
    client.api.tag(image_id, f"{registry.host}/plain/{IMAGE}", "push")
    subprocess.run(["docker", "login", "-u", USER, "--password-stdin", registry.host], input=PASSWORD, text=True,
                   check=True, capture_output=True)
    try:
        started = time.monotonic()
        subprocess.run(["docker", "push", ref], check=True, capture_output=True)
        return time.monotonic() - started
    finally:
        subprocess.run(["docker", "logout", registry.host], capture_output=True)
        client.images.remove(ref)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    client = connect()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours, plain = LocalRegistry(tmp / "ours", free_port()).start(), LocalRegistry(tmp / "plain", free_port()).start()
        try:
            project = copy_project(tmp / "proj")
            print("build and publish the 4090 image ...", flush=True)
            _, first = timed_build(project, "4090")
            first_s, first_bytes = timed_publish(client, project, "4090", ours)
            print("plain docker push of the same image ...", flush=True)
            plain_s = docker_push_s(client, first.image_id, plain)
            template = project.templates_dir / "start.sh.j2"
            template.write_text(template.read_text().replace("set -eu", "set -eu\n# benchmark edit", 1))
            _, edited = timed_build(project, "4090")
            changed = last_layer_size(client, edited.image_id)
            _, edit_bytes = timed_publish(client, project, "4090", ours, overwrite=True)
            profile_bytes = []
            for gpu in ("l4", "h200"):
                timed_build(project, gpu)
                profile_bytes.append(timed_publish(client, project, gpu, ours)[1])
        finally:
            ours.stop()
            plain.stop()
            prune(client)
    three = first_bytes + sum(profile_bytes)
    results = {"first_publish_s": round(first_s, 1), "first_publish_bytes": first_bytes,
               "docker_push_s": round(plain_s, 1), "throughput_vs_docker_push": round(plain_s / first_s, 3),
               "changed_layer_bytes": changed, "republish_bytes": edit_bytes,
               "republish_vs_changed_layer": round(edit_bytes / changed, 3) if changed else None,
               "three_profiles_bytes": three, "three_vs_one": round(three / first_bytes, 4)}
    rows = [("first publish (push + verify + SBOM/provenance)", f"{first_s:.1f} s", f"{first_bytes / 1e9:.2f} GB uploaded"),
            ("docker push of the same image", f"{plain_s:.1f} s",
             f"ours at {plain_s / first_s:.2f}x its throughput (goal >= 0.9x)"),
            ("re-publish after a start-script edit", f"{edit_bytes / 1e3:.1f} kB",
             f"{results['republish_vs_changed_layer']}x the changed layer ({changed / 1e3:.1f} kB; goal <= 1.05x)"),
            ("three profiles vs one", f"{three / 1e9:.2f} GB", f"{three / first_bytes:.3f}x (goal <= 1.1x)")]
    report(rows, results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
