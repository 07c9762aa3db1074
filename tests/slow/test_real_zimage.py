"""Opt-in: the real ComfyUI of a stack serving Z-Image-Turbo in the built image (CPU mode), on the
synthetic small set: the warm-up runs the official workflow twice through the real server, and /history
shows finished prompts whose PNG has the profile's resolution; kiln's output node (the spec's `output:`)
writes it, and a client that queues the workflow gets the same bytes over its websocket.

Enable per stack with the path of a ComfyUI tree at its pinned version (used as an unverified source):
KILN_REAL_ZIMAGE_COMFYUI (0.3.74, the zimage stack the spec names) and KILN_REAL_CUDA13_COMFYUI (0.33.0,
built with --stack cuda13 and run by its tag). Needs about 10 GB of disk for the synthetic files and 16 GB
of RAM; the profile's resolution is lowered to 256 in a project copy so CPU sampling takes minutes.
"""

import json
import os
import shutil
import socket
import struct
import urllib.request
import uuid

import pytest

from tests.conftest import ROOT, invoke
from tests.slow.conftest import stop_own
from tests.ws_client import WebSocket

# stack -> (the variable naming its tree, ComfyUI version, --stack given to build or None for the spec's own)
STACKS = {"zimage": ("KILN_REAL_ZIMAGE_COMFYUI", "0.3.74", None),
          "cuda13": ("KILN_REAL_CUDA13_COMFYUI", "0.33.0", "cuda13")}
pytestmark = pytest.mark.network  # builds from the locked wheels
SIDE = 256
BUILD_LIMIT_S = 1800  # a cold build of a real stack: about 4 minutes alone, much longer on a busy host
RUN_LIMIT_S = 2400    # start and the warm-up's two CPU runs of the workflow at SIDE


@pytest.fixture(scope="module", params=sorted(STACKS))
def stack(request):
    variable, version, _ = STACKS[request.param]
    if not os.environ.get(variable):
        pytest.skip(f"opt-in: set {variable} to a ComfyUI {version} tree")
    return request.param


@pytest.fixture(scope="module")
def project(tmp_path_factory, stack):
    variable, _, chosen = STACKS[stack]
    root = tmp_path_factory.mktemp("realz") / "proj"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", "bench"))
    gpus = root / "gpus.yaml"
    text = gpus.read_text()
    assert "resolution: 1024}" in text
    gpus.write_text(text.replace("resolution: 1024}", f"resolution: {SIDE}}}", 1))
    built = invoke("build", "--gpu", "4090", "--image", "z-image-turbo", "--comfyui-src", os.environ[variable],
                   "--allow-unverified-source", "--plain", *(["--stack", chosen] if chosen else []), root=root,
                   timeout=BUILD_LIMIT_S)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return root, next(line.split()[1] for line in built.stdout.splitlines() if line.strip().startswith("tag "))


def test_real_server_runs_the_z_image_workflow_in_the_image(project, stack, tmp_path):
    project, tag = project
    cache = tmp_path / "cache"
    assert invoke("provision.cache", "--path", str(cache), root=project).returncode == 0
    assert invoke("models.synth", "--out", str(cache / "models"), "--plain", root=project, timeout=900).returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ran = None
    try:
        ran = invoke("run", "--gpu", "4090", "--image", tag, "--cache", str(cache), "--cpu-mode",
                     "--port", str(port), "--timeout", str(RUN_LIMIT_S), root=project, timeout=RUN_LIMIT_S + 60)
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        print(ran.stdout)
        base = f"http://127.0.0.1:{port}"
        assert json.load(urllib.request.urlopen(base + "/system_stats"))["system"]["comfyui_version"] == STACKS[stack][1]
        history = json.load(urllib.request.urlopen(base + "/history", timeout=30)).values()
        runs = [e for e in history if "KSampler" in {n["class_type"] for n in e["prompt"][2].values()}]
        assert len(runs) == 2 and all(e["status"]["status_str"] == "success" for e in runs)
        for entry in runs:
            # the image spec's output: kiln's node in place of SaveImage, PNG level 0 (no compression)
            assert {n["class_type"] for n in entry["prompt"][2].values()} >= {"KilnImageOut"}
            [image] = [i for out in entry["outputs"].values() for i in out.get("images", [])]
            [made] = [m for out in entry["outputs"].values() for m in out.get("kiln_output", [])]
            png = urllib.request.urlopen(f"{base}/view?filename={image['filename']}&type={image['type']}").read()
            assert struct.unpack(">II", png[16:24]) == (SIDE, SIDE) and made["format"] == "png"
            assert len(png) == image["bytes"] > SIDE * SIDE * 3   # stored, not deflated
        frame, png = _served_over_the_websocket(base, runs[0]["prompt"][2])
        assert struct.unpack(">II", frame[:8]) == (1, 2) and frame[8:] == png
    finally:
        # only this test's container: another test run beside this one may have its own running
        stop_own(ran, root=project)


def _served_over_the_websocket(base: str, workflow: dict) -> tuple[bytes, bytes]:
    """Queue the workflow (a new seed) as a client with a websocket: (the binary frame it got, /view's file)."""
    client = uuid.uuid4().hex
    for node in workflow.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["seed"] += 1
    with WebSocket(base.replace("http://", "ws://") + f"/ws?clientId={client}", timeout=RUN_LIMIT_S) as ws:
        body = json.dumps({"prompt": workflow, "client_id": client}).encode()
        request = urllib.request.Request(base + "/prompt", data=body, headers={"Content-Type": "application/json"})
        prompt_id = json.load(urllib.request.urlopen(request, timeout=30))["prompt_id"]
        frame = next(m for m in iter(ws.receive_any, None) if isinstance(m, bytes))
        while not (isinstance(m := ws.receive_any(), dict) and m.get("type") == "executing"
                   and m["data"].get("node") is None and m["data"].get("prompt_id") == prompt_id):
            pass
    entry = json.load(urllib.request.urlopen(f"{base}/history/{prompt_id}", timeout=30))[prompt_id]
    [image] = [i for out in entry["outputs"].values() for i in out.get("images", [])]
    return frame, urllib.request.urlopen(f"{base}/view?filename={image['filename']}&type={image['type']}").read()

