"""Opt-in: the real ComfyUI of the zimage stack serving Z-Image-Turbo in the built image (CPU mode), on the
synthetic small set: the warm-up runs the official workflow twice through the real server, and /history
shows finished prompts whose PNG has the profile's resolution.

Enable with KILN_REAL_ZIMAGE_COMFYUI=/path/to/a/ComfyUI 0.3.74 tree (used as an unverified source). Needs
about 10 GB of disk for the synthetic files and 16 GB of RAM; the profile's resolution is lowered to 256 in
a project copy so CPU sampling takes minutes, not hours.
"""

import json
import os
import shutil
import socket
import struct
import urllib.request

import pytest

from tests.conftest import ROOT, invoke

TREE = os.environ.get("KILN_REAL_ZIMAGE_COMFYUI")
pytestmark = [pytest.mark.skipif(not TREE, reason="opt-in: set KILN_REAL_ZIMAGE_COMFYUI to a ComfyUI 0.3.74 tree"),
              pytest.mark.network]  # builds from the locked wheels
SIDE = 256


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("realz") / "proj"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", "bench"))
    gpus = root / "gpus.yaml"
    text = gpus.read_text()
    assert "resolution: 1024}" in text
    gpus.write_text(text.replace("resolution: 1024}", f"resolution: {SIDE}}}", 1))
    built = invoke("build", "--gpu", "4090", "--image", "z-image-turbo", "--comfyui-src", TREE,
                   "--allow-unverified-source", "--plain", root=root)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return root


def test_real_server_runs_the_z_image_workflow_in_the_image(project, tmp_path):
    cache = tmp_path / "cache"
    assert invoke("provision.cache", "--path", str(cache), root=project).returncode == 0
    assert invoke("models.synth", "--out", str(cache / "models"), "--plain", root=project).returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        ran = invoke("run", "--gpu", "4090", "--image", "z-image-turbo", "--cache", str(cache), "--cpu-mode",
                     "--port", str(port), "--timeout", "2400", root=project)
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        print(ran.stdout)
        base = f"http://127.0.0.1:{port}"
        assert json.load(urllib.request.urlopen(base + "/system_stats"))["system"]["comfyui_version"] == "0.3.74"
        history = json.load(urllib.request.urlopen(base + "/history", timeout=30)).values()
        runs = [e for e in history if "KSampler" in {n["class_type"] for n in e["prompt"][2].values()}]
        assert len(runs) == 2 and all(e["status"]["status_str"] == "success" for e in runs)
        for entry in runs:
            [image] = [i for out in entry["outputs"].values() for i in out.get("images", [])]
            png = urllib.request.urlopen(f"{base}/view?filename={image['filename']}&type={image['type']}").read()
            assert struct.unpack(">II", png[16:24]) == (SIDE, SIDE)
    finally:
        invoke("stop", root=project)
