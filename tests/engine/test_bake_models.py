"""`invoke build --bake-models --models-from CACHE` on the small fixture stack, with a tiny manifest fixture
(tests/fixtures/models/manifest.yaml: two header-only safetensors files of a few kB, written by the test, with
their sha256): the files in
their own layer at ComfyUI's models folder, before the payload and start-script layers; labels, distinct tags
and the build record; the warm-up finds them; a bad or missing file stops the build with one line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kiln.project import Project
from tests.engine.registry import free_port
from tests.conftest import FIXTURES, ROOT
from tests.engine.conftest import TEST_IMAGE, build_small, git_checkout, run_in, small_project
from tests.engine.scope import fresh_scope, made_containers, made_tags

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them

BAKED = f"{TEST_IMAGE}-baked"
MANIFEST = yaml.safe_load((FIXTURES / "models" / "manifest.yaml").read_text())["models"]
# the one tensor each header declares (what the stand-in's detection keys on) and the metadata padding that
# gives the file its size; no tensor data follows the header
HEADERS = {"checkpoints/standin.safetensors": ("model.diffusion_model.input_blocks.0.0.weight", [320, 4, 3, 3], 3000),
           "vae/tiny-vae.safetensors": ("decoder.conv_in.weight", [512, 16, 3, 3], 1500)}


def _header_only(path: str) -> bytes:
    key, shape, pad = HEADERS[path]
    header = json.dumps({"__metadata__": {"note": "kiln test fixture: a safetensors header with no tensor data",
                                          "pad": "." * pad},
                         key: {"data_offsets": [0, 0], "dtype": "BF16", "shape": shape}}).encode()
    return struct.pack("<Q", len(header)) + header


def _task(project_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KILN_SOURCE_CACHE": str(project_root.parent / "sources")}
    return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(project_root), *args],
                          capture_output=True, text=True, env=env, timeout=600)


def _with_manifest(project: Project, name: str) -> Project:
    """A spec carrying the fixture manifest and a warm-up workflow loading both files."""
    (project.images_dir / "workflows").mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "images" / "workflows" / "baked.json", project.images_dir / "workflows" / "baked.json")
    spec = yaml.safe_load((project.images_dir / "comfyui.yaml").read_text())
    spec.update(name=name, models=MANIFEST, warmup={"workflow": "workflows/baked.json"})
    (project.images_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return project


def _project(tmp: Path, name: str) -> Project:
    """The small fixture stack (a few tiny wheels, the stand-in as a git checkout) with the manifest spec."""
    return _with_manifest(small_project(tmp / "proj", git_checkout(tmp / "comfyui")), name)


def _cache(tmp: Path) -> Path:
    """A cache as `invoke models.fetch` leaves it: models/<folder>/<file>."""
    cache = tmp / "cache"
    for model in MANIFEST:
        (cache / "models" / model["folder"]).mkdir(parents=True, exist_ok=True)
        path = f"{model['folder']}/{model['file']}"
        (cache / "models" / path).write_bytes(_header_only(path))
    return cache


def _tags(client, name: str) -> list[str]:
    return made_tags(client, repository=f"kiln/{name}")


def _remove(client, name: str) -> None:
    for tag in _tags(client, name):
        client.images.remove(tag, force=True)


def test_the_fixture_manifest_names_its_files_real_sha256():
    for model in MANIFEST:
        data = _header_only(f"{model['folder']}/{model['file']}")
        assert (len(data), hashlib.sha256(data).hexdigest()) == (model["size"], model["sha256"])
        assert 1000 < len(data) < 10_000


@pytest.fixture(scope="module")
def baked(tmp_path_factory, client, base):
    """Built through the library like the other small-stack builds (its trimmed lock would not pass the gate
    that `invoke build` runs first)."""
    tmp = tmp_path_factory.mktemp("bake")
    project = _project(tmp, BAKED)
    result, record = build_small(project, tmp / "comfyui", image=BAKED, bake_from=_cache(tmp))
    yield project, result, record
    _remove(client, BAKED)


def test_baked_image_is_tagged_labelled_and_recorded(baked, client):
    _, result, record_path = baked
    tags = _tags(client, BAKED)
    assert tags == sorted(result.tags) and len(tags) == 2 and all(t.endswith("-4090-models") for t in tags), tags
    labels = client.images.get(tags[0]).labels
    assert labels["io.kiln.models"] == "baked"
    assert labels["io.kiln.models.sha256"] == ",".join(f"{m['folder']}/{m['file']}={m['sha256']}" for m in MANIFEST)
    record = json.loads(record_path.read_text())
    assert record["models"]["baked"] is True and record["models"]["path"] == "/opt/comfyui/models"
    assert [(f["file"], f["sha256"]) for f in record["models"]["files"]] == [(m["file"], m["sha256"]) for m in MANIFEST]
    assert set(record["tags"]) == set(tags)


def test_baked_files_are_in_comfyuis_models_folder_with_their_size_and_sha256(baked, client):
    tag = _tags(client, BAKED)[0]
    paths = " ".join(f"/opt/comfyui/models/{m['folder']}/{m['file']}" for m in MANIFEST)
    out = run_in(client, tag, f"sha256sum {paths} && stat -c '%s %U %a %n' {paths}", user="10001")
    for model in MANIFEST:
        path = f"/opt/comfyui/models/{model['folder']}/{model['file']}"
        assert f"{model['sha256']}  {path}" in out
        assert f"{model['size']} root 644 {path}" in out
    facts = json.loads(run_in(client, tag, "cat /opt/kiln/kiln.json"))
    assert facts["warmup"]["baked_models"] == "/opt/comfyui/models"


def test_the_model_layer_comes_before_the_payload_and_start_script_layers(baked, client):
    tag = _tags(client, BAKED)[0]
    history = client.api.history(tag)   # newest first
    created = [h["CreatedBy"] for h in history]
    models = next(i for i, c in enumerate(created) if "in /opt/comfyui/models/" in c)
    payload = next(i for i, c in enumerate(created) if "in /opt/kiln/payload/" in c)
    start = next(i for i, c in enumerate(created) if "COPY" in c and "in /opt/kiln/ " in c + " ")
    venv = next(i for i, c in enumerate(created) if "in /opt/venv" in c)
    assert start < payload < models < venv, created
    assert history[models]["Size"] >= sum(m["size"] for m in MANIFEST)
    shown = subprocess.run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    assert [i for i, line in enumerate(shown) if "/opt/comfyui/models/" in line] == [models]


def test_the_warm_up_runs_on_the_baked_files_with_an_empty_cache_mounted(baked, client, tmp_path):
    project = baked[0]
    tag = _tags(client, BAKED)[0]
    cache = tmp_path / "cache"
    subprocess.run(["sh", str(ROOT / "provision/host/cache.sh"), str(cache)], check=True, capture_output=True)
    port = free_port()
    try:
        ran = _task(project.root, "run", "--gpu", "4090", "--image", tag, "--cache", str(cache), "--cpu-mode",
                    "--port", str(port), "--timeout", "120")
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        assert "workflow=warmup.json" in ran.stdout and "first_s=" in ran.stdout
        assert not any((cache / "models").rglob("*.safetensors"))
    finally:
        _task(project.root, "stop")


@pytest.mark.parametrize("damage, words", [
    ("flip", ["vae/tiny-vae.safetensors has sha256", "the manifest says 9e76b915b83dca9c"]),
    ("remove", ["checkpoints/standin.safetensors is missing"]),
])
def test_a_bad_or_missing_model_stops_the_build_with_one_line_and_nothing_tagged(project_copy, tmp_path, client,
                                                                                damage, words):
    """`invoke build` on the real project (its gate passes): the files are verified before anything is made."""
    name = f"{TEST_IMAGE}-badbake"
    project = _with_manifest(Project(project_copy), name)
    cache = _cache(tmp_path)
    if damage == "flip":
        vae = cache / "models" / "vae" / "tiny-vae.safetensors"
        data = bytearray(vae.read_bytes())
        data[-1] ^= 1
        vae.write_bytes(bytes(data))
    else:
        (cache / "models" / "checkpoints" / "standin.safetensors").unlink()
    scope = fresh_scope(project.templates_dir)
    try:
        result = _task(project.root, "build", "--gpu", "4090", "--image", name, "--plain", "--comfyui-src",
                       str(ROOT / "tests" / "standin" / "comfyui"), "--allow-unverified-source",
                       "--bake-models", "--models-from", str(cache))
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        [line] = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        for word in words:
            assert word in line, line
        assert "invoke models.fetch" in line
        assert made_tags(client, scope) == [] and made_containers(client, scope) == []
        assert not (project.root / "build").exists()
    finally:
        _remove(client, name)


def test_bake_models_without_a_cache_is_one_line(project_copy):
    result = _task(project_copy, "build", "--gpu", "4090", "--plain", "--bake-models")
    assert result.returncode == 2 and "--models-from CACHE" in result.stderr and "Traceback" not in result.stderr
    alone = _task(project_copy, "build", "--gpu", "4090", "--plain", "--models-from", str(project_copy))
    assert alone.returncode == 2 and "only used with --bake-models" in alone.stderr
