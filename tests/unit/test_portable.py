"""`invoke render --portable`: a context a stock engine builds (index + hashes, ComfyUI inside, the CA
only in the builder) and, with --all-gpus, a build matrix (docker-bake.json) whose heavy stage is one shared target."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from kiln.gate.findings import errors
from kiln.project import Project
from kiln.render.context import requirements_text
from tests.conftest import ROOT, invoke

STANDIN = ROOT / "tests" / "standin" / "comfyui"  # not a git checkout: accepted only as unverified


BLACKWELL = ["5090", "rtx-pro-6000", "b200"]


def test_all_gpus_build_matrix_shares_the_heavy_stage(project_copy, tmp_path):
    out = tmp_path / "portable"
    result = invoke("render", "--portable", "--all-gpus", "--comfyui-src", str(STANDIN), "--allow-unverified-source",
                    "--out", str(out), root=project_copy)
    assert result.returncode == 0, result.stderr
    bake = json.loads((out / "docker-bake.json").read_text())
    profiles = sorted(p.name for p in out.iterdir() if p.is_dir())
    gpus = sorted(set(yaml.safe_load((project_copy / "gpus.yaml").read_text())["profiles"]) - set(BLACKWELL))
    assert profiles == gpus  # the card's torch has no Blackwell kernels: those profiles are skipped, and said so
    assert f"left out of the build matrix: {', '.join(BLACKWELL)}" in result.stderr
    assert bake["group"]["default"]["targets"] == [f"comfyui-{g}" for g in gpus]
    assert bake["target"]["venv"]["target"] == "builder"
    for gpu in gpus:
        target = bake["target"][f"comfyui-{gpu}"]
        assert target["context"] == gpu and target["contexts"] == {"builder": "target:venv"}
        assert target["tags"][0].endswith(f"-{gpu}")
        dockerfile = (out / gpu / "Dockerfile").read_text()
        assert "FROM kiln-base:debian-bookworm-py3.11-build AS builder" in dockerfile
        assert "--index-url" in dockerfile and "--require-hashes" in dockerfile
        assert (out / gpu / "comfyui" / "main.py").is_file() and not (out / gpu / "ca" / "extra-ca.pem").exists()
    heavy = {(out / g / "Dockerfile").read_text().split("FROM kiln-base:debian-bookworm-py3.11\n")[0].split("\n", 1)[1]
             for g in gpus}
    assert len(heavy) == 1  # the builder stage is byte-identical across profiles: one shared target is right


def test_portable_options_without_portable_are_refused(project_copy, tmp_path):
    result = invoke("render", "--gpu", "4090", "--all-gpus", "--out", str(tmp_path / "x"), root=project_copy)
    assert result.returncode == 2 and "go with --portable" in result.stderr and not (tmp_path / "x").exists()


def test_unverifiable_source_is_refused_without_the_flag(project_copy, tmp_path):
    result = invoke("render", "--gpu", "4090", "--portable", "--comfyui-src", str(STANDIN), "--out",
                    str(tmp_path / "x"), root=project_copy)
    assert result.returncode == 2 and "cannot verify" in result.stderr and not (tmp_path / "x").exists()


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def zimage_standin(tmp_path):
    """The stand-in reporting the zimage stack's ComfyUI version (as tests/slow/conftest.py makes it)."""
    src = tmp_path / "standin-0.3.74"
    shutil.copytree(STANDIN, src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "comfyui_version.py").write_text('__version__ = "0.3.74"\n')
    return src


def test_zimage_context_packs_the_comfyui_and_wheels_of_its_own_stack(project_copy, tmp_path, zimage_standin):
    out = tmp_path / "ctx"
    result = invoke("render", "--portable", "--gpu", "4090", "--image", "z-image-turbo", "--comfyui-src",
                    str(zimage_standin), "--allow-unverified-source", "--out", str(out), root=project_copy)
    assert result.returncode == 0, result.stderr
    zimage = Project(project_copy).subject("4090", "z-image-turbo").lock
    card = Project(project_copy).subject("4090").lock
    assert (zimage.name, zimage.comfyui.version) == ("zimage", "0.3.74") and card.comfyui.version != "0.3.74"
    assert '"0.3.74"' in (out / "comfyui" / "comfyui_version.py").read_text()
    facts = json.loads((out / "kiln.json").read_text())
    assert facts["pins"]["comfyui"] == "0.3.74" and facts["comfyui_commit"] == zimage.comfyui.commit
    assert facts["lock_sha256"] == zimage.digest
    wheels = (out / "requirements.lock.txt").read_text()
    assert wheels == requirements_text(zimage) and wheels != requirements_text(card)
    assert "UNVERIFIED" in result.stdout


def test_a_source_of_another_comfyui_than_the_stack_pins_is_refused(project_copy, tmp_path):
    out = tmp_path / "ctx"
    result = invoke("render", "--portable", "--gpu", "4090", "--image", "z-image-turbo", "--comfyui-src", str(STANDIN),
                    "--allow-unverified-source", "--out", str(out), root=project_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "the ComfyUI source is version 0.3.18, stack 'zimage' pins ComfyUI 0.3.74" in line, line
    assert not out.exists()


def test_all_gpus_skips_and_reports_the_profiles_the_gate_refuses(project_copy, tmp_path, zimage_standin):
    out = tmp_path / "portable"
    result = invoke("render", "--portable", "--all-gpus", "--image", "z-image-turbo", "--comfyui-src",
                    str(zimage_standin), "--allow-unverified-source", "--out", str(out), root=project_copy)
    assert result.returncode == 0, result.stderr
    refused = [g for g in yaml.safe_load((project_copy / "gpus.yaml").read_text())["profiles"]
               if not _gate_passes(project_copy, g)]
    assert refused == ["4070ti", *BLACKWELL]  # 12 GB: Z-Image-Turbo in bf16 does not fit; no kernels on Blackwell
    assert "skipped 4070ti: the gate refuses image 'z-image-turbo' there" in result.stderr
    assert f"warning: 4 profile(s) skipped and left out of the build matrix: 4070ti, {', '.join(BLACKWELL)}" \
        in result.stderr
    bake = json.loads((out / "docker-bake.json").read_text())
    assert "z-image-turbo-4070ti" not in bake["target"] and "z-image-turbo-4090" in bake["target"]
    assert not (out / "4070ti").exists() and (out / "h200" / "Dockerfile").is_file()
    summary = json.loads((out / "portable.json").read_text())
    assert sorted(summary["skipped"]) == sorted(["4070ti", *BLACKWELL]) and summary["skipped"]["4070ti"][0].startswith("error: [")
    assert summary["comfyui"] == {"zimage": {"version": "0.3.74", "commit": Project(project_copy).subject(
        "4090", "z-image-turbo").lock.comfyui.commit, "verified": False}}


def _gate_passes(root: Path, gpu: str) -> bool:
    _, findings = Project(root).check(gpu, "z-image-turbo")
    return not errors(findings)


def test_all_gpus_refuses_a_foreign_output_folder(project_copy, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = invoke("render", "--portable", "--all-gpus", "--comfyui-src", str(STANDIN), "--allow-unverified-source",
                    "--out", str(out), root=project_copy)
    assert result.returncode == 2 and "not an earlier kiln portable render" in result.stderr, result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_all_gpus_failing_on_one_profile_leaves_nothing_half_made(project_copy, tmp_path):
    args = ("render", "--portable", "--all-gpus", "--comfyui-src", str(STANDIN), "--allow-unverified-source", "--out")
    earlier = tmp_path / "earlier"
    assert invoke(*args, str(earlier), root=project_copy).returncode == 0
    before = _tree(earlier)
    start = project_copy / "templates" / "start.sh.j2"
    # The last profile of gpus.yaml the gate passes fails to render: every profile before it was already written.
    last = [g for g in yaml.safe_load((project_copy / "gpus.yaml").read_text())["profiles"] if g not in BLACKWELL][-1]
    start.write_text(f'{{% if gpu.name == "{last}" %}}{{{{ no_such_value }}}}{{% endif %}}' + start.read_text())
    fresh = tmp_path / "fresh"
    for out in (fresh, earlier):
        result = invoke(*args, str(out), root=project_copy)
        assert result.returncode == 2 and "undefined value" in result.stderr, result.stderr
    assert not fresh.exists() and _tree(earlier) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "proj"]  # no staging folder left
