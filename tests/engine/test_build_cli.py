"""`invoke build` faults as a user meets them: one line, exit 2, nothing half-made left behind.
These run the real project (real lock, so the gate passes) with the stand-in as an unverified source."""

import os
import re
import signal
import subprocess
import sys

import pytest

from kiln.project import Project
from tests.conftest import ROOT
from tests.engine.conftest import STANDIN, TEST_IMAGE
from tests.engine.scope import fresh_scope, made_containers, made_tags, scope_templates
from tests.load import cpu_burner
from tests.waiting import until

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them


@pytest.fixture
def small(project_copy, base):
    """(project, source) for the real lock, a test image name, and the stand-in as source."""
    spec = (project_copy / "images" / "comfyui.yaml").read_text().replace("name: comfyui", f"name: {TEST_IMAGE}")
    (project_copy / "images" / f"{TEST_IMAGE}.yaml").write_text(spec)
    scope_templates(project_copy / "templates")
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


def test_a_damaged_base_record_names_invoke_base_before_anything_is_made(small, tmp_path):
    project, src = small
    record = project.build.base_record(project.lock.default_base)
    record.parent.mkdir(parents=True)
    record.write_text("{")
    result = subprocess.run(_build_cmd(project, src), capture_output=True, text=True, env=_env(tmp_path))
    _one_error(result, f"{record}: damaged record (not JSON)",
               f"run `invoke base --name {project.lock.default_base}` to write it again")
    assert sorted(p.name for p in project.build.root.iterdir()) == ["bases"]


def test_default_source_without_git_host_points_at_comfyui_src(small, tmp_path):
    project, _ = small
    cmd = [c for c in _build_cmd(project, "x") if c not in ("--comfyui-src", "x", "--allow-unverified-source")]
    unreachable = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "url.https://git.invalid/.insteadOf",
                   "GIT_CONFIG_VALUE_0": "https://github.com/"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path, **unreachable))
    _one_error(result, "cannot fetch ComfyUI 0.3.18", "--comfyui-src")
    assert not list((tmp_path / "sources").glob("*")) if (tmp_path / "sources").exists() else True


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy-machine"])
def test_ctrl_c_during_build_leaves_nothing(client, small, tmp_path, busy):
    """Ctrl-C while a build step runs; on a busy machine the engine is often still removing the step's container
    (it cancels the build too) when kiln asks for the same: that counts as removed, never as an error."""
    project, src = small
    scope = fresh_scope(project.templates_dir)
    temp = tmp_path / "tmp"
    temp.mkdir()
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with cpu_burner(None if busy else 0, seconds=240), out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(_build_cmd(project, src), stdout=stdout, stderr=stderr, text=True,
                                env=_env(tmp_path, TMPDIR=str(temp)))
        try:
            until(lambda: made_containers(client, scope) or proc.poll() is not None, 300, "a build step's container")
            assert proc.poll() is None, out.read_text()[-2000:] + err.read_text()[-2000:]
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    line = _one_error(subprocess.CompletedProcess([], proc.returncode, out.read_text(), err.read_text()),
                      "interrupted; removed: ")
    assert re.fullmatch(r"error: interrupted; removed: \d+ intermediate build container\(s\)", line), line
    until(lambda: not made_containers(client, scope), 30, "this build's containers gone")
    assert made_tags(client, scope) == []
    assert list(temp.iterdir()) == []  # the build's own temp folder (TMPDIR): nothing of kiln's left in it


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
