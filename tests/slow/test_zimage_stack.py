"""The Z-Image stack built for real through `invoke build --image z-image-turbo`: the card's torch 2.3.1 /
CUDA 12.1 / xformers 0.0.27 with ComfyUI 0.3.74's requirements, exactly as the zimage stack locks them.
ComfyUI is the stand-in reporting 0.3.74 (the real source needs the git host), so the image is labelled
unverified; every wheel is the real one."""

import hashlib
import json
import socket
import struct
import urllib.request

import pytest
import yaml
from packaging.utils import canonicalize_name

from kiln.data.lock import load_lock
from kiln.engine.client import connect
from tests.conftest import ROOT, invoke
from tests.engine.conftest import run_in
from tests.slow.conftest import ZIMAGE_TAG, stop_own
from tests.unit.model_server import ModelServer

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them


def test_zimage_image_carries_exactly_the_zimage_stack(zimage_built):
    lock = load_lock(ROOT / "versions.lock", stack="zimage")
    out = run_in(connect(), ZIMAGE_TAG, "/opt/venv/bin/python -c '"
                 "import json, torch, xformers, importlib.metadata as md; "
                 "print(json.dumps({\"torch\": torch.__version__, \"xformers\": xformers.__version__, "
                 "\"dists\": {d.metadata[\"Name\"]: d.version for d in md.distributions()}}))'")
    facts = json.loads(out.strip().splitlines()[-1])
    assert (facts["torch"], facts["xformers"]) == ("2.3.1+cu121", "0.0.27")
    installed = {canonicalize_name(k): v for k, v in facts["dists"].items()}
    assert installed == {key: pkg.version for key, pkg in lock.packages.items()}
    assert installed["comfyui-frontend-package"] == "1.30.6" and "sqlalchemy" in installed


def test_zimage_image_is_labelled_with_its_stack(zimage_built):
    labels = connect().images.get(ZIMAGE_TAG).attrs["Config"]["Labels"]
    lock = load_lock(ROOT / "versions.lock", stack="zimage")
    assert labels["io.kiln.stack"] == "zimage" and labels["io.kiln.comfyui"] == "0.3.74"
    assert labels["io.kiln.lock-sha256"] == lock.digest != load_lock(ROOT / "versions.lock").digest
    assert zimage_built["tags"][0] == ZIMAGE_TAG


def _header_only(path, tensors):
    """A safetensors header with no data: what the stand-in ComfyUI reads to recognise a model."""
    header = json.dumps({k: {"dtype": "BF16", "shape": list(v), "data_offsets": [0, 0]} for k, v in tensors.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode())


def _fetched_spec(tmp, server):
    """The Z-Image spec with a manifest of local files served like the hub: the generator's real VAE, and the
    DiT and text encoder as header-only stand-ins (the stand-in ComfyUI reads headers only; the 10 GB small set
    is proven against the real ComfyUI in test_synthetic's opt-in test)."""
    src = tmp / "src"
    assert invoke("models.synth", "--out", str(src), "--only", "vae", "--plain").returncode == 0
    _header_only(src / "diffusion_models" / "z_image_turbo_bf16.safetensors",
                 {"cap_embedder.1.weight": (3840, 2560), "layers.0.attention.qkv.weight": (11520, 3840)})
    _header_only(src / "text_encoders" / "qwen_3_4b.safetensors", {"model.embed_tokens.weight": (151936, 2560)})
    spec = yaml.safe_load((ROOT / "images" / "z-image-turbo.yaml").read_text())
    for model in spec["models"]:
        data = (src / model["folder"] / model["file"]).read_bytes()
        model.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        server.files[f"/{model['source']['repo']}/resolve/{model['source']['revision']}/{model['source']['path']}"] = data
    folder = tmp / "spec"
    folder.mkdir()
    (folder / "workflows").symlink_to(ROOT / "images" / "workflows")
    (folder / "z-image-turbo.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "z-image-turbo.yaml"


@pytest.fixture(scope="module")
def zimage_cache(zimage_built, tmp_path_factory):
    """A cache filled by `invoke models.fetch` from a local hub serving the spec's manifest: (spec, cache)."""
    tmp = tmp_path_factory.mktemp("zimage-cache")
    cache = tmp / "cache"
    assert invoke("provision.cache", "--path", str(cache)).returncode == 0
    with ModelServer() as server, pytest.MonkeyPatch.context() as patch:
        spec = _fetched_spec(tmp, server)
        patch.setenv("HF_ENDPOINT", server.base)
        fetched = invoke("models.fetch", "--gpu", "4090", "--image", str(spec), "--to", str(cache), "--plain")
    assert fetched.returncode == 0, fetched.stderr
    assert "3 model file(s)" in fetched.stdout and "every sha256 verified" in fetched.stdout
    return spec, cache


def test_zimage_image_warms_up_on_models_fetched_by_manifest(zimage_cache):
    """models.fetch from a local hub, then `invoke run --cpu-mode`: healthy only after the warm-up drove the
    Z-Image workflow as the image plans it (images/z-image-turbo.yaml: once, at one sampler step); that
    prompt saved an image at the profile's resolution."""
    spec, cache = zimage_cache
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ran = None
    try:
        ran = invoke("run", "--gpu", "4090", "--image", str(spec), "--cache", str(cache), "--cpu-mode",
                     "--port", str(port), "--timeout", "300")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "workflow=warmup.json" in ran.stdout, ran.stdout
        plan = yaml.safe_load((ROOT / "images" / "z-image-turbo.yaml").read_text())["warmup"]
        assert (plan["runs"], plan["steps"], plan["recipe"]["steps"]) == (1, 1, 8)
        assert "first_s=" in ran.stdout and "runs=1" in ran.stdout and "steps=1" in ran.stdout
        assert "second_s=" not in ran.stdout
        history = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/history", timeout=10))
        done = [entry for entry in history.values() if entry["outputs"]]
        assert len(done) == 1 and all(entry["status"]["completed"] for entry in done)
        sampler = next(n for n in done[0]["prompt"][2].values() if n["class_type"] == "KSampler")
        assert sampler["inputs"]["steps"] == 1   # the warm-up's own steps
        image = next(iter(done[-1]["outputs"].values()))["images"][0]
        png = urllib.request.urlopen(f"http://127.0.0.1:{port}/view?filename={image['filename']}", timeout=10).read()
        assert struct.unpack(">II", png[16:24]) == (1024, 1024)
    finally:
        # only this test's container: another test run beside this one may have its own running
        stop_own(ran)


def _smoke(*args):
    result = invoke("smoke", "--gpu", "4090", "--image", "z-image-turbo", *args)
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("workflow.")}
    return result, rows


def test_smoke_runs_the_zimage_workflow_on_the_fetched_models(zimage_cache, tmp_path):
    """`invoke smoke --cache`: the workflow check runs the image's warm-up workflow in the image's ComfyUI (the
    stand-in) on the fetched models, a 1024x1024 PNG (the 4090 profile's resolution); no GPU here, so the latency
    is measured and recorded but not judged."""
    _, cache = zimage_cache
    result, rows = _smoke("--cache", str(cache), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert rows["workflow.models"].split()[1:3] == ["PASS", "3/3"]
    assert rows["workflow.prompt"].split()[1:4] == ["PASS", "1024x1024", "1024x1024"], rows["workflow.prompt"]
    assert "steady p50" in rows["workflow.prompt"]
    assert rows["workflow.latency"].split()[1] == "SKIP" and "CPU latency is not judged" in rows["workflow.latency"]
    timings = json.loads((tmp_path / "r.json").read_text())["env"]["workflow"]
    assert timings["first_s"] > 0 and len(timings["steady_s"]) == 3 and timings["steady_p50_s"] > 0


def test_smoke_without_a_model_skips_naming_models_fetch_and_fails_when_models_are_required(zimage_cache):
    _, cache = zimage_cache
    vae = cache / "models" / "vae" / "ae.safetensors"
    aside = cache / "ae.safetensors.aside"
    vae.rename(aside)
    try:
        result, rows = _smoke("--cache", str(cache))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert rows["workflow.models"].split()[1] == "SKIP"
        assert "vae/ae.safetensors" in rows["workflow.models"] and "invoke models.fetch" in rows["workflow.models"]
        assert rows["workflow.prompt"].split()[1] == "SKIP"
        required, rows = _smoke("--cache", str(cache), "--require-models")
        assert required.returncode == 1, required.stdout[-3000:] + required.stderr[-2000:]
        assert rows["workflow.models"].split()[1] == "FAIL" and "invoke models.fetch" in rows["workflow.models"]
    finally:
        aside.rename(vae)
