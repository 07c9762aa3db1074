"""Render a build context: Dockerfile, start script, model paths, the image's facts, a manifest."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln import __version__
from kiln.data.files import file_sha256
from kiln.launch import managed_flags, profile_flags
from kiln.data.lock import Lock
from kiln.data.subject import Subject
from kiln.data.tables import pruned_paths
from kiln.identity import (ARRIVING_MARKER, BAKED_MODELS_DIR, DRAIN_MARKER, FAILED_MARKER, READY_MARKER, UID, agent_port, base_ref,
                           cache_env, cache_folders, labels, metrics_port)
from kiln.render.facts import image_facts
from kiln.render.outdir import marked, replaced
from kiln.render.templates import environment, render_template

MANIFEST = "manifest.json"
TEMPLATES = {"Dockerfile": "Dockerfile.j2", "start.sh": "start.sh.j2",
             "extra_model_paths.yaml": "extra_model_paths.yaml.j2"}
EXECUTABLE = ("start.sh",)
PORTABLE_CA_README = "ca/README.txt"
PORTABLE_CA = "ca/extra-ca.pem"


@dataclass(frozen=True)
class Rendered:
    out: Path
    files: dict[str, str]  # relative path -> sha256


def requirements_text(lock: Lock) -> str:
    lines = [f"{p.name}=={p.version} --hash=sha256:{p.sha256}" for _, p in sorted(lock.packages.items())]
    return "# Locked by versions.lock; installed with --require-hashes --no-deps.\n" + "\n".join(lines) + "\n"


def render_texts(s: Subject, templates_dir: Path, portable: bool = False, baked: bool = False) -> dict[str, str]:
    env = environment(templates_dir)
    cache = s.image.cache_mount
    values = {
        "toolkit_version": __version__, "lock": s.lock, "gpu": s.gpu, "image": s.image, "uid": UID,
        "base": s.lock.bases[s.image.base],
        "base_ref": base_ref(s.lock, s.image.base), "build_base_ref": base_ref(s.lock, s.image.base, "build"),
        "labels": labels(s), "cache_mount": cache,
        "env": {**cache_env(cache), **s.image.env},
        "managed_flags": managed_flags(s.image), "profile_flags": profile_flags(s.gpu, s.image, s.flags),
        "ready_marker": READY_MARKER, "failed_marker": FAILED_MARKER, "drain_marker": DRAIN_MARKER,
        "arriving_marker": ARRIVING_MARKER,
        "metrics_port": metrics_port(s.image.port), "agent_port": agent_port(s.image.port), "cache_dirs": cache_folders(),
        "portable": portable, "baked_models": BAKED_MODELS_DIR if baked else "",
        "prune": pruned_paths(s.lock.name),
    }
    texts = {name: render_template(env, template, values) for name, template in TEMPLATES.items()}
    facts = image_facts(s, BAKED_MODELS_DIR if baked else None)
    texts["kiln.json"] = json.dumps(facts.to_json(), indent=2, sort_keys=True) + "\n"
    texts["warmup.json"] = json.dumps(sized_workflow(s), indent=2, sort_keys=True) + "\n"
    texts["requirements.lock.txt"] = requirements_text(s.lock)
    if portable:
        texts[PORTABLE_CA_README] = ("An optional extra-ca.pem here is the CA bundle pip trusts in the builder stage only\n"
                                     "(replacing its own); it never reaches the final image.\n")
    return texts


LATENT_NODES = ("EmptySD3LatentImage", "EmptyLatentImage")
OUTPUT_NODE = "KilnImageOut"  # payload comfyui_nodes/kiln_output


def sized_workflow(s: Subject) -> dict[str, Any]:
    """The warm-up workflow at the profile's serving resolution, its image leaving through the image's output."""
    workflow = json.loads(json.dumps(s.image.workflow or {}))
    side = s.gpu.serving.resolution
    for node in workflow.values():
        if node.get("class_type") in LATENT_NODES:
            node.setdefault("inputs", {}).update(width=side, height=side)
        if node.get("class_type") == "SaveImage" and s.image.output:
            node["class_type"] = OUTPUT_NODE
            node["inputs"] = {"images": node["inputs"]["images"], **s.image.output.model_dump(),
                              "filename_prefix": node["inputs"].get("filename_prefix", "kiln")}
    return workflow


def write_context(s: Subject, templates_dir: Path, payload_dir: Path, out: Path, portable: bool = False,
                  extra_files: dict[str, Path] | None = None, baked: bool = False) -> Rendered:
    """Write the whole context atomically: a failure leaves out/ as it was. A portable context also holds
    what a stock engine needs without kiln (extra_files: ComfyUI's source, an optional CA bundle)."""
    texts = render_texts(s, templates_dir, portable, baked)
    with replaced(out, marked(MANIFEST, "generator", "kiln"), "render", "build context") as staging:
        for name, source in sorted((extra_files or {}).items()):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / name)
        files = _write_files(staging, texts, payload_dir)
        manifest = {"generator": "kiln", "toolkit": __version__, "gpu": s.gpu.name, "image": s.image.name,
                    "lock_sha256": s.lock.digest, "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Rendered(out=out, files=files)


def _write_files(staging: Path, texts: dict[str, str], payload_dir: Path) -> dict[str, str]:
    for name, text in texts.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755 if name in EXECUTABLE else 0o644)
    _copy_payload(payload_dir, staging / "payload")
    return {str(p.relative_to(staging)): file_sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}


def _copy_payload(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
