"""`invoke render --portable`: a context a stock engine builds (index + hashes, ComfyUI inside, the CA
only in the builder) and, with --all-gpus, a bake file whose heavy stage is one shared target."""

import json

import yaml

from tests.conftest import ROOT, invoke

STANDIN = ROOT / "tests" / "standin" / "comfyui"  # not a git checkout: accepted only as unverified


def test_all_gpus_bake_file_shares_the_heavy_stage(project_copy, tmp_path):
    out = tmp_path / "portable"
    result = invoke("render", "--portable", "--all-gpus", "--comfyui-src", str(STANDIN), "--allow-unverified-source",
                    "--out", str(out), root=project_copy)
    assert result.returncode == 0, result.stderr
    bake = json.loads((out / "docker-bake.json").read_text())
    profiles = sorted(p.name for p in out.iterdir() if p.is_dir())
    gpus = sorted(yaml.safe_load((project_copy / "gpus.yaml").read_text())["profiles"])
    assert profiles == gpus
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
