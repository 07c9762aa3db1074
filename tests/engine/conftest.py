"""Engine tests: a real Docker Engine and the real local base; a small fixture stack and the ComfyUI
stand-in keep each build to seconds. No engine is a failure here, not a skip."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kiln.engine.bases import ensure_base
from kiln.engine.job import BuildRequest, run_build
from kiln.engine.client import LABEL, connect, remove_image
from kiln.data.lock import load_lock
from kiln.data.records.folder import BuildFolder
from kiln.lock.write import lock_text
from kiln.project import Project
from tests.conftest import ROOT
from tests.engine.scope import SCOPE_LABEL, SCOPES, made_tags, scope_templates

SMALL_PACKAGES = ("packaging", "pyyaml", "typing-extensions", "prometheus-client")  # tiny wheels from the real lock
TEST_IMAGE = "kiln-test"
STANDIN = ROOT / "tests" / "standin" / "comfyui"


@pytest.fixture(scope="session")
def client():
    return connect()


@pytest.fixture(scope="session")
def base(client):
    lock = load_lock(ROOT / "versions.lock")
    return ensure_base(client, lock, lock.default_base, BuildFolder(ROOT / "build"))


def git_checkout(dest: Path) -> str:
    """The stand-in as a git checkout; returns its commit."""
    shutil.copytree(STANDIN, dest)
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=kiln", "-c", "user.email=kiln@localhost", "commit", "-qm", "stand-in"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True)
    return subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def small_project(root: Path, commit: str) -> Project:
    """A project copy whose lock pins a few tiny wheels and the stand-in's commit."""
    lock = load_lock(ROOT / "versions.lock")
    packages = {name: lock.packages[name] for name in SMALL_PACKAGES}
    for name in ("tasks.py", "console.py", "gpus.yaml", "templates", "provision/container", "images"):
        src, dest = ROOT / name, root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir() else shutil.copy2(src, dest)
    scope_templates(root / "templates")
    spec = (root / "images" / "comfyui.yaml").read_text().replace("name: comfyui", f"name: {TEST_IMAGE}")
    (root / "images" / f"{TEST_IMAGE}.yaml").write_text(spec)
    text = lock_text(lock.path.read_text(), lock.name, packages, {"comfyui": {"commit": commit}})
    (root / "versions.lock").write_text(text)
    return Project(root)


@pytest.fixture
def small(tmp_path, base):
    commit = git_checkout(tmp_path / "comfyui")
    return small_project(tmp_path / "proj", commit), tmp_path / "comfyui"


def build_small(project: Project, src: Path, gpu: str = "4090", cache: Path | None = None, on_event=None,
                image: str = TEST_IMAGE, **kw):
    subject = project.subject(gpu, image)
    request = BuildRequest(templates=project.templates_dir, payload=project.payload_dir,
                           folder=project.build,
                           wheel_cache=cache or project.root.parent / "wheels",
                           source_cache=project.root.parent / "sources", comfyui_src=src, **kw)
    return run_build(subject, request, on_event or (lambda e: None))


@pytest.fixture(autouse=True, scope="session")
def remove_test_images(client):
    """This session's images (by its scope labels), whatever their names; another session's are not touched."""
    yield
    for scope in SCOPES:
        for tag in made_tags(client, scope):
            remove_image(client, tag, force=True)
        client.images.prune(filters={"dangling": True, "label": f"{SCOPE_LABEL}={scope}"})


def run_in(client, image: str, command: str, user: str | None = None) -> str:
    """Run a shell command in a throwaway container (no network, removed afterwards) and return its output."""
    out = client.containers.run(image, ["/bin/sh", "-c", command], remove=True, network_mode="none",
                                labels={LABEL: "test"}, entrypoint=[], stderr=True, user=user)
    return out.decode()


SERVE_IMAGE = f"{TEST_IMAGE}-serve"
SERVE_WORKFLOW = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "standin.safetensors"}},
                  "2": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 1}}}


def build_serve_image(tmp: Path, mount: str = "/cache", name: str = SERVE_IMAGE) -> tuple[Project, str]:
    """The small stack with a warm-up workflow whose one model lives in the cache; returns (project, tag)."""
    project = small_project(tmp / "proj", git_checkout(tmp / "comfyui"))
    (project.images_dir / "workflows").mkdir(exist_ok=True)
    (project.images_dir / "workflows" / "serve.json").write_text(json.dumps(SERVE_WORKFLOW))
    spec = (project.images_dir / f"{TEST_IMAGE}.yaml").read_text().replace(f"name: {TEST_IMAGE}", f"name: {name}")
    spec = spec.replace("mount: /cache", f"mount: {mount}")
    spec = spec.replace("models: []", "models:\n  - {role: checkpoint, folder: checkpoints, file: standin.safetensors,"
                                       " size: 1000000, sha256: '" + "0" * 64 + "', source: {repo: kiln/standin, revision: main,"
                                       " path: standin.safetensors}}")
    spec = spec.replace("warmup: {}", "warmup: {workflow: workflows/serve.json}")
    (project.images_dir / f"{name}.yaml").write_text(spec)
    result, _ = build_small(project, tmp / "comfyui", image=name)
    return project, result.tags[0]


def build_with_model(tmp: Path, name: str, data: bytes, source: tuple[str, str, str]) -> tuple[Path, str]:
    """The small stack's serving image with one model file of these bytes in its manifest (its true size and
    sha256, from `source` = (repo, revision, path) on a hub); returns (project root, tag)."""
    repo, revision, file = source
    project = small_project(tmp / "proj", git_checkout(tmp / "comfyui"))
    (project.images_dir / "workflows").mkdir(exist_ok=True)
    (project.images_dir / "workflows" / "serve.json").write_text(json.dumps(SERVE_WORKFLOW))
    spec = (project.images_dir / f"{TEST_IMAGE}.yaml").read_text().replace(f"name: {TEST_IMAGE}", f"name: {name}")
    spec = spec.replace("models: []", "models:\n  - {role: checkpoint, folder: checkpoints, file: " + file + ", size: "
                        f"{len(data)}, sha256: '{hashlib.sha256(data).hexdigest()}', source: {{repo: {repo}, revision: "
                        f"{revision}, path: {file}}}}}")
    spec = spec.replace("warmup: {}", "warmup: {workflow: workflows/serve.json}")
    (project.images_dir / f"{name}.yaml").write_text(spec)
    result, _ = build_small(project, tmp / "comfyui", image=name)
    return project.root, result.tags[0]


def serve_cache(tmp: Path) -> Path:
    """A cache prepared as `invoke provision.cache` does, holding the warm-up workflow's model."""
    cache = tmp / "cache"
    subprocess.run(["sh", str(ROOT / "provision/host/cache.sh"), str(cache)], check=True, capture_output=True)
    (cache / "models" / "checkpoints").mkdir()
    (cache / "models" / "checkpoints" / "standin.safetensors").write_bytes(b"stand-in weights")
    return cache
