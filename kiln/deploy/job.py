"""`invoke deploy`: the manifest for one image and GPU profile, each requested target rendered from
it and checked for what it needs, then everything written at once (or nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kiln.data.deploy import deploy_defaults
from kiln.data.subject import Subject
from kiln.data.records.deploy import Deployment
from kiln.data.records.folder import BuildFolder
from kiln.deploy.manifest import deployment
from kiln.deploy.records import image_record
from kiln.deploy.targets import EXECUTABLE, NEEDS_DIGEST, check_target, manifest_text, render
from kiln.deploy.write import MANIFEST, write_deployment
from kiln.errors import KilnError


@dataclass(frozen=True)
class DeployRequest:
    targets: tuple[str, ...]
    out: Path
    folder: BuildFolder      # where the build and run records are
    templates: Path
    fetch_script: Path | None = None  # provision/host/fetch_models.py: cloud-init fetches the models with it
    gpus_file: str = "gpus.yaml"
    cpu_mode: bool = False   # compose only: no GPU request, ComfyUI on the CPU (tests)
    stack: str | None = None  # --stack: deploy the build of that stack, not the spec's


def plan(s: Subject, req: DeployRequest) -> tuple[Deployment, dict[str, str]]:
    if req.cpu_mode and req.targets != ("compose",):
        raise KilnError("--cpu-mode is for the compose target only (a test run on a host without a GPU)",
                        "--cpu-mode", "use --target compose, or leave --cpu-mode out")
    record = image_record(req.folder, s, need_digest=any(t in NEEDS_DIGEST for t in req.targets), stack=req.stack)
    manifest = deployment(s, record, deploy_defaults())
    for target in req.targets:
        check_target(manifest, target, req.gpus_file)
    texts = {MANIFEST: manifest_text(manifest)}
    script = _fetch_script(req) if "cloud-init" in req.targets and manifest.cache.models else ""
    for target in req.targets:
        texts.update(render(manifest, target, req.templates, s.image.workflow, req.cpu_mode, script))
    return manifest, texts


def _fetch_script(req: DeployRequest) -> str:
    if req.fetch_script is None:
        raise KilnError("the image lists model files, but no fetch script was given", "DeployRequest.fetch_script",
                        "pass provision/host/fetch_models.py")
    try:
        return req.fetch_script.read_text(encoding="utf-8")
    except OSError as exc:
        raise KilnError(f"cannot read the model fetch script ({exc.strerror})", str(req.fetch_script),
                        "restore provision/host/fetch_models.py from the repository") from None


def deploy(s: Subject, req: DeployRequest) -> tuple[Deployment, list[Path]]:
    manifest, texts = plan(s, req)
    return manifest, write_deployment(req.out, texts, EXECUTABLE)
