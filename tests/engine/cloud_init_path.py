"""The cloud-init and Kubernetes paths as a user takes them, for the stand-in VM's and the stand-in node's tests
and the cold-node bench: publish to a registry and render the target that names the published digest; then
one prompt's first image."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, invoke
from tests.engine.registry import PASSWORD, USER


def publish_and_render(project_root: Path, registry_host: str, image: str, out: Path,
                       target: str = "cloud-init") -> tuple[Path, dict]:
    """`invoke publish` to the registry (no smoke record on this host: --force), then `invoke deploy --target
    cloud-init` (or k8s): (the user data or the k8s folder, the deployment record). Raises with the tool's last
    words if either fails."""
    script = project_root / "provision" / "host" / "fetch_models.py"   # a small project carries no provision/
    script.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "provision" / "host" / "fetch_models.py", script)
    steps = (("publish", "--registry", f"{registry_host}/kiln", "--gpu", "4090", "--image", image, "--force", "--plain"),
             ("deploy", "--gpu", "4090", "--image", image, "--target", target, "--out", str(out)))
    for step in steps:
        done = invoke(*step, root=project_root, env={"KILN_REGISTRY_USER": USER, "KILN_REGISTRY_PASSWORD": PASSWORD},
                      timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"invoke {step[0]} failed: {done.stderr.strip()[-1500:]}")
    manifest = json.loads((out / "deploy.json").read_text())
    if not manifest["image"]["published"]:
        raise RuntimeError(f"the {target} deployment does not name the published image")
    return (out / "cloud-init" / "user-data.yaml" if target == "cloud-init" else out / target), manifest


def first_image(base: str, prompt: dict, client_id: str, limit_s: float = 120) -> bytes:
    """Submit `prompt` to the server at `base` and read its first output image back over /view."""
    body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
    request = urllib.request.Request(base + "/prompt", data=body, headers={"Content-Type": "application/json"})
    prompt_id = json.load(urllib.request.urlopen(request, timeout=30))["prompt_id"]
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        entry = json.load(urllib.request.urlopen(f"{base}/history/{prompt_id}", timeout=10)).get(prompt_id) or {}
        images = [i for out in entry.get("outputs", {}).values() for i in out.get("images", [])]
        if images:
            query = urllib.parse.urlencode({k: images[0][k] for k in ("filename", "subfolder", "type")})
            return urllib.request.urlopen(f"{base}/view?{query}", timeout=30).read()
        time.sleep(0.1)
    raise TimeoutError(f"no image for prompt {prompt_id} within {limit_s:.0f} s")
