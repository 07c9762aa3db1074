"""`invoke build` faults as a user meets them: one line, exit 2, nothing half-made left behind.
These run the real project (real lock, so the gate passes) with the stand-in as an unverified source."""

import os
import signal
import tempfile
from pathlib import Path
import subprocess
import sys
import time

import pytest

from kiln.project import Project
from tests.conftest import ROOT
from tests.engine.conftest import STANDIN, TEST_IMAGE


@pytest.fixture
def small(project_copy, base):
    """(project, source) for the real lock, a test image name, and the stand-in as source."""
    spec = (project_copy / "images" / "comfyui.yaml").read_text().replace("name: comfyui", f"name: {TEST_IMAGE}")
    (project_copy / "images" / f"{TEST_IMAGE}.yaml").write_text(spec)
    return Project(project_copy), STANDIN


def _env(tmp_path, **extra):
    """The user's wheel cache is shared (the real stack's wheels are big); sources are per test."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "KILN_SOURCE_CACHE": str(tmp_path / "sources"), **extra}


def _build_cmd(project, src, *extra):
    return [sys.executable, "-m", "invoke", "--search-root", str(project.root), "build", "--gpu", "4090",
            "--image", TEST_IMAGE, "--plain", "--comfyui-src", str(src), "--allow-unverified-source", *extra]


def _one_error(result, *fragments):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [line] = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    for fragment in fragments:
        assert fragment in line, line
    return line


def _test_images(client):
    return [t for image in client.images.list(name=f"kiln/{TEST_IMAGE}") for t in image.tags]


def test_engine_not_reachable(small, tmp_path):
    project, src = small
    result = subprocess.run(_build_cmd(project, src), capture_output=True, text=True,
                            env=_env(tmp_path, DOCKER_HOST="unix:///nonexistent/docker.sock"))
    _one_error(result, "unix:///nonexistent/docker.sock", "provision/host/engine.sh")


def test_base_missing_names_invoke_base(small, tmp_path):
    project, src = small
    lock = project.lock_path
    lock.write_text(lock.read_text().replace('default_base = "debian-bookworm"', 'default_base = "debian-trixie"')
                    .replace("[bases.debian-bookworm]", "[bases.debian-trixie]"))
    result = subprocess.run(_build_cmd(project, src), capture_output=True, text=True, env=_env(tmp_path))
    _one_error(result, "kiln-base:debian-trixie-py3.11-build is not in the engine", "invoke base")


def test_default_source_without_git_host_points_at_comfyui_src(small, tmp_path):
    project, _ = small
    cmd = [c for c in _build_cmd(project, "x") if c not in ("--comfyui-src", "x", "--allow-unverified-source")]
    unreachable = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "url.https://git.invalid/.insteadOf",
                   "GIT_CONFIG_VALUE_0": "https://github.com/"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path, **unreachable))
    _one_error(result, "cannot fetch ComfyUI 0.3.18", "--comfyui-src")
    assert not list((tmp_path / "sources").glob("*")) if (tmp_path / "sources").exists() else True


def test_ctrl_c_during_build_leaves_nothing(client, small, tmp_path):
    project, src = small
    before = {c.id for c in client.containers.list(all=True)}
    tags_before = _test_images(client)
    temp_before = set(Path(tempfile.gettempdir()).glob("kiln-*"))
    proc = subprocess.Popen(_build_cmd(project, src), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path))
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if "pip install" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "interrupted" in err and "Traceback" not in err
    time.sleep(1)
    assert {c.id for c in client.containers.list(all=True)} == before
    assert _test_images(client) == tags_before
    assert not list(Path(os.environ.get("KILN_WHEEL_CACHE", Path.home() / ".cache/kiln/wheels")).rglob("*.part"))
    assert set(Path(tempfile.gettempdir()).glob("kiln-*")) == temp_before
    assert "removed:" in err and "build container" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_disk_full_while_fetching_wheels(small, tmp_path):
    project, src = small
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny)], check=True)
    try:
        result = subprocess.run(_build_cmd(project, src), capture_output=True, text=True,
                                env=_env(tmp_path, KILN_WHEEL_CACHE=str(tiny)))
        _one_error(result, "No space left on device", "free space")
        assert not list(tiny.rglob("*.part"))
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_registry_base_that_cannot_be_pulled_says_how(small, tmp_path):
    project, src = small
    spec = (project.images_dir / f"{TEST_IMAGE}.yaml").read_text().replace("\nserver:", "\nbase: python-slim\nserver:", 1)
    (project.images_dir / f"{TEST_IMAGE}.yaml").write_text(spec)
    result = subprocess.run(_build_cmd(project, src), capture_output=True, text=True, env=_env(tmp_path))
    _one_error(result, "python:3.11-slim-bookworm@sha256:", "docker pull")
