"""`invoke smoke` on the real default-stack image, on this host without a GPU: versions exact, GPU
checks skipped with reasons (failed with --require-gpu), the server in the container answering."""

import json
import os
import subprocess
import sys

import pytest

from kiln.engine.client import connect
from tests.conftest import ROOT

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them


def _smoke(*args, gpu="4090", env=None):
    cmd = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "smoke", "--gpu", gpu, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_smoke_in_the_image(smoked):
    client, result, folder = connect(), smoked.result, smoked.folder
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "this engine cannot give GPUs to containers" in result.stdout.splitlines()[0]
    report = json.loads((folder / "r.json").read_text())
    checks = {f"{c['group']}.{c['name']}": c for c in report["checks"]}
    assert all(checks[f"versions.{n}"]["verdict"] == "pass" for n in ("python", "torch", "cuda", "cudnn", "xformers"))
    assert checks["gpu.visible"]["verdict"] == "skip" and checks["perf.matmul_bf16"]["verdict"] == "skip"
    assert checks["comfyui.system_stats"]["verdict"] == "pass"
    assert checks["comfyui.cuda_device"]["verdict"] == "skip"
    assert "<table>" in (folder / "r.html").read_text()
    assert "cannot give GPUs to containers" in report["run"]["gpus"] and "cannot give GPUs" in (folder / "r.html").read_text()
    made, removed = [r for r in smoked.making if "/containers/create" in r], smoked.removed
    assert made and len(removed) >= len(made)  # each container the smoke made was removed, and is gone:
    assert not [c for c in removed if client.api.containers(all=True, filters={"id": c})]


def test_require_gpu_fails_without_one(built):
    result = _smoke("--require-gpu")
    assert result.returncode == 1
    assert "gpu.visible" in result.stdout and "FAIL" in result.stdout


@pytest.mark.parametrize("args, gpu, env, fragment", [
    (("--image", "kiln/comfyui:not-built"), "4090", None, "is not in the engine"),
    (("--image", "kiln-base:debian-bookworm-py3.11"), "4090", None, "carries no smoke payload"),
    (("--json", "/nonexistent-dir/r.json"), "4090", None, "--json: /nonexistent-dir does not exist"),
    (("--image", "kiln/comfyui:0.3.18-torch2.3.1-cu121-4090"), "h200", None, "built for the 4090 profile, not h200"),
    ((), "4090", {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "no Docker Engine answers"),
])
def test_bad_input_is_one_line(built, args, gpu, env, fragment):
    result = _smoke(*args, gpu=gpu, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert fragment in line
