"""Rendering the deployment targets from templates/deploy: which files each target writes, what the
manifest must hold for it (a digest, a GPU product label, a marketplace's card name), and the texts.
Pure: no engine, no network; the same manifest gives byte-identical files."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

from kiln.data.records.deploy import Deployment
from kiln.errors import KilnError
from kiln.render.templates import environment, render_template

TARGETS: dict[str, dict[str, str]] = {
    "compose": {"compose.yaml": "compose.yaml.j2"},
    "k8s": {"k8s/pvc.yaml": "k8s/pvc.yaml.j2", "k8s/deployment.yaml": "k8s/deployment.yaml.j2",
            "k8s/service.yaml": "k8s/service.yaml.j2", "k8s/pdb.yaml": "k8s/pdb.yaml.j2",
            "k8s/scaledobject.yaml": "k8s/scaledobject.yaml.j2"},
    "cloud-init": {"cloud-init/kiln-deploy.sh": "cloud-init/kiln-deploy.sh.j2",
                   "cloud-init/user-data.yaml": "cloud-init/user-data.yaml.j2"},  # + fetch_models.py (models)
    "runpod": {"runpod/template.json": "runpod/template.json.j2", "runpod/.runpod/hub.json": "runpod/hub.json.j2",
               "runpod/.runpod/tests.json": "runpod/tests.json.j2"},
    "vast": {"vast/template.json": "vast/template.json.j2"},
}
# With --gpus N (N servers on one host, one balancer in front) compose and cloud-init render these instead:
FLEET = {"compose": {"compose.yaml": "compose-fleet.yaml.j2"}}
FLEET_TARGETS = ("compose", "cloud-init")
BALANCER_CONFIG = {"compose": "balancer/haproxy.cfg", "cloud-init": "cloud-init/haproxy.cfg"}
NEEDS_DIGEST = ("k8s", "cloud-init", "runpod", "vast")  # they pull the image: a local id cannot do
EXECUTABLE = ("cloud-init/kiln-deploy.sh", "cloud-init/fetch_models.py")
USER_DATA = "cloud-init/user-data.yaml"
FETCH_SCRIPT = "cloud-init/fetch_models.py"  # provision/host/fetch_models.py, beside the script that runs it


def targets(value: str) -> tuple[str, ...]:
    if value == "all":
        return tuple(TARGETS)
    if value not in TARGETS:
        raise KilnError(f"unknown target '{value[:40]}'", "--target", f"use one of: {', '.join(TARGETS)}, all")
    return (value,)


def check_target(d: Deployment, target: str, gpus_file: str) -> None:
    """What a target needs from the profile, refused before anything is written."""
    needs = {"k8s": [("product_label", d.gpu.product_label, "the nvidia.com/gpu.product label GPU Feature Discovery "
                                                            "sets (NVML name, spaces as hyphens)")],
             "runpod": [("marketplaces.runpod_gpu_id", d.gpu.runpod_gpu_id, "RunPod's GPU type id"),
                        ("marketplaces.runpod_pool", d.gpu.runpod_pool, "RunPod's GPU pool id")],
             "vast": [("marketplaces.vast_gpu_name", d.gpu.vast_gpu_name, "Vast.ai's gpu_name")]}
    for key, value, what in needs.get(target, []):
        if not value:
            raise KilnError(f"profile {d.gpu.profile} has no {key}, which the {target} target needs",
                            f"{gpus_file} profiles.{d.gpu.profile}", f"add {key}: {what}")


def render(d: Deployment, target: str, templates: Path, workflow: dict | None = None,
           cpu_mode: bool = False, fetch_script: str = "", balancer: str = "") -> dict[str, str]:
    """balancer: HAProxy's configuration for the target's servers, with --gpus N (kiln.deploy.balancer)."""
    env = environment(templates / "deploy", {"gzb64": _gzb64})
    values: dict[str, Any] = {"d": d, "cpu_mode": cpu_mode, "workflow": workflow or {}, "fetch_script": fetch_script,
                              "manifest": manifest_text(d), "balancer": balancer,
                              "registry": d.image.reference.split("/", 1)[0] if d.image.published else "",
                              "env_flags": "".join(f" -e {k}={v}" for k, v in d.env.items())}
    texts: dict[str, str] = {BALANCER_CONFIG[target]: balancer} if balancer else {}
    chosen = {**TARGETS[target], **(FLEET.get(target, {}) if d.fleet.servers > 1 else {})}
    for name, template in chosen.items():
        if name == USER_DATA:
            values["script"] = texts["cloud-init/kiln-deploy.sh"]
        text = render_template(env, template, values, "templates/deploy")
        texts[name] = _canonical_json(text, template) if name.endswith(".json") else text
    if target == "cloud-init" and d.cache.models:
        texts[FETCH_SCRIPT] = fetch_script
    return texts


def manifest_text(d: Deployment) -> str:
    return json.dumps(d.to_json(), indent=2, sort_keys=True) + "\n"


def _canonical_json(text: str, template: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    except ValueError as exc:
        raise KilnError(f"renders invalid JSON ({exc})", f"templates/deploy/{template}", "fix the template") from None


def _gzb64(text: str) -> str:
    """cloud-init's gz+b64 encoding; mtime 0 keeps the output byte-identical for the same text."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")
