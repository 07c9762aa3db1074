"""Publish benchmarks on the real default stack, all ratios from one run.

Usage: python bench/publish_bench.py [--json FILE]

1. publish the 4090 image to a fresh loopback registry (Debian's docker-registry, htpasswd auth);
2. edit only the start-script template, rebuild, publish again (--overwrite): the bytes the registry
   received, per kind of blob, against the size of the start-script layer (goal <= 1.05x);
3. publish the l4 and h200 profiles of the same stack: bytes received for three profiles against one
   (goal <= 1.1x);
4. the same image with plain `docker push` to another fresh registry: our push time against it
   (throughput ratio, goal >= 0.9x). Ours is the whole publish: push, digest read-back, SBOM and
   provenance made, validated, attached and pulled back.
Bytes are the blobs a publish added to the registry's storage (compressed layers, image config,
manifests, SBOM and provenance with their manifests): content addressed, so a blob the registry already
held (a layer the engine skipped as existing) counts nothing. Publishing uses --force's path (no smoke
run in a benchmark). Needs root, an engine, the local base, docker-registry and htpasswd. Removes what
it made.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.build_bench import IMAGE, copy_project, prune, report, timed_build  # noqa: E402
from kiln.engine.client import connect  # noqa: E402
from kiln.publish.job import PublishRequest, PublishResult, publish  # noqa: E402
from kiln.publish.push import Target  # noqa: E402
from kiln.publish.registry import Credentials, Registry  # noqa: E402
from tests.engine.registry import PASSWORD, USER, LocalRegistry, free_port  # noqa: E402

CREDENTIALS = Credentials(USER, PASSWORD)
REPO = f"bench/{IMAGE}"
START_SCRIPT = "opt/kiln/start.sh"
KINDS = ("start-script layer", "other layers", "image config", "image manifest", "SBOM and provenance", "unexplained")


def timed_publish(client, project, gpu: str, registry: LocalRegistry,
                  overwrite: bool = False) -> tuple[float, PublishResult, dict[str, int]]:
    """Seconds, the result, and the blobs the registry gained: {digest: bytes}."""
    subject = project.subject(gpu, IMAGE)
    request = PublishRequest(target=Target(registry.host, "bench"), credentials=CREDENTIALS,
                             folder=project.build, force=True, overwrite=overwrite)
    held = registry.blobs()
    started = time.monotonic()
    result = publish(client, subject, request)
    seconds = time.monotonic() - started
    return seconds, result, {d: n for d, n in registry.blobs().items() if d not in held}


def by_kind(registry: LocalRegistry, result: PublishResult, added: dict[str, int]) -> tuple[dict[str, int], int, str]:
    """The added bytes per kind of blob, the size of the start-script layer (the new layer blob whose files
    include the start script; 0 when no new layer holds it) and how many of the image's layers were new."""
    api = Registry(registry.host, CREDENTIALS)
    digest = result.references[0].split("@")[1]
    manifest = api.manifest(REPO, digest)
    layers = {layer["digest"] for layer in manifest["layers"]}
    artifacts = set()
    for reference in result.artifacts.values():
        tag = reference.rsplit(":", 1)[1]
        attached = api.manifest(REPO, tag)
        artifacts |= {api.manifest_digest(REPO, tag), attached["config"]["digest"]}
        artifacts |= {layer["digest"] for layer in attached["layers"]}
    script = next((d for d in layers if d in added and _holds_start_script(api, d)), "")
    kinds = dict.fromkeys(KINDS, 0)
    for blob, size in added.items():
        kind = ("start-script layer" if blob == script else "other layers") if blob in layers else \
            "image config" if blob == manifest["config"]["digest"] else "image manifest" if blob == digest else \
            "SBOM and provenance" if blob in artifacts else "unexplained"
        kinds[kind] += size
    return kinds, added.get(script, 0), f"{len(layers & set(added))} of {len(layers)}"


def _holds_start_script(api: Registry, digest: str) -> bool:
    with tarfile.open(fileobj=io.BytesIO(api.blob(REPO, digest))) as layer:
        return START_SCRIPT in layer.getnames()


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
            first_s, _, added = timed_publish(client, project, "4090", ours)
            first_bytes = sum(added.values())
            print("plain docker push of the same image ...", flush=True)
            plain_s = docker_push_s(client, first.image_id, plain)
            # the other profiles before the edit, so all three are built from the same heavy layers
            profile_bytes = []
            for gpu in ("l4", "h200"):
                print(f"build and publish the {gpu} image ...", flush=True)
                timed_build(project, gpu)
                profile_bytes.append(sum(timed_publish(client, project, gpu, ours)[2].values()))
            print("edit the start script, build and publish again ...", flush=True)
            template = project.templates_dir / "start.sh.j2"
            template.write_text(template.read_text().replace("set -eu", "set -eu\n# benchmark edit", 1))
            timed_build(project, "4090")
            _, edited, added = timed_publish(client, project, "4090", ours, overwrite=True)
            kinds, script, new_layers = by_kind(ours, edited, added)
        finally:
            ours.stop()
            plain.stop()
            prune(client)
    three = first_bytes + sum(profile_bytes)
    layers = kinds["start-script layer"] + kinds["other layers"]
    image = layers + kinds["image config"] + kinds["image manifest"]
    everything = sum(kinds.values())
    ratio = {name: round(n / script, 3) if script else None for name, n in
             (("layers", layers), ("image", image), ("all", everything))}
    results = {"first_publish_s": round(first_s, 1), "first_publish_bytes": first_bytes,
               "docker_push_s": round(plain_s, 1), "throughput_vs_docker_push": round(plain_s / first_s, 3),
               "start_script_layer_bytes": script, "republish_new_layers": new_layers, "republish_bytes": kinds,
               "republish_layers_vs_start_script_layer": ratio["layers"],
               "republish_image_vs_start_script_layer": ratio["image"],
               "republish_all_vs_start_script_layer": ratio["all"],
               "three_profiles_bytes": three, "three_vs_one": round(three / first_bytes, 4)}
    verdict = "met" if ratio["all"] is not None and ratio["all"] <= 1.05 else "missed"
    rows = [("first publish (push + verify + SBOM/provenance)", f"{first_s:.1f} s", f"{first_bytes / 1e9:.2f} GB received"),
            ("docker push of the same image", f"{plain_s:.1f} s",
             f"ours at {plain_s / first_s:.2f}x its throughput (goal >= 0.9x)"),
            ("re-publish after a start-script edit: layers", f"{layers} B",
             f"{new_layers} layers new; {ratio['layers']}x the start-script layer ({script} B)"),
            ("  + image config and manifest", f"{image} B",
             f"{ratio['image']}x (config {kinds['image config']} B, manifest {kinds['image manifest']} B)"),
            ("  + SBOM and provenance: all of it", f"{everything} B",
             f"{ratio['all']}x (goal <= 1.05x: {verdict}; unexplained {kinds['unexplained']} B)"),
            ("three profiles vs one", f"{three / 1e9:.2f} GB", f"{three / first_bytes:.3f}x (goal <= 1.1x)")]
    report(rows, results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
